"""experiments/: each writes its figure, table and numbers; the layer analysis reads a model of known structure right.

The scripts run in this process (``main(argv)``) on the micro checkpoints of conftest.py.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys

import pytest
import torch
from conftest import REPO
from PIL import Image

from diffusion import schedules


def _script(name: str):
    path = os.path.join(REPO, "experiments", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _report(folder, figure: str) -> dict:
    """The report's numbers, after checking that its three files are there and the figure is a real picture."""
    with Image.open(folder / figure) as image:
        assert image.size[0] > 800 and image.size[1] > 300
        assert len(image.convert("L").getcolors(maxcolors=65536)) > 20  # drawn, not blank
    assert (folder / "table.md").read_text().strip()
    return json.loads((folder / "data.json").read_text())


def test_masking_viz_masks_at_every_level_and_draws_the_schedules(tmp_path, capsys):
    out = tmp_path / "viz"
    assert _script("masking_viz").main(["--output-dir", str(out), "--rate-docs", "200", "--steps", "8",
                                        "--length", "32"]) == 0
    printed = capsys.readouterr().out
    data = _report(out, "masking_viz.png")
    rows = data["levels"]
    assert [r["level"] for r in rows] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    n = len(data["example"]["ids"])
    assert all(r["n_maskable"] == n and len(r["masked"]) == n for r in rows)
    assert rows[-1]["n_masked"] == n  # 100%: everything
    for level, rate in data["measured_rate"].items():
        assert abs(rate - float(level)) < 0.03  # stochastic rounding: exact in expectation
    assert data["still_masked_after_step"]["linear"] == [28, 24, 20, 16, 12, 8, 4, 0]
    assert set(data["still_masked_after_step"]) == set(schedules.available_schedules())
    assert data["alpha"]["cosine"]["0.0"] == 1.0 and data["alpha"]["cosine"]["1.0"] == 0.0
    assert "  1.0 | " in printed and "linear      |  28  24  20" in printed
    # A second run does not replace the report silently.
    assert _script("masking_viz").main(["--output-dir", str(out)]) == 2
    assert "holds an earlier report: pass --overwrite" in capsys.readouterr().err


