"""benchmarks/ngram_baseline.py: the local-context yardstick, on a hand-made corpus whose centre
tokens are fully determined by their neighbours."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from conftest import REPO

from data_collator import choose_masked, maskable_positions, pad_input_ids

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import ngram_baseline  # noqa: E402

A, B, C = 50, 60, 70  # content tokens of the bundled tokenizer
# "A A B C" repeated: every (left, right) pair names its centre ((C, A) -> A, (A, B) -> A,
# (A, C) -> B, (B, A) -> C), and A is the most frequent token (half of them).
CONTENT = [A, A, B, C] * 5  # 20 tokens


@pytest.fixture(scope="module")
def corpus(tokenizer):
    doc = [tokenizer.bos_token_id, *CONTENT, tokenizer.eos_token_id]
    return [doc] * 50, [doc] * 40, tokenizer.mask_token_id, tokenizer.all_special_ids


def test_isolated_masks_are_all_recovered(corpus):
    """Level 0.05 of 20 tokens is exactly one mask per document: both neighbours visible, always right."""
    train, evaluation, mask_id, special = corpus
    result = ngram_baseline.ngram_accuracy(train, evaluation, [0.05], mask_id, special, seed=0)[0.05]
    assert result["masked"] == len(evaluation)
    assert result["ngram"] == 1.0


def test_fully_masked_falls_to_the_unigram(corpus):
    """At level 1.0 only <s> and </s> are visible: the interior falls back to the most frequent token
    (right for every A, so 0.5 like the unigram), and </s> adds the last token (C) of each document."""
    train, evaluation, mask_id, special = corpus
    result = ngram_baseline.ngram_accuracy(train, evaluation, [1.0], mask_id, special, seed=0)[1.0]
    assert result["masked"] == len(evaluation) * len(CONTENT)
    assert result["unigram"] == 0.5
    assert result["ngram"] == pytest.approx(0.5 + 1 / len(CONTENT))


def test_accuracy_falls_with_the_level_and_uses_the_project_masking(corpus):
    train, evaluation, mask_id, special = corpus
    levels = [0.1, 0.5, 1.0]
    results = ngram_baseline.ngram_accuracy(train, evaluation, levels, mask_id, special, seed=3)
    assert results[0.1]["ngram"] > 0.9 and results[0.1]["ngram"] > results[0.5]["ngram"] > results[1.0]["ngram"]
    # The masks are data_collator's, drawn with a generator seeded by `seed` (comparable with the models):
    # the unigram column is the share of the most frequent token (A) among exactly those targets.
    input_ids, attention_mask = pad_input_ids([{"input_ids": ids} for ids in evaluation], pad_token_id=mask_id)
    maskable = maskable_positions(input_ids, attention_mask, special, prefix_len=0)
    masked = choose_masked(maskable, torch.full((len(evaluation),), 0.5), torch.Generator().manual_seed(3))
    targets = input_ids[masked]
    assert results[0.5]["masked"] == len(targets)
    assert results[0.5]["unigram"] == pytest.approx((targets == A).float().mean().item())
    # A level's masks do not depend on which other levels are asked for.
    assert ngram_baseline.ngram_accuracy(train, evaluation, [0.5], mask_id, special, seed=3)[0.5] == results[0.5]


@pytest.mark.parametrize("argv", [["--levels", "0.5", "1.5"], ["--levels", "0"], ["--max-eval-samples", "0"]])
def test_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert ngram_baseline.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_main_prints_the_table_and_writes_json(corpus, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(ngram_baseline, "load_token_ids", lambda max_length, max_eval_samples: corpus)
    path = tmp_path / "out" / "ngram.json"
    assert ngram_baseline.main(["--levels", "0.05", "1.0", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "level | n-gram | unigram |  masked" in out and " 0.05 |  1.000 |" in out
    assert "  1.0 |  0.550 |   0.500 |     800" in out
    report = json.loads(path.read_text())
    assert report["levels"]["1.0"] == {"ngram": pytest.approx(0.55), "unigram": 0.5, "masked": 800}
    assert report["levels"]["0.05"]["ngram"] == 1.0
