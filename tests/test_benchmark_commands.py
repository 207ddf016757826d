"""The benchmark commands that README and docs/BENCHMARKS.md give run (cut to a few steps), and their bad input is one line."""

from __future__ import annotations

import json
import os
import sys

from conftest import REPO, run_script


def test_train_throughput_runs_and_reports_the_ratio():
    proc = run_script([sys.executable, "benchmarks/train_throughput.py", "--steps", "2", "--warmup", "1"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Trainer / bare tokens/s:" in proc.stdout
    assert "| Trainer (DiffusionTrainer) | 2 |" in proc.stdout and "| bare PyTorch loop | 2 |" in proc.stdout
    assert "first-step losses agree" in proc.stdout


def test_generation_speed_flags_are_checked_in_one_line(checkpoint, capsys):
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import generation_speed

    for argv, needle in ((["--samples", "0"], "--samples must be at least 1"),
                         (["--threshold", "1.5"], "--threshold must lie in (0, 1)"),
                         (["--block-length", "-2"], "--block-length must be at least 1 (or 0 for none)"),
                         (["--sample", "3"], "unknown flag --sample")):
        assert generation_speed.main(["--checkpoint", checkpoint, *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err


def test_generation_speed_runs_on_a_checkpoint(checkpoint, tmp_path):
    out = tmp_path / "speed.json"
    proc = run_script([sys.executable, "benchmarks/generation_speed.py", "--checkpoint", checkpoint, "--samples", "2",
                       "--generated", "8", "--repeats", "1", "--output", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| threshold 0.9, none cache, one prompt at a time |" in proc.stdout and out.is_file()
    # without blocks only the uncached decoder applies; every pass computes the whole window: <s>, 3 prompt
    # tokens, 8 generated, </s>
    assert "only --cache none applies" in proc.stdout
    rows = {r["setting"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["8 steps"]["positions_per_position"] == 8 * 13 / 8
