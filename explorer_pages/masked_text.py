"""Masked text: a masked diffusion model unmasks a sequence; the slider walks through its steps.

A page of the explorer (``streamlit run explorer.py``). The settings are generate.py's decoding flags
(diffusion/masked/unmasking.py ``DecodeOptions``); the trajectory and its display rows come from
diffusion/explorer.py. ``?checkpoint=DIR`` in the address opens another model.
"""

from __future__ import annotations

import streamlit as st

from diffusion import explorer, schedules
from diffusion.checkpoint import usable_length
from diffusion.explorer_widgets import ERRORS, choose_model, load_model, sample, show_error, show_text_step, step_slider
from diffusion.masked.unmasking import DEFAULT_THRESHOLD, REMASKING_RULES, DecodeOptions
from diffusion.text.sampling import SAMPLING_METHODS
from diffusion.viz.rendering import END, MASK, NEW, PREFIX, REVEALED

DEFAULT_PREFIX = "dog:"
DEFAULT_TEMPLATE = "dog: a [MASK] [MASK] of the genus Canis."
SAMPLING_NAMES = {"greedy": "greedy", "topk": "top-k", "nucleus": "nucleus (top-p)"}
MODES = {"prompt": "continue a prompt", "template": "fill a template"}

st.header("Masked text diffusion")
st.caption("Every generated position starts as [MASK]; each step the model predicts them all and commits some. "
           "Green: revealed in this step, white: earlier, blue: the prompt, grey: still masked.")

folder = choose_model("masked", explorer.model_choices("masked"))
if folder is None:
    st.stop()
generator = load_model("masked", folder)

with st.sidebar:
    mode = st.radio("Mode", list(MODES), format_func=MODES.get, horizontal=True, key="mode")
    if mode == "prompt":
        prefix = st.text_input("Prompt", DEFAULT_PREFIX, key="prefix",
                               help="Fixed text to continue, kept unchanged (`--prefix`); empty: no prompt.")
        longest = usable_length(generator.model) or 512
        length = st.number_input("Length", 3, longest, min(24, generator.max_length, longest), key="length",
                                 help="Tokens in the sequence, <s> and </s> included (`--max-length`).")
        request = explorer.MaskedRequest(prefix=prefix, length=int(length))
    else:
        template = st.text_area("Template", DEFAULT_TEMPLATE, key="template",
                                help="Each [MASK] is one token to fill in; the rest is kept (`--text`).")
        request = explorer.MaskedRequest(template=template)
    steps = st.number_input("Steps", 1, 512, 16, key="steps", help=explorer.flag_help(DecodeOptions, "steps"))
    schedule = st.selectbox("Schedule", schedules.available_schedules(), key="schedule",
                            help=explorer.flag_help(DecodeOptions, "schedule"))
    sampling = st.selectbox("Sampling", SAMPLING_METHODS, index=SAMPLING_METHODS.index(DecodeOptions.sampling),
                            format_func=SAMPLING_NAMES.get, key="sampling",
                            help=explorer.flag_help(DecodeOptions, "sampling"))
    k, p = DecodeOptions.k, DecodeOptions.p
    if sampling == "topk":
        k = st.number_input("k", 1, 50000, k, key="k", help=explorer.flag_help(DecodeOptions, "k"))
    if sampling == "nucleus":
        p = st.slider("p", 0.05, 1.0, p, 0.05, key="p", help=explorer.flag_help(DecodeOptions, "p"))
    temperature = st.slider("Temperature", 0.0, 2.0, 1.0, 0.05, key="temperature", disabled=sampling == "greedy",
                            help=explorer.flag_help(DecodeOptions, "temperature"))
    remasking = st.selectbox("Remasking", REMASKING_RULES, key="remasking",
                             help=explorer.flag_help(DecodeOptions, "remasking"))
    refine = st.checkbox("Refine", key="refine", help=explorer.flag_help(DecodeOptions, "refine"))
    threshold = st.slider("Confidence threshold", 0.0, 0.99, DEFAULT_THRESHOLD, 0.01, key="threshold",
                          disabled=refine, help="0: off. With Refine: off (a committed token may still change). "
                                                + explorer.flag_help(DecodeOptions, "threshold"))
    block_length = st.number_input("Block length", 0, 512, generator.block_length or 0, key="block-length",
                                   help="0: none. " + explorer.flag_help(DecodeOptions, "block_length"))
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed", help=explorer.flag_help(DecodeOptions, "seed"))

try:
    options = DecodeOptions(sampling=sampling, k=int(k), p=float(p), temperature=float(temperature), steps=int(steps),
                            schedule=schedule, remasking=remasking, refine=refine,
                            threshold=0.0 if refine else float(threshold), block_length=int(block_length),
                            seed=int(seed))
except ERRORS as err:
    show_error(err)
    st.stop()
run = sample("masked", folder, request, options)

st.caption(f"{explorer.markdown_literal(explorer.shown_path(folder))}: {run.settings}; {run.forward_passes} forward "
           f"passes, {run.seconds:.2f} s")
step = step_slider(run.first, run.last)
show_text_step(run.steps[step - run.first], explorer.legend_styler([PREFIX, NEW, REVEALED, MASK, END]))
