"""visualize_generation.py, diffusion/viz/rendering.py, and view_animation.html driven in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO, call_main, run_script
from PIL import Image

import generate
import visualize_generation
from diffusion.viz import rendering

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
# The flags of the shared run: 22 generated positions, top-k so the micro model's choices vary.
FLAGS = ["--prefix", "dog:", "--max-length", "24", "--steps", "6", "--threshold", "0", "--sampling", "topk", "--k", "20",
         "--seed", "3"]


@pytest.fixture(scope="module")
def animation(checkpoint, tmp_path_factory):
    """One run of the script as a user types it (a subprocess); the tests below share its outputs."""
    out = tmp_path_factory.mktemp("animation")
    proc = run_script([sys.executable, "visualize_generation.py", "--checkpoint", checkpoint, *FLAGS,
                       "--frame-ms", "300", "--output", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc.stdout


def read_data(path) -> dict:
    text = open(path).read()
    prefix = "window.ANIMATION_DATA = "
    assert text.startswith(prefix) and text.endswith(";\n")
    return json.loads(text[len(prefix):-2])


def check_files(out, frame_ms: int) -> tuple[dict, list[Image.Image]]:
    """The three outputs agree: one PNG and one GIF frame per trace step, all of one size."""
    data = read_data(out / "animation_data.js")
    steps = data["samples"][0]["steps"]
    names = sorted(name for name in os.listdir(out / "visualization_frames") if name.endswith(".png"))
    assert names == [f"frame_{k:03d}.png" for k in range(len(steps))]
    pngs = [Image.open(out / "visualization_frames" / name) for name in names]
    assert len({png.size for png in pngs}) == 1, [png.size for png in pngs]
    with Image.open(out / "text_diffusion_animation.gif") as gif:
        assert gif.n_frames == len(pngs) and gif.size == pngs[0].size
        assert gif.info["loop"] == 0  # forever
        durations = []
        for k in range(gif.n_frames):
            gif.seek(k)
            durations.append(gif.info["duration"])
    assert durations == [frame_ms] * (len(pngs) - 1) + [3 * frame_ms]
    return data, pngs


def test_cli_writes_gif_frames_and_data_matching_generate(animation, checkpoint, tokenizer, capsys):
    out, stdout = animation
    data, pngs = check_files(out, frame_ms=300)
    sample = data["samples"][0]
    steps = sample["steps"]
    assert len(steps) == 6 + 1 == data["forward_passes"] + 1  # step 0 (all masked) + one per forward pass
    assert f"wrote {out}/text_diffusion_animation.gif (7 frames" in stdout
    assert "frame_000.png ... frame_006.png" in stdout and f"wrote {out}/animation_data.js" in stdout

    kinds = sample["kinds"]
    n_prefix = len(tokenizer("dog:", add_special_tokens=False)["input_ids"])
    assert kinds == ["special"] + ["prefix"] * n_prefix + ["generated"] * (24 - 2 - n_prefix) + ["special"]  # <s> dog: ... </s>
    assert steps[0]["masked"] == [kind == "generated" for kind in kinds]  # everything to generate starts masked
    assert not any(steps[-1]["masked"])
    assert "".join(steps[0]["tokens"][1:1 + n_prefix]) == "dog:" and steps[0]["tokens"][0] == "<s>"
    assert data["frame_ms"] == 300 and data["settings"] == "top-k 20, linear schedule, 6 steps"

    # The data file holds exactly what generate.py --json records for the same settings.
    assert generate.main(["--checkpoint", checkpoint, *FLAGS, "--num-samples", "1", "--json"]) == 0
    reference = json.loads(capsys.readouterr().out)
    assert reference["samples"][0]["steps"] == steps and reference["samples"][0]["text"] == sample["text"]
    assert data["options"] == reference["options"]


def test_in_process_runs_threshold_infill_and_stale_frames(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    template = "dog: a [MASK] [MASK] of the genus [MASK]."
    argv = ["--checkpoint", checkpoint, "--text", template, "--steps", "3", "--schedule", "cosine", "--width", "600",
            "--output", str(out)]
    assert visualize_generation.main(argv) == 0
    data, pngs = check_files(out, frame_ms=800)
    assert len(pngs) == 4 and pngs[0].size[0] == 600
    kinds = data["samples"][0]["kinds"]
    assert kinds.count("generated") == 3 and kinds.count("prefix") > 5
    (out / "visualization_frames" / "notes.txt").write_text("mine")  # not a frame: must survive

    # --threshold may finish in fewer passes than --steps: one frame per trace step, not steps + 1.
    # An untrained model clears a 1e-6 bar everywhere, so all 30 positions are committed at once.
    assert visualize_generation.main(["--checkpoint", checkpoint, "--steps", "8", "--threshold", "1e-6",
                                      "--output", str(out)]) == 0
    data, pngs = check_files(out, frame_ms=800)  # also: frame_002.png and frame_003.png were removed
    assert data["forward_passes"] == 1 and len(pngs) == 2
    assert (out / "visualization_frames" / "notes.txt").read_text() == "mine"
    assert "1 forward passes" in capsys.readouterr().out


def test_the_end_of_a_text_is_one_end_mark_and_nothing_after_it():
    tokens = ["<s>", "dog", ":", " a", " pet", "</s>", "</s>", "<mask>", "</s>", "</s>"]
    kinds = ["special", "prefix", "prefix"] + ["generated"] * 6 + ["special"]
    masked = [False] * 7 + [True] + [False] * 2
    pieces = rendering.step_pieces(tokens, masked, [False] * 10, kinds, "</s>")
    assert [(p.text, p.kind) for p in pieces] == [("dog", "prefix"), (":", "prefix"), ("a", "revealed"),
                                                  ("pet", "revealed"), (rendering.END_TEXT, "end")]
    # without an end token (a tokenizer with none) the pieces are drawn as they are
    assert [p.text for p in rendering.step_pieces(tokens, masked, [False] * 10, kinds)][-3:] == ["</s>", "[MASK]", "</s>"]
    # the bar counts the text's positions only: 2 of 2 revealed, full
    frame = rendering.render_frame(pieces, 1, 1)
    bar_y = rendering._header_height(rendering.Style()) - 28 - 7
    assert frame.getpixel((960 - 36 - 10, bar_y)) == rendering.BAR_FILL


def test_step_pieces_and_frame_pixels():
    tokens = ["<s>", "dog", ":", " a", "<mask>", "ing", "<mask>", ".", "</s>"]
    kinds = ["special", "prefix", "prefix", "generated", "generated", "generated", "generated", "generated", "special"]
    masked = [False, False, False, False, True, False, True, False, False]
    revealed = [False, False, False, True, False, False, False, True, False]
    pieces = rendering.step_pieces(tokens, masked, revealed, kinds)
    assert [(p.text, p.kind, p.space_before) for p in pieces] == [
        ("dog", "prefix", True), (":", "prefix", False), ("a", "new", True), ("[MASK]", "mask", True),
        ("ing", "revealed", True),  # a word after a [MASK] gets its own space
        ("[MASK]", "mask", True), (".", "new", True),
    ]
    done = rendering.step_pieces(tokens, [False] * 9, [False] * 9, kinds)
    frames = rendering.render_frames([pieces * 12, done])  # a long first step wraps onto several lines
    assert frames[0].size == frames[1].size and frames[0].size[0] == 960
    assert frames[0].size[1] > rendering.render_frame(done, 1, 1).size[1]  # the height fits the longest step

    def count(image, color):
        return dict((c, n) for n, c in image.getcolors(maxcolors=1 << 24)).get(color, 0)

    # green (new tokens) and grey (masks) appear with the tokens; the legend alone has a few of each
    assert count(frames[0], rendering.COLORS[rendering.NEW]) > count(frames[1], rendering.COLORS[rendering.NEW])
    assert count(frames[0], rendering.COLORS[rendering.MASK]) > 5 * count(frames[1], rendering.COLORS[rendering.MASK])
    # the blue bar: 3 of 5 generated positions revealed in frame 0 (60 %), full in the last frame
    bar_y = rendering._header_height(rendering.Style()) - 28 - 7
    left, right = 36 + 0.5 * (960 - 72), 36 + 0.7 * (960 - 72)
    assert frames[0].getpixel((int(left), bar_y)) == rendering.BAR_FILL
    assert frames[0].getpixel((int(right), bar_y)) == rendering.BAR_TRACK
    assert frames[1].getpixel((int(right), bar_y)) == rendering.BAR_FILL


def _error(capsys, argv, *needles):
    code = visualize_generation.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_bad_inputs(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    c = ["--checkpoint", checkpoint, "--output", str(out)]
    _error(capsys, c + ["--steps", "0"], "--steps must be at least 1")
    _error(capsys, ["--checkpoint", str(tmp_path / "nope"), "--output", str(out)], "does not exist")
    _error(capsys, c + ["--num-samples", "2"], "--num-samples must be 1")
    _error(capsys, c + ["--frame-ms", "5"], "--frame-ms must be at least 20")
    _error(capsys, c + ["--width", "100"], "--width must be at least 480")
    _error(capsys, c + ["--json"], "animation_data.js")
    _error(capsys, c + ["--schedule", "zigzag"], "known schedules: linear")
    assert not out.exists()  # nothing written on bad input
    (tmp_path / "a-file").write_text("")
    _error(capsys, ["--checkpoint", checkpoint, "--output", str(tmp_path / "a-file")], "is a file")
    proc = call_main("visualize_generation.py", ["--checkpoint", checkpoint, "--steps", "0"], capsys)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --steps must be at least 1, got 0"


# ------------------------------------------------------------------------- the viewer in Chromium
needs_chromium = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
           "apt-get install chromium chromium-driver (.ci/run does)",
)


@pytest.fixture
def browser(tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never try to download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--window-size=1100,1500", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _wait(driver, condition, what: str, timeout: float = 10.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d), message=f"waiting for {what}")


def _pieces(step: dict, kinds: list[str], eos: str = "</s>"):
    return rendering.step_pieces(step["tokens"], step["masked"], step["revealed"], kinds, eos)


def _expected_text(step: dict, kinds: list[str], eos: str = "</s>") -> str:
    """The text the page should show for one step: the renderer's pieces, spaces where a word starts."""
    pieces = _pieces(step, kinds, eos)
    return "".join((" " if p.space_before and i else "") + p.text for i, p in enumerate(pieces))


