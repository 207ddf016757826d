"""The denoising explorer (explorer.py, explorer_pages/, diffusion/explorer.py), headless with Streamlit's AppTest.

Each page renders on a model (the bundled masked one; micro Gaussian and image checkpoints built
in a temporary folder), the step slider changes what is shown without sampling again, changing
the steps or the guidance samples again, a hostile prompt is printed as text, and bad input is one
st.error line. The library's pure parts (which folders are offered, a step as display rows, the
messages) are tested directly. Nothing here needs the network; files go to temporary folders only.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
import torch
from conftest import REPO
from streamlit.testing.v1 import AppTest

from diffusion import explorer
from diffusion.checkpoint import DiffusionConfig, ModelLoadError
from diffusion.viz.rendering import END, MASK, NEW, PREFIX, REVEALED, ROUNDED

HOSTILE = "<img src=x onerror=alert(1)>"
PAGES = {name: os.path.join(REPO, "explorer_pages", f"{name}.py") for name in ("masked_text", "gaussian_text", "images")}
BUNDLED = os.path.join(REPO, "models", "masked-base")


def page(name: str, checkpoint: str | None = None) -> AppTest:
    """A page run once (``?checkpoint=DIR`` when given); 60 s per run for the first load of a model on a busy CPU."""
    at = AppTest.from_file(PAGES[name], default_timeout=60)
    if checkpoint:
        at.query_params["checkpoint"] = checkpoint
    return at.run()


def title(at: AppTest) -> str:
    return at.subheader[0].value


def markdown_bodies(at: AppTest) -> list[tuple[str, bool]]:
    """(body, allows HTML) of every element Streamlit renders as Markdown: text, captions, headings, alerts."""
    found = []
    for elements in (at.markdown, at.caption, at.header, at.subheader, at.error, at.info, at.warning, at.success):
        found += [(e.value, bool(getattr(e.proto, "allow_html", False))) for e in elements]
    return found


def assert_no_markup(at: AppTest) -> None:
    """No element renders raw HTML, and no Markdown body holds an unescaped '<img'."""
    assert len(at.html) == 0
    for body, allow_html in markdown_bodies(at):
        assert not allow_html, body
        assert not re.search(r"(?<!\\)<img", body), body


def assert_one_error(at: AppTest, *fragments: str) -> None:
    assert not at.exception, at.exception[0].value if at.exception else ""
    assert len(at.error) == 1, [e.value for e in at.error]
    message = at.error[0].value.replace("\\", "")  # shown as typed: Markdown escapes dropped
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message


# ----------------------------------------------------------------------------- micro checkpoints
def _image_model(kind: str, **config):
    """A micro UNet or DiT with random weights (a fresh denoiser predicts exactly zero: guidance would change nothing)."""
    from diffusion.image.dit import DiTConfig, DiTModel
    from diffusion.image.unet import UNetConfig, UNetModel

    torch.manual_seed(0)
    if kind == "unet":
        model = UNetModel(UNetConfig(base_channels=16, channel_mults=[1, 2], num_res_blocks=1, groups=4, num_heads=2,
                                     **config))
    else:
        model = DiTModel(DiTConfig(hidden_size=32, depth=2, num_heads=2, **config))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


def _save_image_model(folder, model, **settings) -> str:
    from diffusion.image.captions import DIGIT_WORDS

    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    DiffusionConfig(objective="image", schedule="cosine", diffusion_steps=20, image_size=8, channels=1,
                    class_names=None if settings.get("condition") == "text" else DIGIT_WORDS, **settings).save(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def image_runs(tmp_path_factory):
    """A folder laid out as the README's image commands leave one: a UNet run with a checkpoint, a DiT and a caption run."""
    root = tmp_path_factory.mktemp("image-runs")
    unet = _save_image_model(root / "results-image" / "final-model", _image_model("unet"))
    shutil.copytree(unet, root / "results-image" / "checkpoint-10")
    _save_image_model(root / "results-image-dit" / "final-model", _image_model("dit"))
    _save_image_model(root / "results-image-text" / "final-model", _image_model("unet", num_classes=0,
                                                                                  cross_attention_dim=256),
                      condition="text", text_encoder="models/masked-base")
    return root


