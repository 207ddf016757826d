"""compare_models.py and diffusion/viz/race.py: the side-by-side race, its files and table, infilling, bad input."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from conftest import call_main, run_script
from PIL import Image

import compare_models
from diffusion.checkpoint import DEFAULT_MODELS
from diffusion.masked.unmasking import DecodeOptions, build_prompt
from diffusion.text.causal import CausalResult, causal_context, generate_causal
from diffusion.viz.race import causal_panel, timed_decode

ROW_FIELDS = {"model", "checkpoint", "why", "wall_s", "forward_passes", "tokens", "tokens_per_s", "distinct_1",
              "distinct_2", "distinct_3", "unigram_entropy", "repetition_rate", "length_words", "length_tokens",
              "judge_perplexity", "left_context_only", "text"}
FLAGS = ["--steps", "3", "--sampling", "topk", "--k", "20", "--seed", "3", "--num-frames", "6", "--frame-ms", "100"]


@pytest.fixture(scope="module")
def comparison(checkpoint, gpt2_checkpoint, judge_checkpoint, tmp_path_factory):
    """One run as a user types it (a subprocess); the tests below share its outputs."""
    out = tmp_path_factory.mktemp("comparison")
    proc = run_script([sys.executable, "compare_models.py", "--roberta-checkpoint", checkpoint, "--gpt2-checkpoint",
                       gpt2_checkpoint, "--judge", judge_checkpoint, "--prompt", "dog:", *FLAGS,
                       "--output", str(out / "comparison.gif")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc.stdout


def test_gif_and_frames_have_one_size(comparison):
    out, stdout = comparison
    names = sorted(os.listdir(out / "comparison_frames"))
    assert names == [f"frame_{k:03d}.png" for k in range(6)]
    sizes = {Image.open(out / "comparison_frames" / name).size for name in names}
    assert len(sizes) == 1 and next(iter(sizes))[0] == 960
    with Image.open(out / "comparison.gif") as gif:
        assert gif.n_frames == 6 and gif.size == next(iter(sizes))
        durations = []
        for k in range(gif.n_frames):
            gif.seek(k)
            durations.append(gif.info["duration"])
    assert durations == [100] * 5 + [300]
    assert f"wrote {out / 'comparison.gif'} (6 frames" in stdout


def test_json_table_has_every_field(comparison, checkpoint, gpt2_checkpoint, judge_checkpoint, tokenizer):
    out, stdout = comparison
    table = json.loads((out / "comparison.json").read_text())
    assert table["prompt"] == "dog:" and table["infill"] is None and table["judge"] == judge_checkpoint
    diffusion, gpt2 = table["rows"]
    assert set(diffusion) == ROW_FIELDS and set(gpt2) == ROW_FIELDS
    n_prefix = len(tokenizer("dog:", add_special_tokens=False)["input_ids"])
    n_new = 32 - 2 - n_prefix  # max length 32 from the checkpoint's diffusion_config.json
    assert diffusion["model"] == "diffusion" and diffusion["checkpoint"] == checkpoint
    # tokens: the text's own, up to its first </s> (the tail is not text)
    assert diffusion["forward_passes"] == 3 and diffusion["tokens"] == diffusion["length_tokens"] <= n_new
    assert gpt2["model"] == "gpt2" and gpt2["checkpoint"] == gpt2_checkpoint
    assert 1 <= gpt2["forward_passes"] <= n_new  # one pass per token, stops at </s>
    assert gpt2["tokens"] == gpt2["length_tokens"] and gpt2["forward_passes"] - 1 <= gpt2["tokens"] <= gpt2["forward_passes"]
    assert "warm-up" in table["timing"] and "the first, untimed, is a warm-up" in stdout
    for row in (diffusion, gpt2):
        assert row["text"].startswith("dog:") and not row["left_context_only"]
        assert row["wall_s"] > 0 and row["tokens_per_s"] > 0
        assert row["judge_perplexity"] > 1.0  # an untrained judge: high, finite
        assert 0 <= row["distinct_1"] <= 1 and 0 <= row["repetition_rate"] <= 1 and row["unigram_entropy"] >= 0
        assert row["length_tokens"] <= row["tokens"]
    assert f"diffusion model: {checkpoint} (from --roberta-checkpoint)" in stdout
    assert f"autoregressive model: {gpt2_checkpoint} (from --gpt2-checkpoint)" in stdout
    assert "| diffusion | " in stdout and "| gpt2 | " in stdout


def test_infill_panel_and_table(checkpoint, gpt2_checkpoint, tmp_path, capsys):
    template = "dog: a [MASK] [MASK] of the genus Canis."
    argv = ["--roberta-checkpoint", checkpoint, "--gpt2-checkpoint", gpt2_checkpoint, "--infill", template, *FLAGS,
            "--output", str(tmp_path / "infill.gif"), "--json", str(tmp_path / "table.json")]
    assert compare_models.main(argv) == 0
    stdout = capsys.readouterr().out
    table = json.loads((tmp_path / "table.json").read_text())
    diffusion, gpt2 = table["rows"]
    assert table["infill"] == template and table["left_context"] == "dog: a"
    assert diffusion["forward_passes"] == 2  # 2 gaps: at most one step each
    assert diffusion["text"].startswith("dog: a") and diffusion["text"].endswith("of the genus Canis.")
    assert not diffusion["left_context_only"] and gpt2["left_context_only"]
    assert gpt2["text"].startswith("dog: a")
    assert "| gpt2 (left context only) |" in stdout
    assert len({Image.open(tmp_path / "comparison_frames" / n).size for n in os.listdir(tmp_path / "comparison_frames")}) == 1
    assert (tmp_path / "infill.gif").is_file()


def test_causal_loop_with_cache_matches_full_recompute(gpt2_checkpoint, tokenizer):
    """The KV-cache loop draws what a full forward over the whole prefix would draw (greedy)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gpt2_checkpoint).eval()
    context = causal_context(tokenizer, "dog: a")
    assert context[0] == tokenizer.bos_token_id
    result = generate_causal(model, tokenizer, context, 10)
    ids = list(context)
    banned = [i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id]
    with torch.no_grad():
        for _ in range(result.forward_passes):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            logits[banned] = float("-inf")
            ids.append(int(logits.argmax()))
    assert result.ids[0].tolist() == ids[len(context):]
    assert len(result.token_times) == result.forward_passes and result.token_times == sorted(result.token_times)
    # seeded sampling: same seed, same text; several samples in one batch
    a = generate_causal(model, tokenizer, context, 8, "topk", k=20, seed=5, num_samples=3)
    b = generate_causal(model, tokenizer, context, 8, "topk", k=20, seed=5, num_samples=3)
    assert torch.equal(a.ids, b.ids) and a.ids.shape[0] == 3
    with pytest.raises(ValueError, match="64 positions"):
        generate_causal(model, tokenizer, context, 100)


