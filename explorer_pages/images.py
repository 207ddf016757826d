"""Images: a UNet or DiT denoises digits out of noise; the slider shows x_t and the predicted x_0 at each step.

A page of the explorer (``streamlit run explorer.py``), seed 002's explorer: pick a digit (or a
caption, for a text-conditioned model), the model type and a checkpoint, set the sampler, steps and
guidance, and move through the denoising. The settings are generate.py's image flags
(diffusion/image/sampling.py ``ImageSamplingOptions``); the trajectory comes from diffusion/explorer.py.
``?checkpoint=DIR`` in the address opens another model.
"""

from __future__ import annotations

import streamlit as st

from diffusion import explorer
from diffusion.explorer_widgets import ERRORS, choose_model, load_model, sample, show_error, step_slider
from diffusion.image.sampling import ImageSamplingOptions

SAMPLERS = {"ddim": "DDIM", "ddpm": "DDPM"}
MODEL_TYPES = ["any", "UNet", "DiT"]

st.header("Image diffusion")
st.caption("Top row: the noisy images x_t the model sees at this step; bottom row: its prediction of the clean "
           "images x_0. Pixels are enlarged, not smoothed.")

wanted = st.sidebar.radio("Model type", MODEL_TYPES, horizontal=True, key="model-type",
                          help="Show only the checkpoints of this denoiser (read from each checkpoint's config.json).")
folder = choose_model("image", [c for c in explorer.model_choices("image") if wanted == "any" or c.model_type == wanted])
if folder is None:
    st.stop()
generator = load_model("image", folder)
built, condition = explorer.image_info(folder)
if wanted != "any" and built != wanted:
    show_error(f"model type {wanted}: {explorer.shown_path(folder)} holds a {built}")
    st.stop()

with st.sidebar:
    classes = explorer.class_options(generator)
    digit = st.selectbox("Digit", [value for value, _ in classes], format_func=dict(classes).get, key="digit",
                         help="The class to draw, or one of each.")
    caption = None
    if generator.bank is not None:
        caption = st.text_input("Caption", "", key="caption", placeholder="a handwritten seven",
                                help="What to draw, in words (this model reads captions); empty: made from the digit, "
                                     "'a handwritten seven'.")
    per_class = st.number_input("Images per class", 1, 8, 1, key="per-class")
    sampler = st.radio("Sampler", list(SAMPLERS), format_func=SAMPLERS.get, horizontal=True, key="sampler",
                       help=ImageSamplingOptions.__dataclass_fields__["sampler"].metadata["help"])
    trained_steps = generator.process.num_steps
    ddim_steps = st.number_input("DDIM steps", 1, trained_steps, min(50, trained_steps), key="ddim-steps",
                                 disabled=sampler == "ddpm", help=f"DDPM takes every trained step ({trained_steps}). "
                                 + explorer.flag_help(ImageSamplingOptions, "ddim_steps"))
    guidance = st.slider("Guidance", 0.0, 10.0, 3.0, 0.5, key="guidance",
                         help=explorer.flag_help(ImageSamplingOptions, "guidance"))
    eta = st.slider("eta", 0.0, 1.0, 0.0, 0.05, key="eta", disabled=sampler == "ddpm",
                    help=explorer.flag_help(ImageSamplingOptions, "eta"))
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed", help="The same seed gives the same noise and images.")

try:
    options = ImageSamplingOptions(sampler=sampler, ddim_steps=int(ddim_steps) if sampler == "ddim" else None,
                                   eta=float(eta) if sampler == "ddim" else 0.0, guidance=float(guidance))
except ERRORS as err:
    show_error(err)
    st.stop()
run = sample("image", folder, explorer.ImageRequest(digit=digit, caption=caption, per_class=int(per_class),
                                                    seed=int(seed)), options)

kind = f"{built}, {condition}-conditioned" if condition else f"{built}, unconditional"
st.caption(f"{explorer.markdown_literal(explorer.shown_path(folder))} ({kind}): {run.settings}; "
           f"{run.forward_passes} steps, {run.seconds:.2f} s")
step = step_slider(run.first, run.last)
st.subheader(run.title(step))
st.caption(run.detail(step))
st.image(run.frame(step), output_format="PNG")
# what each column is of: class names or the caption, as plain text (a caption is typed text, never markup)
st.text("Columns, left to right: " + ", ".join(dict.fromkeys(run.columns)))
