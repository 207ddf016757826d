"""benchmarks/gaussian_sampling.py: unconditional samples of one Gaussian checkpoint under every
sampling variant, with the known-word rate and a judge's perplexity; and the known-word metric."""

from __future__ import annotations

import json
import os
import sys

from conftest import REPO

from diffusion.text.metrics import corpus_vocabulary, known_word_rate, letter_words

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import gaussian_sampling  # noqa: E402


def test_known_word_rate_counts_letter_words_found_in_the_vocabulary():
    vocabulary = corpus_vocabulary(["dog: a domestic canine.", "Cat's whiskers"])
    assert letter_words("Cat's whiskers") == ["cat", "s", "whiskers"]
    assert vocabulary == {"dog", "a", "domestic", "canine", "cat", "s", "whiskers"}
    assert known_word_rate(["a dog", "Tcelokistub dog"], vocabulary) == 0.75  # 3 of 4 words are known
    assert known_word_rate(["", "16 :"], vocabulary) == 0.0  # no words: nothing known


def test_every_variant_samples_the_same_texts_lengths_and_is_judged(gaussian_checkpoint, judge_checkpoint, tmp_path,
                                                                    capsys):
    out = tmp_path / "gs"
    argv = ["--checkpoint", gaussian_checkpoint, "--judge", judge_checkpoint, "--num-samples", "3",
            "--output-dir", str(out)]
    assert gaussian_sampling.main(argv) == 0
    data = json.loads((out / "gaussian_sampling.json").read_text())
    rows = data["rows"]
    # the micro model has 20 steps: DDIM 50 and 200 both become DDIM 20, sampled once
    labels = [r["variant"] for r in rows]
    assert labels[0].startswith("held-out documents") and len(labels) == len(set(labels)) == 8
    assert labels[1] == "DDIM, 20 of 20 steps, eta 0" and "DDPM, 20 steps" in labels
    assert "DDIM, 20 of 20 steps, eta 0, clamped to drawn tokens (temperature 0.7)" in labels
    assert [r["forward_passes"] for r in rows[1:]] == [20] * 7
    for r in rows:
        assert len(r["texts"]) == 3 and 0.0 <= r["known_word_rate"] <= 1.0 and r["judge_perplexity"] > 1
    assert rows[0]["known_word_rate"] > 0.95  # held-out text is made of corpus words
    md = (out / "gaussian_sampling.md").read_text()
    assert "| variant | model calls | known-word rate | judge perplexity | first sample |" in md
    assert sum(line.startswith("| ") for line in md.splitlines()) == 1 + 8  # the header and one line per row
    # an earlier result is kept: one line, exit 2
    capsys.readouterr()
    assert gaussian_sampling.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {out / 'gaussian_sampling.json'} exists: pass --overwrite to replace it, or another "
                   f"--output-dir"]


def test_a_judge_that_is_the_checkpoint_is_refused(gaussian_checkpoint, tmp_path, capsys):
    assert gaussian_sampling.main(["--checkpoint", gaussian_checkpoint, "--judge", gaussian_checkpoint,
                                   "--output-dir", str(tmp_path / "gs")]) == 2
    assert "the judge must be neither generator" in capsys.readouterr().err
    assert not (tmp_path / "gs").exists()