# ------------------------------------------------------------------------------------ the library
def test_model_choices_offer_the_trained_model_first_then_its_checkpoints_then_the_bundled_one(tmp_path, monkeypatch):
    for name in ("final-model", "checkpoint-500", "checkpoint-1000"):
        folder = tmp_path / "results" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        DiffusionConfig(objective="masked", max_length=32).save(str(folder))
    gaussian = tmp_path / "results-gaussian" / "final-model"  # another kind: never offered on the masked page
    gaussian.mkdir(parents=True)
    DiffusionConfig(objective="gaussian", schedule="sqrt", diffusion_steps=20).save(str(gaussian))

    choices = explorer.model_choices("masked", cwd=str(tmp_path))
    assert [c.label for c in choices] == ["results/final-model (trained)", "results/checkpoint-1000 (step 1000)",
                                          "results/checkpoint-500 (step 500)", "models/masked-base (bundled)"]
    assert choices[-1].path == BUNDLED
    # from inside results/ there is no results/final-model (nor in the checkout, for this call: a quick test may have made one)
    monkeypatch.setattr(explorer, "REPO_DIR", str(tmp_path / "results"))
    assert [c.path for c in explorer.model_choices("masked", cwd=str(tmp_path / "results"))] == [BUNDLED]


def test_image_choices_name_type_and_conditioning_and_no_model_names_the_quick_test(image_runs, tmp_path):
    labels = [c.label for c in explorer.model_choices("image", cwd=str(image_runs))]
    assert labels == ["results-image/final-model (UNet, labels)", "results-image/checkpoint-10 (step 10, UNet, labels)",
                      "results-image-dit/final-model (DiT, labels)", "results-image-text/final-model (UNet, captions)"]
    assert explorer.model_choices("image", cwd=str(tmp_path)) == []
    assert "`python train.py --quick-test --objective image`" in explorer.no_model_line("image")


def test_a_folder_of_another_kind_is_one_line_that_names_its_page(image_runs, gaussian_checkpoint):
    with pytest.raises(ModelLoadError, match="holds a masked model, not an image one: open it on the Masked text page"):
        explorer.check_objective(BUNDLED, "image")
    with pytest.raises(ModelLoadError, match="holds an image model, not a masked text one: open it on the Images page"):
        explorer.check_objective(str(image_runs / "results-image" / "final-model"), "masked")
    explorer.check_objective(gaussian_checkpoint, "gaussian")  # the right kind: nothing to say
    assert explorer.find_folder("models/masked-base", cwd="/") == BUNDLED  # from the repository
    assert explorer.find_folder("no/such/folder") is None


def test_a_masked_step_becomes_cells_with_the_viewers_states():
    tokens = ["<s>", "d", "og", ":", " a", "<mask>", " dog", "</s>", "</s>", "</s>"]
    masked = [False, False, False, False, False, True, False, False, False, False]
    revealed = [False, False, False, False, False, False, True, True, False, False]
    kinds = ["special", "prefix", "prefix", "prefix", "generated", "generated", "generated", "generated", "generated",
             "special"]
    probs = [None, None, None, None, 0.4, None, 0.9, 0.8, 0.7, None]
    cells = explorer.masked_cells(tokens, masked, revealed, kinds, probs, "</s>")
    assert [(c.position, c.token, c.state, c.prob) for c in cells] == [
        (1, "d", PREFIX, None), (2, "og", PREFIX, None), (3, ":", PREFIX, None), (4, "a", REVEALED, 0.4),
        (5, "[MASK]", MASK, None), (6, "dog", NEW, 0.9), (7, "</s>", END, 0.8)]  # the text ends: nothing after it
    table = explorer.cells_frame(cells)
    assert list(table.columns) == ["position", "token", "state", "probability"]
    assert table["state"].tolist()[3:6] == ["revealed earlier", "still masked", "revealed in this step"]


