"""Gaussian text: a model denoises token embeddings from pure noise; the slider shows the nearest tokens at each step.

A page of the explorer (``streamlit run explorer.py``). The settings are generate.py's Gaussian flags
(diffusion/gaussian/sampling.py ``GaussianSamplingOptions``); the trajectory and its display rows
come from diffusion/explorer.py. ``?checkpoint=DIR`` in the address opens another model.
"""

from __future__ import annotations

import streamlit as st

from diffusion import explorer
from diffusion.explorer_widgets import ERRORS, choose_model, load_model, sample, show_error, show_text_step, step_slider
from diffusion.gaussian.sampling import DEFAULT_DDIM_STEPS, GaussianSamplingOptions
from diffusion.viz.rendering import END, PREFIX, ROUNDED

DEFAULT_PREFIX = "dog:"
SAMPLERS = {"ddim": "DDIM", "ddpm": "DDPM"}

st.header("Gaussian text diffusion")
st.caption("Every generated position starts as Gaussian noise in the embedding space; each step the model estimates "
           "the clean embeddings x0, shown as their nearest tokens, coloured by the rounding probability "
           "(red 0, amber 0.5, green 1). Blue: the fixed prompt.")

folder = choose_model("gaussian", explorer.model_choices("gaussian"))
if folder is None:
    st.stop()
generator = load_model("gaussian", folder)
trained_steps = generator.process.num_steps

with st.sidebar:
    prefix = st.text_input("Prompt", DEFAULT_PREFIX, key="prefix",
                           help="Fixed text, held at its clean embedding at every step; empty: unconditional.")
    length = st.number_input("Length", 0, 512, 0, key="length",
                             help="Tokens, <s> and </s> included; 0: drawn from the lengths the model was trained on.")
    sampler = st.radio("Sampler", list(SAMPLERS), format_func=SAMPLERS.get, horizontal=True, key="sampler",
                       help=explorer.flag_help(GaussianSamplingOptions, "sampler"))
    ddim_steps = st.number_input("DDIM steps", 1, trained_steps, min(DEFAULT_DDIM_STEPS, trained_steps),
                                 key="ddim-steps", disabled=sampler == "ddpm",
                                 help=f"DDPM takes every trained step ({trained_steps}). "
                                      + explorer.flag_help(GaussianSamplingOptions, "ddim_steps"))
    eta = st.slider("eta", 0.0, 1.0, 0.0, 0.05, key="eta", disabled=sampler == "ddpm",
                    help=explorer.flag_help(GaussianSamplingOptions, "eta"))
    self_conditioning = st.checkbox("Self-conditioning", True, key="self-conditioning",
                                    help="Feed the previous x0 estimate back to the model (off: "
                                         + explorer.flag_help(GaussianSamplingOptions, "no_self_conditioning") + ")")
    clamp = st.checkbox("Clamping", False, key="clamp", help=explorer.flag_help(GaussianSamplingOptions, "clamp"))
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed", help="The same seed gives the same noise and text.")

try:
    options = GaussianSamplingOptions(sampler=sampler, ddim_steps=int(ddim_steps) if sampler == "ddim" else None,
                                      eta=float(eta) if sampler == "ddim" else 0.0, clamp=clamp,
                                      no_self_conditioning=not self_conditioning)
except ERRORS as err:
    show_error(err)
    st.stop()
run = sample("gaussian", folder, explorer.GaussianRequest(prefix=prefix or None, length=int(length), seed=int(seed)),
             options)

st.caption(f"{explorer.markdown_literal(explorer.shown_path(folder))}: {run.settings}; {run.forward_passes} forward "
           f"passes, {run.seconds:.2f} s")
step = step_slider(run.first, run.last)
show_text_step(run.steps[step - run.first], explorer.legend_styler([PREFIX, ROUNDED, END]))