def _severe(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@needs_chromium
def test_viewer_in_headless_chromium(browser, animation, checkpoint, tmp_path, capsys):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    out, _ = animation
    page_dir = tmp_path / "page"
    page_dir.mkdir()
    shutil.copy(os.path.join(REPO, "view_animation.html"), page_dir)
    shutil.copy(out / "animation_data.js", page_dir)
    data = read_data(page_dir / "animation_data.js")
    steps, kinds = data["samples"][0]["steps"], data["samples"][0]["kinds"]
    last = len(steps) - 1

    d = browser
    d.get((page_dir / "view_animation.html").as_uri())  # file://, as a double-click opens it
    el = lambda css: d.find_element(By.CSS_SELECTOR, css)  # noqa: E731
    title = lambda: el("#step-title").text  # noqa: E731
    _wait(d, lambda d: el("#viewer").is_displayed(), "the viewer")
    assert not el("#empty").is_displayed() and not el("#error").is_displayed()
    assert el("#slider").get_attribute("max") == str(last)
    assert len(d.find_elements(By.CSS_SELECTOR, "#grid .card")) == len(steps)
    assert "model: final-model" in el("#meta").text and "top-k 20, linear schedule, 6 steps" in el("#meta").text

    def press(*keys):  # keys for the page itself, not for a focused control
        d.execute_script("document.activeElement && document.activeElement.blur()")
        ActionChains(d).send_keys(*keys).perform()

    press(Keys.HOME)  # stops the autoplay at step 0
    assert title() == f"Step 0 / {last}" and el("#play").text == "Play"
    assert len(d.find_elements(By.CSS_SELECTOR, "#tokens .mask")) == kinds.count("generated")
    for k, step in enumerate(steps):  # every step's text and classes, stepping with the arrow key
        assert title() == f"Step {k} / {last}"
        assert el("#tokens").get_attribute("textContent") == _expected_text(step, kinds, data["eos_token"]), k
        pieces = _pieces(step, kinds, data["eos_token"])
        assert len(d.find_elements(By.CSS_SELECTOR, "#tokens .new")) == sum(p.kind == "new" for p in pieces)
        assert len(d.find_elements(By.CSS_SELECTOR, "#tokens .prefix")) == kinds.count("prefix")
        press(Keys.ARROW_RIGHT)

    # the slider: keys move it natively and the text follows
    slider = el("#slider")
    d.execute_script("arguments[0].focus()", slider)
    slider.send_keys(Keys.HOME)
    assert title() == f"Step 0 / {last}"
    text_0 = el("#tokens").text
    slider.send_keys(Keys.END)
    assert title() == f"Step {last} / {last}" and el("#tokens").text != text_0
    slider.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    assert title() == f"Step {last - 2} / {last}" and slider.get_attribute("value") == str(last - 2)

    # each revealed token's probability: in its title, and in the info line on hover
    new_span = el("#tokens .new")
    position = next(i for i, r in enumerate(steps[last - 2]["revealed"]) if r and kinds[i] == "generated")
    prob = steps[last - 2]["probs"][position]
    assert f"p = {prob:.4f}, revealed at step {last - 2}" in new_span.get_attribute("title")
    ActionChains(d).move_to_element(new_span).perform()
    assert f"p = {prob:.4f}" in el("#hover-info").text
    assert "still masked (revealed at step" in el("#tokens .mask").get_attribute("title")

    # F toggles the grid of all steps; a card jumps to its step; R replays from step 0
    assert not el("#grid").is_displayed()
    press("f")
    assert el("#grid").is_displayed()
    card = d.find_elements(By.CSS_SELECTOR, "#grid .card")[1]
    card.click()
    assert title() == f"Step 1 / {last}" and "current" in card.get_attribute("class")
    press("r")
    assert el("#play").text == "Pause"
    _wait(d, lambda d: title() == f"Step {last} / {last}", "the replay to reach the end", timeout=15)
    press(Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_LEFT)  # a step with every colour, for the screenshot
    shown = [p for p in _pieces(steps[last - 3], kinds, data["eos_token"]) if p.kind not in ("prefix", "end")]
    revealed_share = 1 - sum(p.kind == "mask" for p in shown) / len(shown)
    bar_share = "const b = document.getElementById('bar-fill'); return b.getBoundingClientRect().width / b.parentNode.clientWidth"
    _wait(d, lambda d: abs(d.execute_script(bar_share) - revealed_share) < 0.01, "the blue bar to show the revealed share")
    shot = tmp_path / "viewer.png"
    assert d.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("VIEWER_SCREENSHOT"):
        shutil.copy(shot, os.environ["VIEWER_SCREENSHOT"])
    press("F")
    assert not el("#grid").is_displayed()
    assert _severe(d) == []

    # The end of a text: the </s> tail is one quiet end mark, not a wall of </s>, and is not counted.
    end_dir = tmp_path / "end"
    end_dir.mkdir()
    shutil.copy(os.path.join(REPO, "view_animation.html"), end_dir)
    tokens = ["<s>", "dog", ":", " a", " pet", ".", "</s>", "</s>", "</s>", "</s>"]
    end_kinds = ["special", "prefix", "prefix"] + ["generated"] * 6 + ["special"]
    end_steps = [{"step": k, "tokens": tokens if k else tokens[:3] + ["<mask>"] * 6 + ["</s>"],
                  "masked": [False] * 3 + [k == 0] * 6 + [False], "revealed": [False] * 3 + [k == 1] * 6 + [False],
                  "probs": [0.0] * 3 + [0.5 * k] * 6 + [0.0]} for k in (0, 1)]
    end_data = {"samples": [{"text": "dog: a pet.", "steps": end_steps, "kinds": end_kinds}], "eos_token": "</s>",
                "frame_ms": 200, "settings": "greedy"}
    (end_dir / "animation_data.js").write_text("window.ANIMATION_DATA = " + json.dumps(end_data) + ";\n")
    d.get((end_dir / "view_animation.html").as_uri())
    _wait(d, lambda d: el("#viewer").is_displayed(), "the viewer with an ended text")
    press(Keys.END)
    text = el("#tokens").get_attribute("textContent")
    assert text == "dog: a pet. \u220e" == _expected_text(end_steps[1], end_kinds) and "</s>" not in text
    assert len(d.find_elements(By.CSS_SELECTOR, "#tokens .end")) == 1
    assert el("#percent").text.endswith("(3 of 3 positions)")  # a, pet, . : the end mark and its tail are not text
    press(Keys.HOME)
    assert el("#percent").text.endswith("(0 of 6 positions)")

    # Served over HTTP, as in the guide.
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], cwd=page_dir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port)
        d.get(f"http://127.0.0.1:{port}/view_animation.html")
        _wait(d, lambda d: el("#viewer").is_displayed(), "the viewer over http")
        assert len(d.find_elements(By.CSS_SELECTOR, "#grid .card")) == len(steps)
        assert _severe(d) == []
    finally:
        server.terminate()
        server.wait(timeout=10)

    # No data next to the page: a message that says how to make it; then load generate.py --json output by hand.
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    shutil.copy(os.path.join(REPO, "view_animation.html"), empty_dir)
    d.get((empty_dir / "view_animation.html").as_uri())
    _wait(d, lambda d: el("#empty").is_displayed(), "the no-data message")
    assert "python visualize_generation.py" in el("#empty").text and not el("#viewer").is_displayed()
    assert all("animation_data.js" in message for message in _severe(d))  # only the missing file itself
    assert generate.main(["--checkpoint", checkpoint, "--json", "--steps", "4", "--num-samples", "2"]) == 0
    json_file = tmp_path / "generated.json"
    json_file.write_text(capsys.readouterr().out)
    el("#file").send_keys(str(json_file))
    _wait(d, lambda d: el("#viewer").is_displayed(), "the viewer after loading a file")
    assert el("#slider").get_attribute("max") == "4" and "sample 1 of 2" in el("#meta").text
    not_data = tmp_path / "not-data.js"
    not_data.write_text("alert('hi')")
    el("#file").send_keys(str(not_data))
    _wait(d, lambda d: el("#error").is_displayed(), "the error for a file that is not data")
    assert "not-data.js is not animation data" in el("#error").text
    assert _severe(d) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"http.server did not listen on port {port}")