def test_a_gaussian_step_shows_every_nearest_token_until_the_text_ends():
    tokens = ["</s>", "A", " dog", "\n", "</s>", " x"]
    probs = [0.2, 0.9, 0.5, 0.6, 0.95, 0.1]
    cells = explorer.gaussian_cells(tokens, probs, ["generated"] * 6, "</s>")
    # a </s> in the <s> slot is a guess, not the end; the </s> after text ends it
    assert [(c.token, c.state) for c in cells] == [("</s>", ROUNDED), ("A", ROUNDED), ("dog", ROUNDED),
                                                    ("\u21b5", ROUNDED), ("</s>", END)]
    assert [c.prob for c in cells] == probs[:5]


def test_chips_keep_tokens_as_values_and_colour_them_by_css():
    cells = [explorer.Cell(i, token, state, prob) for i, (token, state, prob) in
             enumerate([("dog", PREFIX, None), (HOSTILE, NEW, 0.25), ("[MASK]", MASK, None), ("w", ROUNDED, 1.0)])]
    styler = explorer.chip_styler(cells, per_row=3)
    values = styler.data.values.tolist()
    assert values == [["dog", HOSTILE, "[MASK]"], ["", "0.25", ""], ["w", "", ""], ["1.00", "", ""]]
    assert list(styler.data.index) == ["0-2", "p 0-2", "3-3", "p 3-3"]
    styler._compute()
    css = {(r, c): dict(styler.ctx[(r, c)]) for r, c in [(0, 0), (0, 1), (2, 0)]}
    assert css[(0, 0)]["color"] == "#7dd3fc"  # the prompt: light blue
    assert css[(0, 1)] == {"color": "#4ade80", "background-color": "#164e2c"}  # revealed in this step: green
    assert css[(2, 0)]["color"] == "#6eeb8c"  # a Gaussian token of rounding probability 1: green


def test_messages_name_the_widgets_and_typed_text_stays_literal():
    assert explorer.for_widgets("--steps must be at least 1, got 0\nmore") == '"Steps" must be at least 1, got 0'
    assert explorer.for_widgets("--ddim-steps 30 is more than 20") == '"DDIM steps" 30 is more than 20'
    assert explorer.for_widgets("the --text template has no [MASK]") == "the template has no [MASK]"
    escaped = explorer.markdown_literal(HOSTILE + " **bold** [a](b)")
    assert "\\<img" in escaped and "\\*\\*bold\\*\\*" in escaped and "\\[a\\]\\(b\\)" in escaped
    assert re.sub(r"\\(.)", r"\1", escaped) == HOSTILE + " **bold** [a](b)"  # unescaped: exactly as typed


# ------------------------------------------------------------------------------------- the pages
def test_the_entry_page_navigates_between_the_three_pages(image_runs, monkeypatch):
    monkeypatch.chdir(image_runs)  # its runs are found as results-image/... from here
    at = AppTest.from_file(os.path.join(REPO, "explorer.py"), default_timeout=60).run()
    assert not at.exception
    assert at.header[0].value == "Masked text diffusion" and title(at).startswith("step ")
    at.switch_page("explorer_pages/images.py").run()
    assert not at.exception and at.header[0].value == "Image diffusion"
    assert at.selectbox(key="image-model").value == "results-image/final-model (UNet, labels)"
    assert title(at) == "step 20 of 20"
    at.switch_page("explorer_pages/gaussian_text.py").run()
    assert not at.exception and at.header[0].value == "Gaussian text diffusion"


def test_masked_page_defaults_to_the_bundled_model_and_the_slider_walks_the_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no results/final-model here: the bundled model is the default
    # ...nor a quick test's in the checkout (the page looks there too)
    monkeypatch.setitem(explorer.CANDIDATES, "masked", [("results-none/final-model", "trained"),
                                                        *explorer.CANDIDATES["masked"][1:]])
    at = page("masked_text")
    assert not at.exception
    assert at.selectbox(key="masked-model").value == "models/masked-base (bundled)"
    last = int(at.slider(key="step").max)
    assert title(at) == f"step {last} of {last}" and at.slider(key="step").value == last
    final = at.code[0].value
    assert final.startswith("dog:") and "[MASK]" not in final
    at.slider(key="step").set_value(0).run()
    assert title(at) == f"step 0 of {last}"
    start = at.code[0].value
    assert start.startswith("dog:") and start.count("[MASK]") == 24 - 2 - 3  # every generated position: <s> d og : </s>
    table = at.dataframe[2].value  # the legend, the chips, the table
    generated = table[table["state"] != "prompt (fixed)"]
    assert (generated["token"] == "[MASK]").all() and generated["probability"].isna().all()
    at.slider(key="step").set_value(1).run()
    table = at.dataframe[2].value
    new = table[table["state"] == "revealed in this step"]
    assert len(new) >= 1 and new["probability"].between(0, 1).all()
    assert at.code[0].value.count("[MASK]") == start.count("[MASK]") - len(new)


