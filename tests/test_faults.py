"""Faults injected, not only bad flags: a run that fails or is killed before its first step, a kill at
every point of a checkpoint save, a failing output file. Each asserts the exit code, the one line, and
that nothing was lost (a hash of the folder before and after)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import FAST, MICRO_MODEL, REPO, call_main, train_in_process
from safetensors.torch import load_file


def tree_hash(folder) -> str:
    """One hash of every file's path and bytes under folder."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def _args(corpus, out, *extra):
    return [*MICRO_MODEL, *FAST, "--dataset", corpus, "--save_steps", "2", "--output_dir", str(out), *extra]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_corpus):
    """A finished 6-step run (checkpoints 2, 4, 6): the reference for every fault below."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert train_in_process(_args(small_corpus, out, "--max_steps", "6")) == 0
    return out


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(run, "final-model", "model.safetensors"))


# ------------------------------------------------------------------------------- overwrite
def test_overwrite_with_a_run_that_fails_at_its_first_step_keeps_the_old_run(finished_run, small_corpus, tmp_path,
                                                                            capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = tree_hash(run)
    code = train_in_process(_args(small_corpus, run, "--max_steps", "4", "--overwrite-output-dir",
                                  "--learning_rate=-0.001"))
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert code == 2 and len(err) == 1
    assert "Invalid learning rate: -0.001" in err[0] and "is unchanged" in err[0]
    assert tree_hash(run) == before and not (run / ".replaced-run").exists()


def test_overwrite_that_succeeds_replaces_the_old_run(finished_run, small_corpus, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert train_in_process(_args(small_corpus, run, "--max_steps", "2", "--overwrite-output-dir")) == 0
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 2
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2"]
    assert not (run / ".replaced-run").exists()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_overwrite_gives_the_old_run_back(finished_run, small_corpus, tmp_path, sig, capsys):
    """Killed (or Ctrl-C) while the new run evaluates, before its first step: nothing of the old run is lost."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = tree_hash(run)
    # A long initial evaluation (1,300 held-out rows, batches of 4) gives time to kill it there.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    argv = [sys.executable, "train.py", *_args(os.path.join(REPO, "data", "wordnet", "validation.jsonl.gz"), run,
                                              "--max_steps", "2", "--overwrite-output-dir", "--max-eval-samples", "2000",
                                              "--validation-split-percentage", "40", "--per_device_eval_batch_size", "4")]
    # Ctrl-C as from a terminal: a suite started in the background (`pytest &` in a script) has SIGINT
    # ignored, its children inherit that, and Python then leaves it ignored, so the signal would be lost.
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not (run / ".replaced-run").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert (run / ".replaced-run").exists(), "the new run never set the old one aside"
    time.sleep(0.3)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    if sig == signal.SIGINT:  # Ctrl-C: the run puts the old one back itself
        assert tree_hash(run) == before
    # Either way, the next train.py in the folder finds the old run (and says so if it had to restore it).
    again = call_main("train.py", _args("x.jsonl", run, "--max_steps", "2"), capsys)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert ("restored the earlier run" in again.stderr) == (sig == signal.SIGKILL)
    assert tree_hash(run) == before