# ------------------------------------------------------------------ Gaussian checkpoints
@pytest.fixture(scope="module")
def gaussian_animation(gaussian_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("gaussian-animation")
    assert visualize_generation.main(["--checkpoint", gaussian_checkpoint, "--prefix", "dog:", "--max-length", "16",
                                      "--sampler", "ddpm", "--max-frames", "8", "--frame-ms", "200", "--seed", "1",
                                      "--output", str(out)]) == 0
    return out


def test_gaussian_frames_show_the_rounded_text_coloured_by_confidence(gaussian_animation):
    data, pngs = check_files(gaussian_animation, 200)
    sample = data["samples"][0]
    assert data["objective"] == "gaussian" and data["settings"] == "DDPM, 20 steps"
    assert data["forward_passes"] == 20 and len(sample["steps"]) == 8  # 20 calls, 8 of them drawn
    assert [s["step"] for s in sample["steps"]][0] == 20 and sample["steps"][-1]["step"] == 1
    assert sample["kinds"][:3] == ["special", "prefix", "prefix"] and sample["kinds"][-1] == "special"
    assert sample["text"].startswith("dog:")
    # the prompt's light blue is in every frame; the rounded tokens' colours come from their probabilities
    for png in pngs:
        colours = {c for _, c in png.convert("RGB").getcolors(1 << 20)}
        assert rendering.COLORS[rendering.PREFIX] in colours
    pieces = rendering.denoising_pieces(sample["steps"][-1]["tokens"], sample["steps"][-1]["probs"], sample["kinds"],
                                        data["eos_token"])
    rounded = [p for p in pieces if p.kind == rendering.ROUNDED]
    assert rounded and all(0 <= p.confidence <= 1 for p in rounded)
    assert rendering.confidence_colour(0.0) == (150, 70, 70) and rendering.confidence_colour(1.0) == (110, 235, 140)


def test_gaussian_flags_on_a_masked_checkpoint_and_masked_flags_on_a_gaussian_one(checkpoint, gaussian_checkpoint,
                                                                                tmp_path, capsys):
    out = tmp_path / "anim"
    assert visualize_generation.main(["--checkpoint", checkpoint, "--max-frames", "5", "--output", str(out)]) == 2
    assert "--max-frames only applies to a Gaussian checkpoint" in capsys.readouterr().err
    assert visualize_generation.main(["--checkpoint", gaussian_checkpoint, "--threshold", "0.5",
                                      "--output", str(out)]) == 2
    assert "--threshold only applies to a masked checkpoint" in capsys.readouterr().err
    assert not out.exists()


@needs_chromium
def test_the_viewer_plays_a_gaussian_trace(browser, gaussian_animation, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page_dir = tmp_path / "page"
    page_dir.mkdir()
    shutil.copy(os.path.join(REPO, "view_animation.html"), page_dir)
    shutil.copy(gaussian_animation / "animation_data.js", page_dir)
    data = read_data(page_dir / "animation_data.js")
    steps, kinds = data["samples"][0]["steps"], data["samples"][0]["kinds"]
    d = browser
    d.get((page_dir / "view_animation.html").as_uri())
    el = lambda css: d.find_element(By.CSS_SELECTOR, css)  # noqa: E731
    _wait(d, lambda d: el("#viewer").is_displayed(), "the viewer")
    assert "Gaussian noise" in el("#title").text
    assert el("#legend-gaussian").is_displayed() and not el("#legend-masked").is_displayed()
    d.execute_script("document.activeElement && document.activeElement.blur()")
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(d).send_keys(Keys.END).perform()
    last = steps[-1]
    assert el("#step-title").text == f"k = {last['step']} of 20 (t = {last['t']:.2f})"
    pieces = rendering.denoising_pieces(last["tokens"], last["probs"], kinds, data["eos_token"])
    spans = d.find_elements(By.CSS_SELECTOR, "#tokens .rounded")
    rounded = [p for p in pieces if p.kind == rendering.ROUNDED]
    assert len(spans) == len(rounded)
    for span, piece in zip(spans, rounded, strict=True):  # the colour of the GIF's frames
        rgb = ", ".join(map(str, rendering.confidence_colour(piece.confidence)))
        assert span.value_of_css_property("color") in (f"rgba({rgb}, 1)", f"rgb({rgb})")
        assert f"rounding probability p = {piece.confidence:.4f}" in span.get_attribute("title")
    bar = "const b = document.getElementById('bar-fill'); return b.getBoundingClientRect().width / b.parentNode.clientWidth"
    _wait(d, lambda d: abs(d.execute_script(bar) - last["alpha_bar"] ** 0.5) < 0.02, "the bar to show the signal share")
    assert _severe(d) == []


def test_a_long_settings_header_is_broken_and_never_runs_over_the_title():
    """The drawn-clamp description is longer than the room beside the title: it goes on two lines
    at the right, and the title's pixels are the same as with no header at all."""
    from diffusion.viz.rendering import ROUNDED, Piece, Style, font, render_denoising_frames

    style = Style()
    pieces = [Piece("a", ROUNDED, False, 0.5)]
    title = "k = 20 of 1000  (t = 0.02)"
    header = "DDIM, 50 of 1000 steps, eta 0, clamped to drawn tokens (temperature 0.7)"
    assert font(style.small_size).getlength(header) > style.width - 2 * style.margin - font(
        style.title_size, bold=True).getlength(title) - 20  # too long for one line beside the title
    bare, = render_denoising_frames([pieces], [(title, 0.9)], "", style)
    long, = render_denoising_frames([pieces], [(title, 0.9)], header, style)
    title_box = (0, 0, int(style.margin + font(style.title_size, bold=True).getlength(title)) + 10,
                 style.margin + style.title_size + 10)
    assert bare.crop(title_box).tobytes() == long.crop(title_box).tobytes()
    assert bare.tobytes() != long.tobytes()  # the header is drawn


def test_an_unconditional_rows_start_token_is_not_drawn():
    # a Gaussian row without a prompt generates its <s> slot too: the text starts after it, while a
    # special token later in the row is still shown as a dot, and </s> ends the text
    tokens, probs = ["<s>", "dog", ":", "<pad>", " wolf", "</s>", " cat"], [0.9, 0.8, 0.7, 0.2, 0.6, 0.9, 0.5]
    pieces = rendering.denoising_pieces(tokens, probs, ["generated"] * 7, "</s>")
    assert [p.text for p in pieces] == ["dog", ":", "\u00b7", "wolf", rendering.END_TEXT]
    assert pieces[0].confidence == 0.8 and pieces[0].kind == rendering.ROUNDED
