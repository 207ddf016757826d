"""benchmarks/attention_entropy.py: per-head attention entropy, the plateau diagnostic (run in this process)."""

from __future__ import annotations

import importlib.util
import os
import re

from conftest import REPO


def _main(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("attention_entropy", os.path.join(REPO, "benchmarks", "attention_entropy.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def test_untrained_model_attends_uniformly(checkpoint, capsys):
    """Random init (std 0.02) gives near-zero attention logits: every head is close to uniform."""
    assert _main([checkpoint, "--samples", "16"]) == 0
    out = capsys.readouterr().out
    layers = [line for line in out.splitlines() if line.startswith("layer ")]
    assert len(layers) == 2 and all(len(re.findall(r"\d\.\d\d \[", line)) == 2 for line in layers)  # 2 layers x 2 heads
    mean, uniform = map(float, re.search(r"mean entropy (\d+\.\d+) of (\d+\.\d+)", out).groups())
    assert 0.85 * uniform < mean <= uniform + 1e-6
    assert "close to uniform" in out


def test_refuses_missing_and_causal_models(gpt2_checkpoint, tmp_path, capsys):
    for path, message in ((str(tmp_path / "nope"), "does not exist"), (gpt2_checkpoint, "is not a masked LM")):
        assert _main([path]) == 2
        assert message in capsys.readouterr().err


def test_a_gaussian_denoiser_gets_the_same_table_and_its_given_text_accuracy(gaussian_checkpoint, capsys):
    """An untrained denoiser (adaLN blocks, no local init) attends nearly uniformly, hidden tokens or not;
    the Gaussian mode says which setting it measured and how often the hidden tokens came back."""
    assert _main([gaussian_checkpoint, "--samples", "16", "--mask-rate", "0.5"]) == 0
    out = capsys.readouterr().out
    layers = [line for line in out.splitlines() if line.startswith("layer ")]
    assert len(layers) == 2 and all(len(re.findall(r"\d\.\d\d \[", line)) == 2 for line in layers)
    assert "50% of the tokens hidden as pure noise" in out and "close to uniform" in out
    accuracy, tokens = re.search(r"hidden tokens rounded right: (\d\.\d{3}) of (\d+)", out).groups()
    assert 0.0 <= float(accuracy) <= 1.0 and int(tokens) > 16  # at least one hidden token per text
