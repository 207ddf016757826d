"""train.py --dashboard: the live Tk window under a virtual display (Debian's xvfb), and without one.

The window is driven through train.main(argv), as the command line runs it: a timer inside the
window's own event loop reads the labels, the plot and a screenshot, then presses close.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from conftest import FAST, MICRO_MODEL, call_main, train_in_process

MICRO_IMAGE = ["--objective", "image", "--quick-test", "--config-overrides",
               "base_channels=16,groups=4,num_res_blocks=1,num_heads=2", "--diffusion-steps", "20", "--ddim-steps", "4",
               "--max-eval-samples", "20", "--logging_steps", "2", "--save_steps", "1000", "--disable_tqdm", "true"]


@pytest.fixture(scope="session")
def xvfb():
    """One virtual X display (Xvfb) for the session: a Tk interpreter keeps its connection to the display
    until it is garbage-collected, and Xlib ends the process if that server goes away before."""
    if shutil.which("Xvfb") is None:
        if os.environ.get("CI"):
            pytest.fail("Xvfb is missing: .ci/run installs Debian's xvfb package")
        pytest.skip("Xvfb is not installed (apt install xvfb)")
    number = 50 + os.getpid() % 1000
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while not os.path.exists(f"/tmp/.X11-unix/X{number}") and time.time() < deadline:
        time.sleep(0.1)
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def display(xvfb, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb)
    return xvfb


def drive(monkeypatch, ready, seen: dict, timeout_s: float = 240):
    """Patch the window so that, inside its event loop, ``ready(window)`` is polled every 200 ms;
    once true, ``seen`` gets the labels, the plot, the sample and a screenshot, and close is pressed."""
    from PIL import ImageGrab

    from diffusion import dashboard

    start = dashboard.DashboardWindow.start
    deadline = time.time() + timeout_s

    def patched_start(window, train):
        start(window, train)

        def check():
            if window.callback.stop_requested.is_set():
                return
            if ready(window) or time.time() > deadline:
                window.root.update()
                root = window.root
                box = (root.winfo_rootx(), root.winfo_rooty(),
                       root.winfo_rootx() + root.winfo_width(), root.winfo_rooty() + root.winfo_height())
                seen.update(stats={k: v.get() for k, v in window.stats.items()}, series=dict(window.series),
                            lines=len(window.axes.lines), texts=window.texts, image_step=window.image_step,
                            screenshot=ImageGrab.grab(bbox=box, xdisplay=os.environ["DISPLAY"]),
                            thread_alive=window.thread.is_alive())
                window.close()  # the user's click on the close button
                seen["status_after_close"] = window.stats["status"].get()
                return
            window.root.after(200, check)
        window.root.after(200, check)
    monkeypatch.setattr(dashboard.DashboardWindow, "start", patched_start)


def assert_not_blank(image) -> None:
    """A real window: many colours, and neither all dark nor all light."""
    small = image.convert("RGB").resize((200, 120))
    colours = len(set(small.tobytes()[i:i + 3] for i in range(0, 200 * 120 * 3, 3)))
    assert colours > 50, f"the screenshot has {colours} colours: blank?"
    lo, hi = small.convert("L").getextrema()
    assert hi - lo > 100


def test_dashboard_shows_training_live_and_close_stops_with_a_resumable_checkpoint(display, monkeypatch, small_corpus,
                                                                                 tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = MICRO_MODEL + FAST + ["--dataset", small_corpus, "--max_steps", "400", "--output_dir", out,
                                 "--eval_strategy", "no", "--sample-every", "4", "--num-sample-texts", "2",
                                 "--max-length", "32"]
    seen: dict = {}
    # ready: a few logs plotted and one sample shown
    drive(monkeypatch, lambda w: len(w.logs) >= 3 and w.text_step is not None, seen)
    assert train_in_process(argv + ["--dashboard"]) == 0
    printed = capsys.readouterr().out

    stats = seen["stats"]
    step = int(stats["step"].split("/")[0].replace(",", ""))
    assert 6 <= step < 400 and stats["step"].endswith("/ 400")
    assert float(stats["loss"]) > 0 and float(stats["learning_rate"]) > 0 and float(stats["epoch"]) > 0
    assert stats["status"] in ("Training", "Generating sample…") or stats["status"].startswith("Training (")
    # one curve per masking level, with the points logged so far
    assert len(seen["series"]) >= 5 and all(name.startswith("mask ") for name in seen["series"])
    # (a batch of 8 texts misses some levels in some logs: not every curve has every log's point)
    assert seen["lines"] == len(seen["series"]) and max(len(s[0]) for s in seen["series"].values()) >= 3
    assert seen["texts"].startswith("[1] ") and "\n[2] " in seen["texts"]
    assert_not_blank(seen["screenshot"])
    assert seen["thread_alive"] and seen["status_after_close"].startswith("Stopping")

    # Closing stopped training at the next step, with a checkpoint, and no final model.
    checkpoints = [d for d in os.listdir(out) if d.startswith("checkpoint-")]
    assert len(checkpoints) == 1
    stopped = int(checkpoints[0].split("-")[1])
    assert step <= stopped < 400
    assert not os.path.exists(os.path.join(out, "final-model"))
    assert f"stopped from the dashboard at step {stopped}" in printed and "--resume" in printed

    # --resume continues from it (two more steps, no window).
    resume = [a for a in argv if a != "400"]
    resume[resume.index("--max_steps") + 1:resume.index("--max_steps") + 1] = [str(stopped + 2)]
    assert train_in_process(resume + ["--resume"]) == 0
    assert f"resuming from {os.path.join(out, f'checkpoint-{stopped}')}" in capsys.readouterr().out
    assert os.path.isdir(os.path.join(out, "final-model"))


def test_dashboard_shows_the_sample_grid_of_an_image_run(display, monkeypatch, tmp_path):
    out = str(tmp_path / "image")
    argv = MICRO_IMAGE + ["--max_steps", "300", "--output_dir", out, "--sample-every", "3", "--eval_strategy", "no"]
    seen: dict = {}
    drive(monkeypatch, lambda w: len(w.logs) >= 2 and w.image_step is not None, seen)
    assert train_in_process(argv + ["--dashboard"]) == 0
    assert seen["image_step"] >= 3 and seen["lines"] >= 5
    assert all(name.startswith("t ") for name in seen["series"])
    assert_not_blank(seen["screenshot"])
    assert [d for d in os.listdir(out) if d.startswith("checkpoint-")]


def test_dashboard_without_a_display_says_so_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "never"
    proc = call_main("train.py", ["--quick-test", "--dashboard", "--output_dir", str(out)], capsys)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0] and "--report_to tensorboard" in lines[0]
    assert f"tensorboard --logdir {out}/runs" in lines[0]
    assert not out.exists()  # checked before anything is loaded or written