def test_causal_text_is_cut_at_eos(gpt2_checkpoint, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gpt2_checkpoint).eval()
    with torch.no_grad():  # make </s> the only sensible token: generation stops after one pass
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(len(tokenizer)))
        model.lm_head.bias[tokenizer.eos_token_id] = 1e4
    result = generate_causal(model, tokenizer, causal_context(tokenizer, "dog:"), 10, num_samples=2)
    assert result.forward_passes == 1 and result.lengths == [0, 0] and result.texts == ["", ""]


def test_timeline_states(checkpoint, tokenizer):
    # GPT-2 tokens drawn at 0.1, 0.2 and 0.3 s, seen at 0, 0.15 and 0.3 s
    result = CausalResult(ids=torch.tensor([[100, 200, 300]]), lengths=[3], texts=[""], token_times=[0.1, 0.2, 0.3],
                          forward_passes=3, seconds=0.3)
    panel = causal_panel("gpt2", "", tokenizer, causal_context(tokenizer, "dog"), result, [0.0, 0.15, 0.3])
    assert [f.status.split(" \u00b7 ")[-2] for f in panel.frames] == ["0 / 3 tokens", "1 / 3 tokens", "3 / 3 tokens"]
    assert [f.share for f in panel.frames] == [0.0, 1 / 3, 1.0]
    assert panel.frames[-1].status.startswith("0.30 s \u00b7 done")
    n_dog = len(tokenizer("dog", add_special_tokens=False)["input_ids"])
    assert [p.kind for p in panel.frames[2].pieces] == ["prefix"] * n_dog + ["revealed", "new", "new"]
    # the diffusion side: one time per trace entry, increasing, the last one the whole run
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(checkpoint)
    prompt = build_prompt(tokenizer, max_length=12)
    decoded, step_times, seconds = timed_decode(model, tokenizer, prompt, DecodeOptions(steps=4))
    assert len(step_times) == len(decoded.trace) == 5 and step_times[0] == 0.0
    assert step_times == sorted(step_times) and step_times[-1] == seconds
    # cached block passes do not call the model as a whole: every step is still timed
    prompt = build_prompt(tokenizer, max_length=20)
    decoded, step_times, seconds = timed_decode(model, tokenizer, prompt, DecodeOptions(block_length=4, cache="dual",
                                                                                        threshold=0))
    assert decoded.forward_passes == 18 and len(step_times) == len(decoded.trace) == 19
    assert step_times == sorted(step_times) and step_times[1] > 0 and step_times[-1] == seconds


def _error(capsys, argv, *needles):
    code = compare_models.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_judge_must_be_neither_generator(checkpoint, gpt2_checkpoint, tmp_path, capsys):
    c = ["--roberta-checkpoint", checkpoint, "--gpt2-checkpoint", gpt2_checkpoint, "--output", str(tmp_path / "x.gif")]
    _error(capsys, c + ["--judge", gpt2_checkpoint], "is the GPT-2 generator itself", "must be neither generator")
    _error(capsys, c + ["--judge", gpt2_checkpoint + "/"], "must be neither generator")  # the same folder, spelt otherwise
    _error(capsys, c + ["--judge", checkpoint], "is the diffusion generator itself")
    assert not os.listdir(tmp_path)  # nothing written


