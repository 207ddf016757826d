"""benchmarks/attention_entropy.py: per-head attention entropy, the plateau diagnostic."""

from __future__ import annotations

import re
import sys

from conftest import run_script


def test_untrained_model_attends_uniformly(checkpoint):
    """Random init (std 0.02) gives near-zero attention logits: every head is close to uniform."""
    proc = run_script([sys.executable, "benchmarks/attention_entropy.py", checkpoint, "--samples", "16"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    layers = [line for line in proc.stdout.splitlines() if line.startswith("layer ")]
    assert len(layers) == 2 and all(len(re.findall(r"\d\.\d\d \[", line)) == 2 for line in layers)  # 2 layers x 2 heads
    mean, uniform = map(float, re.search(r"mean entropy (\d+\.\d+) of (\d+\.\d+)", proc.stdout).groups())
    assert 0.85 * uniform < mean <= uniform + 1e-6
    assert "close to uniform" in proc.stdout


def test_refuses_missing_and_causal_models(gpt2_checkpoint, tmp_path):
    for path, message in ((str(tmp_path / "nope"), "does not exist"), (gpt2_checkpoint, "is not a masked LM")):
        proc = run_script([sys.executable, "benchmarks/attention_entropy.py", path])
        assert proc.returncode == 2 and message in proc.stderr
