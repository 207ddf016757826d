"""diffusion/text/metrics.py (known values on hand-made texts), its evaluate module, and benchmarks/quality.py."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import torch
from conftest import REPO, run_script
from PIL import Image

from diffusion.text import metrics as tm

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import quality  # noqa: E402

# Two hand-made samples: "a b a b a" (5 words) and "c d" (2 words).
TEXTS = ["a b a b a", "c d"]


def test_distinct_n_by_hand():
    # words: a b a b a | c d -> 7 unigrams, 4 different
    assert tm.distinct_n(TEXTS, 1) == pytest.approx(4 / 7)
    # bigrams: ab ba ab ba | cd -> 5, of which ab, ba, cd are different
    assert tm.distinct_n(TEXTS, 2) == pytest.approx(3 / 5)
    # trigrams: aba bab aba (the 2-word text has none) -> 3, 2 different
    assert tm.distinct_n(TEXTS, 3) == pytest.approx(2 / 3)
    assert tm.distinct_n(["x y z"], 3) == 1.0 and tm.distinct_n(["x y"], 3) == 0.0 and tm.distinct_n([], 1) == 0.0
    assert tm.distinct_n(["dog. dog Dog"], 1) == 1.0  # whitespace words: punctuation and case count


def test_unigram_entropy_by_hand():
    # a:3 b:2 c:1 d:1 of 7 words
    expected = -(3 / 7 * math.log(3 / 7) + 2 / 7 * math.log(2 / 7) + 2 * (1 / 7) * math.log(1 / 7))
    assert tm.unigram_entropy(TEXTS) == pytest.approx(expected)
    assert tm.unigram_entropy(["a b c d"]) == pytest.approx(math.log(4))  # all different: log V nats
    assert tm.unigram_entropy(["a a a"]) == 0.0 and tm.unigram_entropy([""]) == 0.0


def test_repetition_rate_by_hand():
    # "a b a b a": trigrams aba bab aba -> the third repeats the first: 1/3; "c d" has no trigram and is skipped
    assert tm.repetition_rate(TEXTS) == pytest.approx(1 / 3)
    # "x y z x y z": xyz yzx zxy xyz -> 1/4; the mean over texts is (1/3 + 1/4) / 2
    assert tm.repetition_rate(["a b a b a", "x y z x y z"]) == pytest.approx(7 / 24)
    assert tm.repetition_rate(["the dog ran off"]) == 0.0 and tm.repetition_rate(["a b"]) == 0.0


def test_text_quality_and_the_evaluate_module_agree():
    numbers = tm.text_quality(TEXTS, token_lengths=[6, 3])
    assert numbers["length_words"] == 3.5 and numbers["length_tokens"] == 4.5
    import evaluate

    metric = evaluate.load(quality.METRIC_MODULE)  # a local folder: no download
    assert metric.compute(predictions=TEXTS) == {k: v for k, v in numbers.items() if k != "length_tokens"}


def test_judge_perplexity_of_a_uniform_judge_is_the_vocabulary_size(tokenizer):
    """A GPT-2 whose (tied) embeddings are zero gives every token the same logit: perplexity = V exactly."""
    from diffusion.text.models import build_model

    judge = build_model("causal", "tiny", tokenizer, 64, {"n_embd": "32", "n_layer": "1", "n_head": "2", "n_inner": "64"})
    with torch.no_grad():
        judge.transformer.wte.weight.zero_()
    ppl = tm.judge_perplexity(judge, tokenizer, ["dog:", ""], [" a domestic animal", " the cat sat"])
    assert ppl == pytest.approx(len(tokenizer), rel=1e-4)
    assert tm.judge_perplexity(judge, tokenizer, ["dog:"], [""]) is None  # nothing generated, nothing scored


def test_judge_scores_only_the_continuation_and_batches_agree(judge_checkpoint, tokenizer):
    from transformers import AutoModelForCausalLM

    judge = AutoModelForCausalLM.from_pretrained(judge_checkpoint).eval()
    prompts, texts = ["dog: a", "cat:", ""], [" domestic animal", " a small feline that purrs", " hello"]
    ids, n_context = tm.judge_token_ids(tokenizer, prompts[0], texts[0])
    assert ids[0] == tokenizer.bos_token_id and n_context == 1 + len(tokenizer("dog: a", add_special_tokens=False)["input_ids"])
    # by hand, one text at a time, no padding
    total, count = 0.0, 0
    with torch.no_grad():
        for prompt, text in zip(prompts, texts, strict=True):
            ids, n_context = tm.judge_token_ids(tokenizer, prompt, text)
            logits = judge(input_ids=torch.tensor([ids])).logits[0]
            logp = torch.log_softmax(logits.float(), -1)
            for t in range(n_context, len(ids)):
                total -= float(logp[t - 1, ids[t]])
                count += 1
    batched = tm.judge_nll(judge, tokenizer, prompts, texts, batch_size=3)  # right-padded batch
    assert batched[1] == count and batched[0] == pytest.approx(total, rel=1e-4)
    assert tm.judge_perplexity(judge, tokenizer, prompts, texts) == pytest.approx(math.exp(total / count), rel=1e-4)


def _error(capsys, argv, *needles):
    code = quality.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_judge_refused_and_bad_inputs(checkpoint, gpt2_checkpoint, tmp_path, capsys):
    c = ["--roberta-checkpoint", checkpoint, "--gpt2-checkpoint", gpt2_checkpoint, "--no-gaussian",
         "--output-dir", str(tmp_path / "q")]
    _error(capsys, c + ["--judge", gpt2_checkpoint], "is the GPT-2 generator itself", "must be neither generator")
    _error(capsys, c + ["--judge", checkpoint], "is the diffusion generator itself")
    _error(capsys, ["--roberta-checkpoint", str(tmp_path / "nope"), *c[2:]], "does not exist")
    _error(capsys, c[:4] + ["--gaussian-checkpoint", checkpoint, "--output-dir", str(tmp_path / "q")],
           "holds a masked model")
    _error(capsys, c + ["--gaussian-checkpoint", checkpoint], "--no-gaussian and --gaussian-checkpoint contradict")
    _error(capsys, c + ["--max-new-tokens", "40"], "has 32 positions")
    _error(capsys, c + ["--schedules", "zigzag"], "known schedules")
    _error(capsys, c + ["--num-prompts", "0"], "--num-prompts must be at least 1")
    assert not (tmp_path / "q").exists()


SMALL = ["--num-prompts", "2", "--samples-per-prompt", "2", "--max-new-tokens", "6", "--steps", "2", "4",
         "--schedules", "linear", "--sampling", "topk", "--k", "20"]


def test_cli_small_run_writes_table_json_and_plot(checkpoint, gpt2_checkpoint, word_gaussian_checkpoint,
                                                 judge_checkpoint, tmp_path, capsys):
    """The Gaussian model here has a word-level vocabulary, as the bundled base: it is given the
    prompt's text in its own tokens, and every one of its texts continues that text."""
    gaussian_checkpoint = word_gaussian_checkpoint
    out = tmp_path / "quality"
    argv = [sys.executable, "benchmarks/quality.py", "--roberta-checkpoint", checkpoint, "--gpt2-checkpoint",
            gpt2_checkpoint, "--gaussian-checkpoint", gaussian_checkpoint, "--gaussian-ddim-steps", "2", "4",
            "--judge", judge_checkpoint, *SMALL, "--output-dir", str(out)]
    proc = run_script(argv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # reference + 2 steps x 1 schedule x 2 remasking rules + threshold + 10 Gaussian + gpt2: one progress line each
    progress = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == 17 and progress[0].startswith("[1/17] reference") and progress[-1].startswith("[17/17] gpt2")
    data = json.loads((out / "quality.json").read_text())
    assert data["meta"]["judge"] == judge_checkpoint and data["meta"]["num_prompts"] == 2
    assert data["meta"]["gaussian_model"] == gaussian_checkpoint
    rows = data["rows"]
    assert [r["generator"] for r in rows] == ["reference"] + ["diffusion"] * 5 + ["gaussian"] * 10 + ["gpt2"]
    gaussian = [(r["sampler"], r["steps"], r["clamp"], r["self_conditioning"], r["forward_passes_per_prompt"])
                for r in rows if r["generator"] == "gaussian"]
    assert gaussian[:3] == [("ddpm", 20, False, True, 20.0), ("ddim", 2, False, True, 2.0), ("ddim", 4, False, True, 4.0)]
    assert {(s, c, sc) for s, _, c, sc, _ in gaussian[3:9]} == {(s, c, sc) for s in ("ddpm", "ddim")
                                                                 for c, sc in ((True, True), (False, False), (True, False))}
    drawn = [r for r in rows if r["generator"] == "gaussian"][-1]  # the drawn clamp, at the DDIM count nearest 50
    assert (drawn["sampler"], drawn["steps"], drawn["clamp_temperature"]) == ("ddim", 4, 0.7)
    for r in rows:
        if r["generator"] == "gaussian":  # the prompt is kept: every text continues it
            assert r["example"][:5] == rows[0]["example"][:5], r["example"]
    settings = [(r["steps"], r["remasking"], r["threshold"]) for r in rows if r["generator"] == "diffusion"]
    assert settings == [(2, "low-confidence", None), (2, "random", None), (4, "low-confidence", None), (4, "random", None),
                        (4, "low-confidence", 0.9)]
    for r in rows:
        for key in ("distinct_1", "distinct_2", "distinct_3", "unigram_entropy", "repetition_rate", "length_words",
                    "length_tokens", "judge_perplexity"):
            assert isinstance(r[key], float), (r["setting"], key)
        assert r["length_tokens"] <= 6
    assert rows[1]["forward_passes_per_prompt"] == 2.0 and rows[3]["forward_passes_per_prompt"] == 4.0
    assert rows[0]["length_tokens"] == 6.0  # the held-out text's own next 6 tokens
    md = (out / "quality.md").read_text()
    assert "| generator | setting | passes / prompt |" in md and md.count("| diffusion |") == 5
    assert md.count("| gaussian |") == 10 and "DDIM 4 steps, clamped, no self-cond." in md
    assert "DDIM 4 steps, drawn clamp (T 0.7)" in md
    with Image.open(out / "quality_vs_steps.png") as png:
        assert png.size[0] > 800
    # the same seeds give the same texts; and results are not overwritten without --overwrite
    # (in this process: the command line itself was run above)
    assert quality.main(argv[2:]) == 2 and "--overwrite" in capsys.readouterr().err
    assert quality.main(argv[2:] + ["--overwrite"]) == 0
    again = json.loads((out / "quality.json").read_text())["rows"]
    assert [r["example"] for r in again] == [r["example"] for r in rows]
    assert [r["distinct_2"] for r in again] == [r["distinct_2"] for r in rows]


def test_cache_grid_times_every_cache_and_plots_quality_against_time(checkpoint, gpt2_checkpoint, judge_checkpoint,
                                                                     tmp_path, capsys):
    out = tmp_path / "cache"
    argv = ["--roberta-checkpoint", checkpoint, "--gpt2-checkpoint", gpt2_checkpoint, "--judge", judge_checkpoint,
            "--num-prompts", "2", "--samples-per-prompt", "2", "--max-new-tokens", "8", "--grid", "cache",
            "--no-gaussian",
            "--caches", "none", "dual", "--thresholds", "0.5", "0", "--block-lengths", "4", "--output-dir", str(out)]
    assert quality.main(argv) == 0
    rows = json.loads((out / "quality.json").read_text())["rows"]
    diffusion = {(r["cache"], r["threshold"]): r for r in rows if r["generator"] == "diffusion"}
    assert sorted(diffusion, key=str) == sorted([("none", 0.5), ("dual", 0.5), ("none", None), ("dual", None)], key=str)
    assert all(r["block_length"] == 4 for r in diffusion.values())
    # one step per position: 8 passes per prompt either way, the cache computes fewer positions per token
    assert diffusion[("none", None)]["forward_passes_per_prompt"] == diffusion[("dual", None)]["forward_passes_per_prompt"] == 8
    none, dual = diffusion[("none", None)], diffusion[("dual", None)]
    assert dual["positions_per_token"] * dual["length_tokens"] < none["positions_per_token"] * none["length_tokens"]
    gpt2 = next(r for r in rows if r["generator"] == "gpt2")
    assert 1 <= gpt2["positions_per_token"] < 3  # its context once, then one position per token
    assert "| positions / token |" in (out / "quality.md").read_text()
    with Image.open(out / "quality_vs_time.png") as png:
        assert png.size == (740, 520)  # one panel (one --cache-steps value) and the legend beside it
    capsys.readouterr()
    assert quality.main(argv[:-2] + ["--output-dir", str(tmp_path / "bad"), "--block-lengths", "0"]) == 2
    assert "--block-lengths must be at least 1" in capsys.readouterr().err and not (tmp_path / "bad").exists()