def test_bad_inputs(checkpoint, gpt2_checkpoint, tmp_path, capsys, monkeypatch):
    out = ["--output", str(tmp_path / "out" / "c.gif")]
    g = ["--gpt2-checkpoint", gpt2_checkpoint]
    _error(capsys, ["--roberta-checkpoint", str(tmp_path / "nope"), *g, *out], "does not exist")
    _error(capsys, ["--roberta-checkpoint", checkpoint, "--gpt2-checkpoint", str(tmp_path / "nope"), *out], "does not exist")
    _error(capsys, ["--roberta-checkpoint", checkpoint, "--gpt2-checkpoint", checkpoint, *out], "is a masked LM")
    _error(capsys, ["--roberta-checkpoint", checkpoint, *g, "--output", "c.png"], "must end in .gif")
    _error(capsys, ["--roberta-checkpoint", checkpoint, *g, "--prompt", "a", "--infill", "[MASK]", *out], "not both")
    _error(capsys, ["--roberta-checkpoint", checkpoint, *g, "--steps", "0", *out], "--steps must be at least 1")
    _error(capsys, ["--roberta-checkpoint", checkpoint, *g, "--num-frames", "1", *out], "--num-frames")
    assert not (tmp_path / "out").exists()
    # no flags and no models on disk: one line that says how to get them
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(DEFAULT_MODELS, "masked", [("results/final-model", "trained"), (str(tmp_path / "no-bundle"), "bundled")])
    monkeypatch.setitem(DEFAULT_MODELS, "causal", [(str(tmp_path / "no-causal"), "bundled")])
    _error(capsys, [], "no --roberta-checkpoint given", "python train.py --quick-test")
    _error(capsys, ["--roberta-checkpoint", checkpoint], "no --gpt2-checkpoint given", "--objective causal")
    proc = call_main("compare_models.py", ["--roberta-checkpoint", str(tmp_path / "nope"), *g], capsys)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "\n" not in proc.stderr.strip()


def test_a_long_panel_title_is_cut_to_the_frame_width():
    """The default settings make a long diffusion title; it must end inside the frame, not past its edge."""
    from PIL import Image, ImageDraw

    from diffusion.viz.race import fit_width
    from diffusion.viz.rendering import font

    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    bold = font(22, bold=True)
    title = ("Diffusion \u00b7 masked-base \u00b7 nucleus p=0.9, linear schedule, one step per position, "
             "threshold 0.9, blocks of 8")
    cut = fit_width(draw, title, bold, 888)
    assert cut.endswith("\u2026") and draw.textlength(cut, font=bold) <= 888
    assert cut.startswith("Diffusion \u00b7 masked-base \u00b7 nucleus p=0.9")
    assert fit_width(draw, "Diffusion \u00b7 masked-base", bold, 888) == "Diffusion \u00b7 masked-base"


def test_a_gaussian_checkpoint_adds_a_third_lane(checkpoint, gpt2_checkpoint, gaussian_checkpoint, judge_checkpoint,
                                                tmp_path, capsys):
    out = tmp_path / "race.gif"
    argv = ["--roberta-checkpoint", checkpoint, "--gpt2-checkpoint", gpt2_checkpoint, "--gaussian-checkpoint",
            gaussian_checkpoint, "--ddim-steps", "5", "--judge", judge_checkpoint, "--prompt", "dog:", *FLAGS,
            "--output", str(out)]
    assert compare_models.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"Gaussian model: {gaussian_checkpoint}" in printed
    table = json.loads((tmp_path / "race.json").read_text())
    assert [r["model"] for r in table["rows"]] == ["diffusion", "gaussian", "gpt2"]
    gaussian = table["rows"][1]
    assert set(gaussian) == ROW_FIELDS and gaussian["forward_passes"] == 5 and gaussian["text"].startswith("dog:")
    assert isinstance(gaussian["judge_perplexity"], float) and table["gaussian_options"]["ddim_steps"] == 5
    two_lanes = tmp_path / "two.gif"
    assert compare_models.main(argv[:4] + argv[8:-1] + [str(two_lanes)]) == 0
    with Image.open(out) as three, Image.open(two_lanes) as two:
        assert three.size[0] == two.size[0] and three.size[1] > two.size[1]  # one more panel
    capsys.readouterr()
    assert compare_models.main(argv[:4] + ["--ddim-steps", "5", "--output", str(tmp_path / "x.gif")]) == 2
    assert "--ddim-steps sets the Gaussian lane: give --gaussian-checkpoint DIR too" in capsys.readouterr().err
    assert compare_models.main(argv[:6] + ["--ddim-steps", "99", "--output", str(tmp_path / "y.gif")]) == 2
    assert "--ddim-steps must lie in 1..20" in capsys.readouterr().err
    assert not (tmp_path / "x.gif").exists() and not (tmp_path / "y.gif").exists()
