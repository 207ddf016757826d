"""Gaussian text diffusion end to end: the loss and its padding policy, the sampler, train.py and generate.py.

A micro denoiser (hidden 32, 2 layers, 8-dimensional embeddings, 20 diffusion steps) keeps every
run to seconds; what is asserted is behaviour (files, numbers, texts, exit codes, messages).
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import call_main, train_in_process

from diffusion.gaussian.model import build_gaussian_model
from diffusion.gaussian.process import GaussianProcess
from diffusion.gaussian.sampling import (
    GaussianSamplingOptions,
    gaussian_prompt,
    length_quantiles,
    sample,
    sample_lengths,
)
from diffusion.gaussian.trainer import GaussianCollator, denoise_terms, fixed_text

MICRO = ["--model-config", "tiny", "--embedding-dim", "8", "--diffusion-steps", "20",
         "--config-overrides", "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"]
MICRO_OVERRIDES = {"hidden_size": "32", "num_hidden_layers": "2", "num_attention_heads": "2", "intermediate_size": "64"}
QUIET = ["--disable_tqdm", "true", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
         "--max-eval-samples", "16", "--logging_steps", "2", "--save_steps", "1000"]


def _micro_model(tokenizer, seed: int = 0):
    torch.manual_seed(seed)
    return build_gaussian_model("tiny", tokenizer, 32, embedding_dim=8, overrides=MICRO_OVERRIDES).eval()


def test_padding_is_never_seen_and_never_scored(tokenizer):
    """The padding policy: two batches that differ only in what the padded positions hold give the
    same loss terms at every real position (padding is not attended, and the loss masks it out)."""
    model = _micro_model(tokenizer)
    process = GaussianProcess("sqrt", 20)
    collate = GaussianCollator(tokenizer)
    batch = collate([{"input_ids": tokenizer("dog: a domestic animal.")["input_ids"]},
                     {"input_ids": tokenizer("cat: a small feline kept as a pet or for catching mice.")["input_ids"]}])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (ids[mask == 0] == tokenizer.pad_token_id).all() and (mask[0] == 0).any()
    other = ids.clone()
    other[mask == 0] = tokenizer.convert_tokens_to_ids("Ġthe")  # a frequent word where the padding was
    steps = torch.tensor([5, 17])
    noise = torch.randn(*ids.shape, 8, generator=torch.Generator().manual_seed(0))
    a = denoise_terms(model, process, ids, mask, steps, noise, self_condition=True)
    b = denoise_terms(model, process, other, mask, steps, noise, self_condition=True)
    real = mask.bool()
    torch.testing.assert_close(a["mse"][real], b["mse"][real])
    torch.testing.assert_close(a["ce"][real], b["ce"][real])


def test_fixed_text_keeps_the_ends_and_a_prefix_or_scattered_tokens_of_some_rows():
    mask = torch.ones(400, 20, dtype=torch.long)
    mask[:, 15:] = 0  # rows of 15 real positions
    none = fixed_text(mask, 0.0, torch.Generator().manual_seed(0))
    assert not none.any()
    every = fixed_text(mask, 1.0, torch.Generator().manual_seed(0))
    assert not every[:, 15:].any()  # never padding
    assert every[:, 0].all() and every[:, 14].all()  # <s> and </s> of every conditioned row
    prefix_like = (every[:, :14].long().diff(dim=1) <= 0).all(dim=1)  # True... then False... before the end
    assert 0.3 < prefix_like.float().mean() < 0.8  # about half prefix rows (scattered ones rarely look so)
    half = fixed_text(mask, 0.5, torch.Generator().manual_seed(1))
    assert 0.4 < half[:, 0].float().mean() < 0.6


def test_self_conditioning_changes_the_denoisers_input_and_output(tokenizer):
    model = _micro_model(tokenizer)
    x = torch.randn(2, 6, 8)
    steps = torch.tensor([3, 9])
    plain = model(x, steps)
    conditioned = model(x, steps, None, torch.randn(2, 6, 8))
    assert plain.shape == conditioned.shape == (2, 6, 8)
    assert not torch.allclose(plain, conditioned)


def test_sampling_is_seeded_holds_the_prefix_and_ddim_eta_0_is_deterministic(tokenizer):
    model = _micro_model(tokenizer)
    process = GaussianProcess("sqrt", 20)
    prompt = gaussian_prompt(tokenizer, [12, 9], prefix="dog:")
    ddim = GaussianSamplingOptions(sampler="ddim", ddim_steps=5)
    first = sample(model, process, tokenizer, prompt, ddim, seed=3)
    again = sample(model, process, tokenizer, prompt, ddim, seed=3)
    assert torch.equal(first.ids, again.ids) and first.texts == again.texts
    assert first.forward_passes == 5 and [s.step for s in first.trace] == [20, 16, 12, 8, 4]
    dog = tokenizer("dog:", add_special_tokens=False)["input_ids"]
    for row, n in zip(first.ids, (12, 9), strict=True):
        assert row[1:1 + len(dog)].tolist() == dog  # the prefix, unchanged
        assert row[n - 1] == tokenizer.eos_token_id  # the text's end, fixed
    assert all(text.startswith("dog:") for text in first.texts)
    assert first.attention_mask[1].sum() == 9 and first.attention_mask[1, 9:].sum() == 0
    ddpm = sample(model, process, tokenizer, prompt, GaussianSamplingOptions(sampler="ddpm"), seed=3)
    assert ddpm.forward_passes == 20
    clamped = sample(model, process, tokenizer, prompt, GaussianSamplingOptions(ddim_steps=5, clamp=True), seed=3)
    # with clamping every estimate is a row of the embedding table: rounding is certain of it
    assert all(float(step.probs[prompt.generate].min()) > 0 for step in clamped.trace)


def test_a_drawn_clamp_snaps_every_estimate_to_a_seeded_draw_of_tokens(tokenizer, monkeypatch):
    """--clamp-temperature T: each estimate becomes the embedding of a token drawn from the rounding
    distribution at T (seeded), not of its argmax; a very low T is the argmax clamp again."""
    model = _micro_model(tokenizer)
    process = GaussianProcess("sqrt", 20)
    prompt = gaussian_prompt(tokenizer, [12, 9])
    drawn_options = GaussianSamplingOptions(ddim_steps=5, clamp_temperature=1.0)
    estimates = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: estimates.append(a[3]) or forward(*a, **k))
    drawn = sample(model, process, tokenizer, prompt, drawn_options, seed=3)
    table = model.get_input_embeddings().weight.detach()  # (V, d)
    for previous in estimates[1:]:  # what each model call after the first is fed: the last (snapped) estimate
        rows = previous[prompt.generate]  # (n, d)
        gap = (rows[:, None] - table[None]).abs().amax(dim=-1).min(dim=1).values  # (n,) to the nearest row
        assert float(gap.max()) == 0.0  # every one a row of the table, exactly
    again = sample(model, process, tokenizer, prompt, drawn_options, seed=3)
    assert drawn.texts == again.texts
    argmax = sample(model, process, tokenizer, prompt, GaussianSamplingOptions(ddim_steps=5, clamp=True), seed=3)
    assert drawn.texts != argmax.texts  # an untrained model's rounding is uncertain: draws differ from its argmax
    cold = sample(model, process, tokenizer, prompt, GaussianSamplingOptions(ddim_steps=5, clamp_temperature=1e-6),
                  seed=3)
    assert torch.equal(cold.ids, argmax.ids)
    assert "clamped to drawn tokens (temperature 1)" in drawn_options.describe(process)
    with pytest.raises(ValueError, match="--clamp-temperature must be above 0, got 0"):
        GaussianSamplingOptions(clamp_temperature=0.0)


def test_the_rounding_never_writes_unk_even_where_the_estimate_is_nearest_to_it(tokenizer, monkeypatch):
    """A word-level vocabulary trains <unk> as every rare word; the sampler rounds to the nearest
    real token instead, in the final text, in the trace and in the clamp."""
    model = _micro_model(tokenizer)
    process = GaussianProcess("sqrt", 20)
    prompt = gaussian_prompt(tokenizer, [12, 9])
    unk = tokenizer.unk_token_id
    rounding = model.rounding_logits
    bonus = torch.zeros(len(tokenizer))
    bonus[unk] = 1e4  # every estimate is nearest to <unk>
    monkeypatch.setattr(model, "rounding_logits", lambda x: rounding(x) + bonus)
    assert bool((model.rounding_logits(torch.randn(2, 3, 8)).argmax(dim=-1) == unk).all())
    for options in (GaussianSamplingOptions(ddim_steps=5), GaussianSamplingOptions(ddim_steps=5, clamp=True),
                    GaussianSamplingOptions(ddim_steps=5, clamp_temperature=1.0)):
        result = sample(model, process, tokenizer, prompt, options, seed=3)
        assert unk not in result.ids[prompt.generate].tolist()
        assert all(unk not in step.ids[prompt.generate].tolist() for step in result.trace)
        assert all(text for text in result.texts)


def test_words_outside_a_word_level_vocabulary_are_named_once(tmp_path, capsys):
    """generate.py on a word-level checkpoint: a prefix word it cannot spell is given as <unk>, and a
    note says which, instead of the word vanishing from the printed text."""
    from transformers import AutoTokenizer

    from diffusion.checkpoint import DiffusionConfig
    from diffusion.paths import BUNDLED_WORD_TOKENIZER

    words = AutoTokenizer.from_pretrained(BUNDLED_WORD_TOKENIZER)
    path = tmp_path / "word-model"
    _micro_model(words).save_pretrained(path)
    words.save_pretrained(path)
    DiffusionConfig(objective="gaussian", max_length=32, schedule="sqrt", diffusion_steps=20,
                    sample_lengths=[10, 12]).save(str(path))
    code, out, err = _generate(["--checkpoint", str(path), "--num-samples", "2", "--prefix", "loganberry: a red"],
                               capsys)
    assert code == 0, err[-2000:]
    assert "given as <unk> and left out of the text: loganberry" in err
    texts = [line for line in out.splitlines() if line.startswith("[")]
    assert len(texts) == 2 and all(line.split("] ", 1)[1].startswith(": a red") for line in texts), out
    code, out, err = _generate(["--checkpoint", str(path), "--num-samples", "1", "--prefix", "dog: a"], capsys)
    assert code == 0 and "<unk>" not in err


def test_generated_lengths_follow_the_training_lengths():
    quantiles = length_quantiles(list(range(10, 31)))  # lengths 10..30, uniform
    assert quantiles[0] == 10 and quantiles[-1] == 30 and quantiles == sorted(quantiles)

    class Config:
        sample_lengths = quantiles

    drawn = sample_lengths(Config, None, 500, seed=0)
    assert min(drawn) >= 10 and max(drawn) <= 30 and 17 < sum(drawn) / len(drawn) < 23
    assert sample_lengths(Config, 16, 3) == [16, 16, 16]  # --max-length wins
    assert sample_lengths(None, None, 2) == [64, 64]


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory, small_corpus):
    """An argv-level training run of the micro denoiser with EMA and periodic samples."""
    out = str(tmp_path_factory.mktemp("gauss") / "run")
    argv = ["--objective", "gaussian", *MICRO, *QUIET, "--dataset", small_corpus, "--max-length", "32",
            "--max_steps", "6", "--use-ema", "--sample-every", "3", "--num-sample-texts", "2",
            "--sampler", "ddim", "--ddim-steps", "4", "--learning_rate", "3e-3", "--output_dir", out, "--use_cpu"]
    assert train_in_process(argv) == 0
    return out


def test_training_writes_a_loadable_gaussian_checkpoint_with_its_process(gaussian_run):
    from transformers import AutoModel

    final = os.path.join(gaussian_run, "final-model")
    settings = json.load(open(os.path.join(final, "diffusion_config.json")))
    assert settings["objective"] == "gaussian" and settings["schedule"] == "sqrt-quarter-snr"
    assert settings["diffusion_steps"] == 20 and settings["ema_decay"] == 0.9999
    assert settings["sample_lengths"] == sorted(settings["sample_lengths"]) and 3 <= settings["sample_lengths"][0]
    import diffusion.gaussian.model  # noqa: F401  (registers the model type)

    model = AutoModel.from_pretrained(final)
    assert type(model).__name__ == "GaussianTextModel" and model.config.embedding_dim == 8
    assert model.config.given_text_at_step_zero  # every model train.py trains marks its given text
    metrics = json.load(open(os.path.join(gaussian_run, "metrics.json")))
    for level in ("0.1", "0.5", "1.0"):
        assert 0 <= metrics["final"][f"eval_acc_noise_{level}"] <= 1
        assert metrics["final"][f"eval_loss_noise_{level}"] > 0
    # the held-out loss rises with the noise: t = 1.0 is no easier than t = 0.1
    assert metrics["final"]["eval_loss_noise_1.0"] > metrics["final"]["eval_loss_noise_0.1"]
    logged = [entry for entry in json.load(open(os.path.join(gaussian_run, "checkpoint-6", "trainer_state.json")))[
        "log_history"] if "loss" in entry]
    assert logged and any(key.startswith("loss_noise_") for key in logged[0])
    samples = [json.loads(line) for line in open(os.path.join(gaussian_run, "samples.jsonl"))]
    assert [s["step"] for s in samples] == [3, 6] and all(len(s["texts"]) == 2 for s in samples)
    assert os.path.isfile(os.path.join(gaussian_run, "checkpoint-6", "ema.safetensors"))


def _generate(argv: list[str], capsys) -> tuple[int, str, str]:
    import generate

    code = generate.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_samples_the_checkpoint_with_a_trace(gaussian_run, capsys):
    final = os.path.join(gaussian_run, "final-model")
    code, out, err = _generate(["--checkpoint", final, "--num-samples", "2", "--ddim-steps", "4", "--prefix", "dog:",
                                "--json"], capsys)
    assert code == 0, err[-2000:]
    data = json.loads(out)
    assert data["objective"] == "gaussian" and data["forward_passes"] == 4 and len(data["samples"]) == 2
    for s in data["samples"]:
        assert s["text"].startswith("dog:")
        assert [step["step"] for step in s["steps"]] == [20, 15, 10, 5]
        assert len(s["steps"][0]["tokens"]) == len(s["generate"]) == len(s["steps"][0]["probs"])
        assert all(0 <= p <= 1 for p in s["steps"][-1]["probs"])
    # seed 001's command, through the script's main
    proc = call_main("generate.py", ["--checkpoint", final, "--num-samples", "5"], capsys)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DDIM, 20 of 20 steps" in proc.stdout  # the default 50 is more steps than this model has
    texts = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert len(texts) == 5, proc.stdout


def test_the_flags_of_the_diffusion_lm_style_trainer_are_aliases():
    import config

    model, _, _, gaussian, run, training = config.parse_train_args(
        ["--objective", "gaussian", "--epochs", "50", "--use-ema", "--amp", "--sampler", "ddim", "--ddim-steps", "100",
         "--grad-clip", "0.5", "--grad-accum", "4", "--ckpt-dir", "my-checkpoints", "--schedule", "cosine"])
    assert model.objective == "gaussian" and model.model_config == "tiny"
    assert training.num_train_epochs == 50 and training.max_grad_norm == 0.5
    assert training.gradient_accumulation_steps == 4 and training.output_dir == "my-checkpoints"
    assert training.bf16 or training.fp16
    assert run.use_ema and gaussian.sampler == "ddim" and gaussian.ddim_steps == 100
    assert gaussian.given == {"--schedule"}


@pytest.mark.parametrize("argv, message", [
    (["--ddim-steps", "0"], "--ddim-steps must be at least 1"),
    (["--ddim-steps", "21"], "--ddim-steps must lie in 1..20 (the trained steps), got 21"),
    (["--schedule", "bogus"], "unknown schedule 'bogus'"),
    (["--eos-padding"], "--eos-padding only applies to --objective masked, not gaussian"),
    (["--sampler", "euler"], "--sampler must be one of ddpm, ddim"),
])
def test_bad_training_input_is_one_line_and_writes_nothing(tmp_path, small_corpus, capsys, argv, message):
    out = tmp_path / "run"
    code = train_in_process(["--objective", "gaussian", *MICRO, *QUIET, "--dataset", small_corpus, "--max_steps", "2",
                             "--output_dir", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err and not out.exists()


def test_bad_generation_input_is_one_line(gaussian_run, checkpoint, capsys):
    final = os.path.join(gaussian_run, "final-model")
    cases = [
        ([final, "--eta", "1.5"], "--eta must lie in [0, 1], got 1.5"),
        ([final, "--clamp-temperature", "-1"], "--clamp-temperature must be above 0, got -1"),
        ([checkpoint, "--clamp-temperature", "0.7"], "--clamp-temperature only applies to a Gaussian checkpoint"),
        ([final, "--ddim-steps", "50"], "--ddim-steps must lie in 1..20 (the trained steps), got 50"),
        ([final, "--remasking", "random"], "--remasking only applies to a masked checkpoint"),
        ([checkpoint, "--ddim-steps", "10"], "--ddim-steps only applies to a Gaussian checkpoint"),
        ([checkpoint, "--sampler", "ddpm", "--eta", "0.5"], "--eta, --sampler only apply to a Gaussian checkpoint"),
    ]
    for args, message in cases:
        code, out, err = _generate(["--checkpoint", *args], capsys)
        assert code == 2 and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and not out