def test_predictions_by_level_shows_top_guesses_at_nested_masks(checkpoint, tmp_path, capsys):
    out = tmp_path / "pred"
    text = "dog: a domestic animal of the genus Canis."
    assert _script("predictions_by_level").main(["--checkpoint", checkpoint, "--text", text, "--top-k", "3",
                                                 "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    data = _report(out, "predictions_by_level.png")
    assert [lv["level"] for lv in data["levels"]] == [0.1, 0.5, 1.0]
    masked = [{p["position"] for p in lv["positions"] if p} for lv in data["levels"]]
    assert masked[0] <= masked[1] <= masked[2] and len(masked[2]) == len(data["ids"])  # nested, all at 100%
    for lv in data["levels"]:
        for p in filter(None, lv["positions"]):
            probs = [prob for _, prob in p["top"]]
            assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
            assert p["truth"] == data["tokens"][p["position"]]
    assert "top 3 guesses (probability)" in printed and "top-1 accuracy at 1.0" in printed


def test_reports_on_two_models_go_to_two_folders(checkpoint, tmp_path, monkeypatch, capsys):
    """Without --output-dir, the model's folder names the report: checkpoint-500 and final-model do not collide."""
    monkeypatch.chdir(tmp_path)
    script = _script("predictions_by_level")
    assert script.main(["--checkpoint", checkpoint, "--levels", "1.0"]) == 0
    parent = os.path.basename(os.path.dirname(checkpoint))
    assert (tmp_path / "results" / "experiments" / f"predictions_by_level-{parent}-final-model" / "data.json").is_file()
    assert script.main(["--checkpoint", checkpoint, "--levels", "1.0"]) == 2  # the same model again: refused
    assert "pass --overwrite" in capsys.readouterr().err


def _identity_last_layer(checkpoint: str, path) -> str:
    """The micro model with its last layer made the identity (post-LN RoBERTa: zero the two output
    projections, so LN(0 + x) = x for the already normalised x) and uniform attention (zero query
    and key projections).  The head's layer norm is scaled up so that the untrained model's
    predictions are far from uniform, and layer 1's update is scaled up so that it changes them."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(checkpoint)
    assert model.config.model_type == "roberta"  # post-LN: the identity argument below holds
    layer = model.roberta.encoder.layer[-1]
    with torch.no_grad():
        for linear in (layer.attention.output.dense, layer.output.dense, layer.attention.self.query,
                       layer.attention.self.key):
            linear.weight.zero_()
            linear.bias.zero_()
        model.lm_head.layer_norm.weight.mul_(50.0)
        first = model.roberta.encoder.layer[0]
        first.output.dense.weight.mul_(50.0)  # and layer 1 changes the state a lot
        first.attention.output.dense.weight.mul_(50.0)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(checkpoint).save_pretrained(path)
    return str(path)


def test_layer_analysis_of_an_identity_layer_gives_the_expected_numbers(checkpoint, tmp_path, capsys):
    model = _identity_last_layer(checkpoint, tmp_path / "identity")
    out = tmp_path / "layers"
    assert _script("layer_analysis").main(["--checkpoint", model, "--samples", "24", "--levels", "0.5", "1.0",
                                           "--heads-level", "0.5", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    data = _report(out, "layer_analysis.png")
    assert data["states"] == ["embeddings", "layer 1", "layer 2"]
    for level in ("0.5", "1.0"):
        lens = data["logit_lens"][level]
        assert lens["masked_positions"] > 50
        assert lens["kl_to_final"][2] == pytest.approx(0.0, abs=1e-7)  # the final layer against itself
        assert lens["kl_to_final"][1] == pytest.approx(0.0, abs=1e-4)  # layer 2 changes nothing
        assert lens["agreement"][1] == 1.0 and lens["accuracy"][1] == lens["accuracy"][2]
        assert lens["kl_to_final"][0] > 0.1  # the embeddings are far from the final guess
        att = data["attention"][level]
        # Zero queries and keys: every head of layer 2 attends uniformly over the real keys.
        for h in range(2):
            assert att["entropy"][1][h] == pytest.approx(att["uniform_entropy"], abs=1e-5)
            assert att["distance"][1][h] == pytest.approx(att["uniform_distance"], abs=1e-4)
    assert "Logit lens: accuracy" in printed and "layer 2    |" in printed


def test_layer_analysis_of_a_missing_checkpoint_names_those_that_exist(checkpoint, tmp_path, capsys):
    results = tmp_path / "results"
    for name in ("checkpoint-500", "final-model"):
        (results / name).mkdir(parents=True)
        (results / name / "config.json").write_text("{}")
    code = _script("layer_analysis").main(["--checkpoint", str(results / "checkpoint-1000"),
                                           "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "checkpoint-1000" in err[0] and "does not exist" in err[0] and "holds checkpoint-500, final-model" in err[0]
    assert not (tmp_path / "o").exists()


def test_schedule_comparison_decodes_every_schedule_and_scores_it(checkpoint, judge_checkpoint, tmp_path, capsys):
    out = tmp_path / "sched"
    assert _script("schedule_comparison").main(
        ["--checkpoint", checkpoint, "--num-prompts", "2", "--samples-per-prompt", "2", "--max-new-tokens", "8",
         "--steps", "2", "8", "--show-steps", "2", "--judge", judge_checkpoint, "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    data = _report(out, "schedule_comparison.png")
    rows = data["rows"]
    assert [(r["steps"], r["schedule"]) for r in rows] == [(s, n) for s in (2, 8) for n in schedules.available_schedules()]
    for r in rows:
        assert len(r["revealed_per_step"]) == r["steps"] and sum(r["revealed_per_step"]) == pytest.approx(8)
        assert r["forward_passes_per_prompt"] == r["steps"]  # threshold 0: the schedule exactly
        assert math.isfinite(r["pseudo_perplexity"]) and r["pseudo_perplexity"] > 1
        assert math.isfinite(r["judge_perplexity"]) and 0 <= r["distinct_2"] <= 1
    by = {(r["steps"], r["schedule"]): r for r in rows}
    assert by[(2, "linear")]["revealed_per_step"] == [4, 4]
    assert by[(8, "cosine")]["revealed_per_step"] == [1] * 8  # one per step: every schedule alike
    assert data["held_out"]["pseudo_perplexity"] > 1
    assert "pseudo-ppl | judge ppl" in printed and "held-out" in printed


def test_experiments_refuse_bad_flags_in_one_line(checkpoint, tmp_path, capsys):
    cases = [("masking_viz", ["--levels", "0", "0.5"], "--levels must be fractions in (0, 1]"),
             ("masking_viz", ["--steps", "80", "--length", "64"], "--steps must lie in 1..--length"),
             ("schedule_comparison", ["--schedules", "linear", "sigmoid"], "sigmoid"),
             ("schedule_comparison", ["--steps", "4", "--show-steps", "3"], "--show-steps 3 is not one of"),
             ("layer_analysis", ["--heads-level", "0.3", "--levels", "0.5"], "--heads-level 0.3 is not one of"),
             ("predictions_by_level", ["--text", " "], "--text is empty")]
    for name, argv, needle in cases:
        assert _script(name).main([*argv, "--output-dir", str(tmp_path / name)]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (name, err)
        assert not (tmp_path / name).exists()