def test_moving_the_slider_does_not_sample_again_and_changing_steps_does(monkeypatch):
    calls = []
    original = explorer.masked_trajectory

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(explorer, "masked_trajectory", counted)
    at = page("masked_text", BUNDLED)
    at.number_input(key="seed").set_value(9173).run()  # settings no other test has cached
    at.slider(key="threshold").set_value(0.0).run()  # no early stop: exactly the steps asked for
    at.number_input(key="steps").set_value(6).run()
    assert title(at) == "step 6 of 6" and not at.exception
    sampled = len(calls)
    for k in (0, 3, 5):
        at.slider(key="step").set_value(k).run()
        assert title(at) == f"step {k} of 6"
    assert len(calls) == sampled  # only re-displayed
    at.number_input(key="steps").set_value(3).run()
    assert len(calls) == sampled + 1
    assert int(at.slider(key="step").max) == 3 and title(at) == "step 3 of 3"  # a new range, shown at its end


def test_masked_template_mode_fills_only_the_blanks():
    at = page("masked_text", BUNDLED)
    at.radio(key="mode").set_value("template").run()
    at.text_area(key="template").input("dog: a [MASK] [MASK] of the genus Canis.").run()
    assert not at.exception and not at.error
    assert "of the genus Canis." in at.code[0].value and "[MASK]" not in at.code[0].value
    at.slider(key="step").set_value(0).run()
    assert at.code[0].value == "dog: a [MASK] [MASK] of the genus Canis."


def test_a_hostile_prompt_is_printed_as_text():
    at = page("masked_text", BUNDLED)
    at.text_input(key="prefix").input(HOSTILE).run()
    assert not at.exception and not at.error
    assert at.code[0].value.startswith(HOSTILE)  # the sequence, as text
    at.slider(key="step").set_value(0).run()
    assert at.code[0].value.startswith(HOSTILE + " [MASK]")
    assert_no_markup(at)


@pytest.mark.parametrize("setting, value, fragments", [
    ("template", "", ["the template is empty"]),
    ("template", "no blanks here", ["the template has no [MASK] to fill in"]),
    ("length", 4, ['leaves nothing to generate in "Length" 4']),
])
def test_bad_masked_settings_are_one_line(setting, value, fragments):
    at = page("masked_text", BUNDLED)
    if setting == "template":
        at.radio(key="mode").set_value("template").run()
        at.text_area(key="template").input(value).run()
    else:
        at.text_input(key="prefix").input("a long prompt of words").run()
        at.number_input(key="length").set_value(value).run()
    assert_one_error(at, *fragments)


def test_bad_checkpoints_are_one_line(gaussian_checkpoint, image_runs):
    at = page("masked_text", "/no/such/" + HOSTILE)
    assert_one_error(at, f"no folder '/no/such/{HOSTILE}'")
    assert_no_markup(at)  # the typed path is escaped in the error's Markdown
    assert_one_error(page("masked_text", gaussian_checkpoint), "holds a gaussian model", "Gaussian text page")
    assert_one_error(page("images", BUNDLED), "holds a masked model, not an image one", "Masked text page")
    assert_one_error(page("gaussian_text", str(image_runs / "results-image" / "final-model")), "Images page")


def test_a_page_without_a_model_says_how_to_train_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(explorer, "REPO_DIR", str(tmp_path))  # a quick test's results in the checkout are not seen
    monkeypatch.setitem(explorer.CANDIDATES, "gaussian", [("results-gaussian/final-model", "trained")])
    at = page("gaussian_text")
    assert not at.exception and not at.error and not at.subheader
    assert "python train.py --quick-test --objective gaussian" in at.info[0].value
    at = page("images")
    assert "python train.py --quick-test --objective image" in at.info[0].value


