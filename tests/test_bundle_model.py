"""models/bundle_model.py: a finished run becomes a float16 folder that loads as float32, with a
card whose numbers are measured on the stored weights."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
import torch
from conftest import FAST, MICRO_GPT2, MICRO_MODEL, REPO, train_in_process
from safetensors import safe_open

sys.path.insert(0, os.path.join(REPO, "models"))
import bundle_model  # noqa: E402

from diffusion.paths import BUNDLED_WORD_TOKENIZER  # noqa: E402

MICRO_GAUSSIAN = ["--model-config", "tiny", "--embedding-dim", "8", "--diffusion-steps", "20",
                  "--config-overrides", "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"]


@pytest.fixture(scope="module", params=["masked", "causal", "gaussian", "gaussian-words"])
def bundled(request, tmp_path_factory, small_corpus):
    objective = request.param.split("-")[0]
    root = tmp_path_factory.mktemp(f"bundle-{request.param}")
    model_flags = {"masked": MICRO_MODEL, "causal": MICRO_GPT2, "gaussian": MICRO_GAUSSIAN}[objective]
    words = ["--tokenizer", BUNDLED_WORD_TOKENIZER] if request.param == "gaussian-words" else []  # the base's
    argv = [*model_flags, *words, *FAST, "--objective", objective, "--dataset", small_corpus, "--max_steps", "2",
            "--output_dir", str(root / "run")]
    assert train_in_process(argv) == 0
    command = "python train.py " + " ".join(argv)
    assert bundle_model.main([str(root / "run"), str(root / "out"), "--command", command,
                              "--max-eval-samples", "32"]) == 0
    return objective, root / "out", command


def test_weights_are_float16_and_load_as_float32(bundled):
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    import diffusion.gaussian.model  # noqa: F401  (registers the Gaussian model type)

    objective, out, _ = bundled
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    auto = {"masked": AutoModelForMaskedLM, "causal": AutoModelForCausalLM, "gaussian": AutoModel}[objective]
    assert auto.from_pretrained(out).dtype == torch.float32
    assert not os.path.exists(str(out) + ".tmp")  # written aside, then renamed


def test_card_states_command_and_measured_numbers(bundled):
    objective, out, command = bundled
    text = (out / "README.md").read_text()
    info = json.loads((out / "card.json").read_text())
    assert info["commands"] == [command] and command in text
    assert [(st["global_step"], st["steps"], st["train_runtime_s"]) for st in info["stages"]] == [
        (2, 2, info["train_runtime_s"])]
    assert info["stages"][0]["train_loss"] == pytest.approx(info["train_loss"], abs=1e-3)
    assert "calls of `train.py`" not in text  # one call: no stage line
    assert info["global_step"] == 2 and info["eval"]["examples"] == 32
    # tokens seen = the run's own count of its training split (metrics.json) times the epochs it ran
    run = json.loads((out.parent / "run" / "metrics.json").read_text())
    assert 294 * 3 < run["train_tokens"] < 294 * 64  # 294 training documents of the small corpus, <= 64 tokens
    assert info["train_tokens"] == int(run["train_tokens"] * run["final"]["epoch"]) > 0
    if "--tokenizer" in command:  # whole words: the same text is about 1.5x as many BPE tokens
        assert info["tokenizer"] == "data/word-tokenizer" and info["vocab_size"] == 8192
        assert 1.3 < info["train_tokens_bpe"] / info["train_tokens"] < 1.7
        assert "word-level tokenizer `data/word-tokenizer`" in text
        assert f"the text of {info['train_tokens_bpe'] / 1e6:.1f}M tokens of `data/tokenizer`" in text
    else:
        assert info["tokenizer"] == "data/tokenizer" and "train_tokens_bpe" not in info
        assert "(`data/tokenizer`, byte-level BPE, 4,096 tokens)" in text
    if objective == "masked":
        assert len(info["eval"]["per_level"]) == 10
        for level, r in info["eval"]["per_level"].items():
            assert 0.0 <= r["accuracy"] <= 1.0 and r["loss"] > 0
            assert re.search(rf"^{re.escape(level)} \| {r['loss']:.3f} \| {r['accuracy']:.3f}$", text, re.M)
    elif objective == "gaussian":
        ev = info["eval"]
        assert ev["schedule"] == "sqrt-quarter-snr" and ev["diffusion_steps"] == 20 and len(ev["per_level"]) == 10
        assert "8-dimensional token embeddings" in text and "AutoModel.from_pretrained" in text
        for level, r in ev["per_level"].items():
            assert 0.0 <= r["accuracy"] <= 1.0 and r["loss"] > 0 and r["mse"] > 0
            assert re.search(rf"^{re.escape(level)} \| {r['loss']:.3f} \| {r['mse']:.4f} \| {r['accuracy']:.3f}$",
                             text, re.M)
        assert list(ev["given_text"]) == list(ev["per_level"])  # the ten shares 0.1 ... 1.0
        for share, accuracy in ev["given_text"].items():
            assert 0.0 <= accuracy <= 1.0 and re.search(rf"^{re.escape(share)} \| {accuracy:.3f}$", text, re.M)
    else:
        assert info["eval"]["perplexity"] == pytest.approx(2.718281828 ** info["eval"]["loss"], rel=1e-3)
        assert f"perplexity {info['eval']['perplexity']:.1f}" in text


def test_unfinished_run_is_refused(tmp_path, capsys):
    assert bundle_model.main([str(tmp_path), str(tmp_path / "out"), "--command", "x"]) == 2
    assert "is the run finished?" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_started_from_a_bundled_model_continues_its_card(tmp_path, small_corpus, capsys):
    """--continues CARD: the new card counts the model's earlier training first (commands, stages,
    steps, tokens, wall time); a card that cannot be read is one line and writes nothing.
    One objective (Gaussian) is enough: the bookkeeping does not depend on it."""
    argv = [*MICRO_GAUSSIAN, *FAST, "--objective", "gaussian", "--dataset", small_corpus, "--max_steps", "2",
            "--output_dir", str(tmp_path / "run")]
    assert train_in_process(argv) == 0
    command = "python train.py " + " ".join(argv)
    out = tmp_path / "out"
    assert bundle_model.main([str(tmp_path / "run"), str(out), "--command", command, "--max-eval-samples", "16"]) == 0
    first = json.loads((out / "card.json").read_text())
    argv = [*FAST, "--objective", "gaussian", "--model", str(out), "--dataset", small_corpus, "--max_steps", "3",
            "--output_dir", str(tmp_path / "run2")]
    assert train_in_process(argv) == 0
    second = "python train.py " + " ".join(argv)
    assert bundle_model.main([str(tmp_path / "run2"), str(tmp_path / "out2"), "--continues", str(out / "card.json"),
                              "--command", second, "--max-eval-samples", "16"]) == 0
    info = json.loads((tmp_path / "out2" / "card.json").read_text())
    assert info["commands"] == [command, second] and info["global_step"] == 5
    assert [(st["global_step"], st["steps"], st.get("start")) for st in info["stages"]] == [(2, 2, None), (5, 3, "weights")]
    run2 = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert info["train_tokens"] == first["train_tokens"] + int(run2["train_tokens"] * run2["final"]["epoch"])
    assert info["train_runtime_s"] == pytest.approx(first["train_runtime_s"] + run2["train_runtime_s"], abs=0.2)
    text = (tmp_path / "out2" / "README.md").read_text()
    assert text.index(command) < text.index(f"--continues {out / 'card.json'}") and second in text
    assert "Trained in 2 calls of `train.py`" in text and "started from the weights above" in text
    # the continued model's config now marks its given text (train.py sets it on a loaded Gaussian model)
    assert json.loads((tmp_path / "out2" / "config.json").read_text())["given_text_at_step_zero"] is True

    missing = str(tmp_path / "nowhere" / "card.json")
    assert bundle_model.main([str(tmp_path / "run2"), str(tmp_path / "out3"), "--continues", missing,
                              "--command", second]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: --continues {missing!r} is not a readable card.json")
    assert not (tmp_path / "out3").exists()
