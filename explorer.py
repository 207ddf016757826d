"""The interactive denoising explorer: a web page per kind of model, and a slider through the denoising steps.

    streamlit run explorer.py --server.address 127.0.0.1 --browser.gatherUsageStats false

Then open http://127.0.0.1:8501. The pages (explorer_pages/): masked text (unmasking, step by step),
Gaussian text (nearest tokens of the denoised embeddings) and images (x_t and the predicted x_0).
Each starts on your trained model if there is one, else on the bundled one; ``?checkpoint=DIR`` in
the address opens another folder. Runs offline, on the CPU; .streamlit/config.toml keeps it on
127.0.0.1 with usage statistics off. The logic is in diffusion/explorer.py.
"""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import streamlit as st  # noqa: E402

from diffusion.explorer import PAGES  # noqa: E402

st.set_page_config(page_title="Diffusion explorer", page_icon=":material/animation:", layout="wide")
st.navigation([st.Page(path, title=title, icon=icon) for path, title, icon in PAGES.values()], position="top").run()