def test_gaussian_page_shows_nearest_tokens_per_step_and_reruns_on_new_steps(gaussian_checkpoint):
    at = page("gaussian_text", gaussian_checkpoint)
    assert not at.exception and not at.error
    assert title(at) == "step 20 of 20"  # DDIM over all 20 trained steps of the micro model
    assert at.caption[-1].value.startswith("diffusion step k = 1 of 20, t = 0.050")
    chips = at.dataframe[1].value
    assert chips.index[0].startswith("1-") and chips.iloc[0, :3].tolist() == ["d", "og", ":"]  # the prompt, fixed
    at.slider(key="step").set_value(1).run()
    assert title(at) == "step 1 of 20" and at.caption[-1].value.startswith("diffusion step k = 20 of 20, t = 1.000")
    table = at.dataframe[2].value
    nearest = table[table["state"] == "nearest token"]
    assert len(nearest) >= 1 and nearest["probability"].between(0, 1).all()
    at.number_input(key="ddim-steps").set_value(5).run()
    assert int(at.slider(key="step").max) == 5 and title(at) == "step 5 of 5"
    at.radio(key="sampler").set_value("ddpm").run()
    assert title(at) == "step 20 of 20" and "DDPM, 20 steps" in at.caption[1].value
    at.checkbox(key="clamp").check().run()
    at.checkbox(key="self-conditioning").uncheck().run()
    assert "clamped, no self-conditioning" in at.caption[1].value and not at.exception
    at.text_input(key="prefix").input(HOSTILE).run()
    assert not at.exception and at.code[0].value.startswith(HOSTILE)
    assert_no_markup(at)


def test_image_page_slider_steps_and_guidance(image_runs, monkeypatch):
    monkeypatch.chdir(image_runs)
    at = page("images")
    assert not at.exception and not at.error
    assert title(at) == "step 20 of 20" and at.caption[-1].value.startswith("diffusion step k = 1 of 20")
    final = at.image[0].value
    at.slider(key="step").set_value(1).run()
    assert title(at) == "step 1 of 20" and at.caption[-1].value.startswith("diffusion step k = 20 of 20, t = 1.000")
    assert at.image[0].value != final  # another picture (the media URL is the hash of the PNG)
    at.number_input(key="ddim-steps").set_value(4).run()
    assert int(at.slider(key="step").max) == 4 and title(at) == "step 4 of 4"
    shown = at.image[0].value
    at.slider(key="guidance").set_value(0.0).run()
    assert "guidance 0" in at.caption[1].value and at.image[0].value != shown  # sampled again, other images
    at.selectbox(key="digit").set_value("7").run()
    assert at.text[0].value == "Columns, left to right: 7-seven"
    assert "caption" not in [w.key for w in at.text_input]  # a label model reads no captions


def test_image_page_filters_by_model_type_and_reads_captions(image_runs, monkeypatch):
    monkeypatch.chdir(image_runs)
    at = page("images")
    at.radio(key="model-type").set_value("DiT").run()
    assert at.selectbox(key="image-model").options == ["results-image-dit/final-model (DiT, labels)"]
    assert not at.exception and "(DiT, label-conditioned)" in at.caption[1].value
    at.radio(key="model-type").set_value("UNet").run()
    at.selectbox(key="image-model").set_value("results-image-text/final-model (UNet, captions)").run()
    assert not at.exception and not at.error
    assert at.text[0].value.startswith("Columns, left to right: a handwritten zero, a handwritten one")
    at.text_input(key="caption").input(HOSTILE).run()
    assert not at.exception and at.text[0].value == f"Columns, left to right: {HOSTILE}"
    assert_no_markup(at)
    at.selectbox(key="digit").set_value("7").run()  # a digit and a caption: which one?
    assert_one_error(at, "give a caption or a digit, not both")
    at.radio(key="model-type").set_value("DiT").run()
    at.text_input(key="image-checkpoint").input("results-image/final-model").run()  # typed: wins over the chooser
    assert_one_error(at, "model type DiT: results-image/final-model holds a UNet")
