"""What the explorer's pages share on the Streamlit side: the model chooser, the two caches, the step display.

The logic lives in diffusion/explorer.py, without Streamlit, where the tests reach it directly; this
module turns it into widgets. The pages (explorer_pages/*.py) import it; it lives in the library because three files need it.

Caches: a model is loaded once per folder (``st.cache_resource``, keyed on the folder and the time
its files last changed, so a retrained model reloads); a trajectory is sampled once per setting
(``st.cache_data``, keyed on the folder and every setting), so moving the step slider only
re-displays, and changing any setting samples again.

Model output is shown as text: a step's sequence through ``st.code`` and its tokens as dataframe
cells (a pandas Styler colours the cells; the values stay plain strings). Markdown only ever holds
the page's own words, and an error that quotes what someone typed is escaped first.
"""

from __future__ import annotations

import streamlit as st

from diffusion import explorer
from diffusion.checkpoint import ModelLoadError

# The errors whose message is meant for the person at the page (bad settings, a missing or wrong model).
ERRORS = (ModelLoadError, ValueError, OSError)


def show_error(err: Exception | str) -> None:
    """One st.error line, in the page's words (flags named by their widgets), shown as typed."""
    st.error(explorer.markdown_literal(explorer.for_widgets(str(err))), icon=":material/error:")


def choose_model(kind: str, choices: list[explorer.ModelChoice]) -> str | None:
    """The folder to sample from: the chooser's choice, or a typed folder (which wins); None after saying why.

    The two widgets go to the sidebar, what is wrong to the main area, where it is seen. The typed
    folder's field starts from the page's ``?checkpoint=DIR`` query parameter, so a link (or a test)
    can open a page on any model.
    """
    picked = None
    if choices:
        labels = [c.label for c in choices]
        label = st.sidebar.selectbox("Model", labels, key=f"{kind}-model",
                                     help="The trained model if there is one, else the bundled one; checkpoint-N "
                                          "folders of the same runs follow.")
        picked = choices[labels.index(label)].path
    typed = st.sidebar.text_input("Other checkpoint folder", value=st.query_params.get("checkpoint", ""),
                                  key=f"{kind}-checkpoint", placeholder="e.g. results/checkpoint-500",
                                  help="A model folder, relative to the current folder or to the repository. "
                                       "When set, it is used instead of the chooser's.").strip()
    if typed:
        folder = explorer.find_folder(typed)
        if folder is None:
            show_error(f"no folder {typed!r}, neither from the current folder nor from the repository")
        return folder
    if picked is None:
        st.info(explorer.no_model_line(kind), icon=":material/info:")
    return picked


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def _generator(kind: str, folder: str, stamp: float):
    return explorer.load_for(kind, folder)


def load_model(kind: str, folder: str):
    """The generator of ``folder`` (cached); a model that cannot load is one st.error line, and the page stops."""
    try:
        return _generator(kind, folder, explorer.folder_stamp(folder))
    except ERRORS as err:
        show_error(err)
        st.stop()


@st.cache_data(show_spinner="Sampling...", max_entries=32)
def _trajectory(kind: str, folder: str, stamp: float, request, options):
    return explorer.trajectory(kind, _generator(kind, folder, stamp), request, options)


def sample(kind: str, folder: str, request, options):
    """The trajectory of these settings, sampled once and then taken from the cache; an error is one line."""
    try:
        return _trajectory(kind, folder, explorer.folder_stamp(folder), request, options)
    except ERRORS as err:
        show_error(err)
        st.stop()


def step_slider(first: int, last: int) -> int:
    """The step to show (the last at first). A new trajectory with another number of steps starts at its end."""
    if last <= first:  # a slider needs two ends
        st.caption("One step only: nothing to slide through.")
        return last
    return st.slider("Step", first, last, last, key="step",
                     help="Move through the denoising: the sampling is not repeated, only shown at another step.")


def show_text_step(view: explorer.StepView, legend, per_row: int = 12) -> None:
    """A text step: its title, what changed, the sequence as text, the legend (a Styler of
    diffusion/explorer.py ``legend_styler``), the tokens as chips, and the table."""
    st.subheader(view.title)
    st.caption(view.detail)
    st.code(view.text, language=None, wrap_lines=True)
    st.dataframe(legend, hide_index=True)
    st.dataframe(explorer.chip_styler(list(view.cells), per_row), height="content")
    with st.expander("Every position: token, state, probability", expanded=False):
        st.dataframe(explorer.cells_frame(list(view.cells)), hide_index=True,
                     column_config={"probability": st.column_config.NumberColumn(format="%.3f")})