# ---------------------------------------------------------------------------------- resume
def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(max(1, os.path.getsize(path) // 2))


FAULTS = {
    "only config.json written": lambda ckpt: [os.remove(os.path.join(ckpt, n)) for n in os.listdir(ckpt)
                                              if n != "config.json"],
    "trainer_state.json missing": lambda ckpt: os.remove(os.path.join(ckpt, "trainer_state.json")),
    "trainer_state.json half-written": lambda ckpt: _truncate(os.path.join(ckpt, "trainer_state.json")),
    "model.safetensors truncated": lambda ckpt: _truncate(os.path.join(ckpt, "model.safetensors")),
    "optimizer.pt missing": lambda ckpt: os.remove(os.path.join(ckpt, "optimizer.pt")),
    "scheduler.pt truncated": lambda ckpt: _truncate(os.path.join(ckpt, "scheduler.pt")),
    "collator state truncated": lambda ckpt: _truncate(os.path.join(ckpt, "collator_rng_0.pt")),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_resume_after_a_kill_during_a_save_continues_from_the_last_complete_checkpoint(finished_run, small_corpus,
                                                                                      tmp_path, capsys, fault):
    """As if killed while checkpoint-6 was being written: --resume skips it (one line), continues from
    checkpoint-4, and reaches the same final weights as the uninterrupted run."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    for name in ("final-model", "metrics.json", "loss_curves.png"):  # written after the last save
        path = run / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    FAULTS[fault](str(run / "checkpoint-6"))
    capsys.readouterr()
    assert train_in_process(_args(small_corpus, run, "--max_steps", "6", "--resume")) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if line.startswith("note: skipped checkpoint-6")]
    assert len(notes) == 1 and "kept as incomplete-checkpoint-6" in notes[0]
    assert "resuming from" in captured.out and captured.out.split("resuming from ")[1].split()[0].endswith("checkpoint-4")
    reference, resumed = _weights(finished_run), _weights(run)
    assert reference.keys() == resumed.keys() and all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert (run / "incomplete-checkpoint-6").is_dir() and (run / "checkpoint-6" / "trainer_state.json").is_file()


def test_resume_with_no_complete_checkpoint_is_one_line(finished_run, small_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    checkpoints = sorted(run.glob("checkpoint-*"))
    assert len(checkpoints) == 2  # the quick test keeps the last two (--save_total_limit 2)
    for ckpt in checkpoints:
        os.remove(ckpt / "trainer_state.json")
    before = tree_hash(run)
    assert train_in_process(_args(small_corpus, run, "--max_steps", "6", "--resume")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint" in err[0] and "checkpoint-6: trainer_state.json is missing" in err[0]
    assert tree_hash(run) == before


def test_a_killed_and_resumed_run_reports_the_loss_of_the_straight_run(small_corpus, tmp_path):
    """8 steps straight, and the same 8 steps killed after checkpoint-4 then resumed: the same mean
    training loss over all 8 steps (Trainer alone reports only the resumed steps' mean)."""
    straight = tmp_path / "straight"
    assert train_in_process(_args(small_corpus, straight, "--max_steps", "8", "--save_total_limit", "10")) == 0
    reference = json.loads((straight / "metrics.json").read_text())

    run = tmp_path / "run"
    shutil.copytree(straight, run)
    for name in ("checkpoint-6", "checkpoint-8", "final-model"):  # killed right after checkpoint-4
        shutil.rmtree(run / name, ignore_errors=True)
    for name in ("metrics.json", "loss_curves.png"):
        (run / name).unlink(missing_ok=True)
    assert (run / "checkpoint-4").is_dir()
    assert train_in_process(_args(small_corpus, run, "--max_steps", "8", "--resume")) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_loss"] == pytest.approx(reference["train_loss"], abs=1e-3)
    assert [(st["global_step"], st["steps"]) for st in metrics["stages"]] == [(4, 4), (8, 4)]
    assert metrics["stages"][0]["train_runtime_s"] > 0  # the killed call's time up to checkpoint-4


def test_stages_hold_every_call_even_a_killed_one(small_corpus, tmp_path):
    """4 steps; --resume to 8 killed after checkpoint-6; --resume to 8 again: three stages, and the
    mean loss over all steps is the one of the same calls run without the kill."""
    run = tmp_path / "run"
    assert train_in_process(_args(small_corpus, run, "--max_steps", "4")) == 0
    first = json.loads((run / "metrics.json").read_text())
    saved_metrics = (run / "metrics.json").read_text()
    assert train_in_process(_args(small_corpus, run, "--max_steps", "8", "--resume")) == 0
    unkilled = json.loads((run / "metrics.json").read_text())
    assert [st["global_step"] for st in unkilled["stages"]] == [4, 8]
    mean = sum(st["train_loss"] * st["steps"] for st in unkilled["stages"]) / 8
    assert unkilled["train_loss"] == pytest.approx(mean, abs=1e-3)
    # Now as if the second call had been killed right after checkpoint-6.
    shutil.rmtree(run / "checkpoint-8")
    shutil.rmtree(run / "final-model")
    (run / "metrics.json").write_text(saved_metrics)
    assert train_in_process(_args(small_corpus, run, "--max_steps", "8", "--resume")) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert [st["global_step"] for st in metrics["stages"]] == [4, 6, 8]
    assert [st["steps"] for st in metrics["stages"]] == [4, 2, 2]
    assert metrics["stages"][0]["train_runtime_s"] == first["train_runtime_s"]
    assert metrics["stages"][1]["train_runtime_s"] > 0  # the killed call's time, up to its last checkpoint
    assert metrics["train_loss"] == pytest.approx(unkilled["train_loss"], abs=1e-3)
    assert metrics["total_train_runtime_s"] == pytest.approx(sum(st["train_runtime_s"] for st in metrics["stages"]),
                                                             abs=0.2)


# ---------------------------------------------------------------------------------- outputs
def test_compare_writes_all_or_nothing(checkpoint, gpt2_checkpoint, tmp_path, capsys):
    import compare_models

    out = tmp_path / "out"
    base = ["--roberta-checkpoint", checkpoint, "--gpt2-checkpoint", gpt2_checkpoint, "--steps", "2",
            "--num-frames", "3", "--output", str(out / "c.gif")]
    assert compare_models.main(base) == 0
    before = tree_hash(out)
    capsys.readouterr()
    assert compare_models.main(base + ["--json", "/proc/c.json"]) == 2  # a folder no one can write files into
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing was written" in err
    assert tree_hash(out) == before  # the earlier GIF, frames and JSON are untouched
    (tmp_path / "README.md").write_text("a file")
    assert compare_models.main(base + ["--json", str(tmp_path / "README.md" / "c.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(--json)" in err and "is a file" in err
    assert tree_hash(out) == before


def test_bundle_model_never_unpickles_the_run(finished_run, tmp_path):
    """training_args.bin is a pickle: reading it would run code from someone else's folder."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "final-model" / "training_args.bin").write_bytes(b"not a pickle: unpickling this would fail")
    sys.path.insert(0, os.path.join(REPO, "models"))
    import bundle_model

    assert bundle_model.main([str(run), str(tmp_path / "bundle"), "--command", "python train.py ...",
                              "--max-eval-samples", "16"]) == 0
    assert json.loads((tmp_path / "bundle" / "card.json").read_text())["batch_size"] == 8


def test_ctrl_c_is_one_line_with_exit_code_130(capsys):
    """A KeyboardInterrupt anywhere in a script's run: one line saying what is kept, no traceback."""
    from diffusion.cli import run_main

    def run(argv):
        raise KeyboardInterrupt

    assert run_main(run, [], interrupted="--resume continues") == 130
    assert capsys.readouterr().err.strip().splitlines() == ["interrupted (Ctrl-C): --resume continues"]
