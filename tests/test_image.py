"""Image diffusion (diffusion/image/): the digits, both denoisers, label dropout, guidance, sampling
through the shared Gaussian process, and a few training steps that lower the loss."""

from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np
import pytest
import torch
from conftest import REPO

from diffusion.gaussian.process import GaussianProcess
from diffusion.image.data import DataError, ImageCollator, load_image_datasets, num_classes
from diffusion.image.dit import DiTConfig, DiTModel
from diffusion.image.pixels import from_pixels, to_pixels
from diffusion.image.sampling import ImageSamplingOptions, predict_noise, sample_images
from diffusion.image.trainer import drop_labels, evaluate_per_noise_level
from diffusion.image.unet import UNetConfig, UNetModel

MICRO_UNET = dict(base_channels=16, channel_mults=[1, 2], num_res_blocks=1, groups=4, num_heads=2)
MICRO_DIT = dict(hidden_size=32, depth=2, num_heads=2)


def _model(kind: str, **config):
    torch.manual_seed(0)
    if kind == "unet":
        return UNetModel(UNetConfig(**{**MICRO_UNET, **config}))
    return DiTModel(DiTConfig(**{**MICRO_DIT, **config}))


def _randomise(model):
    """Fresh denoisers output exactly zero (zero-initialised last layers): give every weight a value."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


@pytest.fixture(scope="module")
def digits():
    return load_image_datasets()


def test_digits_are_a_fixed_stratified_split_in_minus_one_to_one(digits):
    assert len(digits["train"]) == 1617 and len(digits["validation"]) == 180 and num_classes(digits) == 10
    assert sorted(digits["validation"]["label"]) == sorted(list(range(10)) * 18)  # 10% of every class
    batch = ImageCollator(8, 1)([digits["train"][i] for i in range(16)])
    x = batch["pixel_values"]
    assert x.shape == (16, 1, 8, 8) and x.min() == -1.0 and x.max() == 1.0
    assert batch["labels"].tolist() == digits["train"]["label"][:16]
    # 17 grey levels survive the round trip to PNG bytes
    image = digits["train"][0]["image"]
    assert (from_pixels(to_pixels(image, 8, 1)) == np.asarray(image)).all()
    assert to_pixels(image, 16, 1).shape == (1, 16, 16) and to_pixels(image, 8, 3).shape == (3, 8, 8)


def test_bad_columns_and_sources_are_one_line(tmp_path):
    with pytest.raises(DataError, match=r"no column 'digit' in 'digits'; its columns are: image, label \(use --label-column\)"):
        load_image_datasets(label_column="digit")
    with pytest.raises(DataError, match=r"no column 'img'.*\(use --image-column\)"):
        load_image_datasets(image_column="img")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataError, match="is a file; an image dataset is a folder of images"):
        load_image_datasets(str(tmp_path / "a.txt"))


@pytest.mark.parametrize("kind", ["unet", "dit"])
@pytest.mark.parametrize("size, channels, classes", [(8, 1, 10), (16, 3, 0), (28, 1, 10)])
def test_denoisers_keep_the_image_shape(kind, size, channels, classes):
    extra = {"channel_mults": [1, 2, 2]} if kind == "unet" and size == 28 else {}
    model = _randomise(_model(kind, image_size=size, in_channels=channels, num_classes=classes, **extra))
    x = torch.randn(3, channels, size, size)
    steps = torch.tensor([1, 500, 1000])
    labels = torch.tensor([0, 5, 9]) if classes else None
    out = model(x, steps, labels)
    assert out.shape == x.shape and torch.isfinite(out).all()
    if classes:  # the label changes the prediction, and None is the null label
        assert not torch.allclose(out, model(x, steps, torch.tensor([1, 6, 2])))
        assert torch.equal(model(x, steps, None), model(x, steps, torch.full((3,), classes)))


@pytest.mark.parametrize("kind", ["unet", "dit"])
def test_a_fresh_denoiser_predicts_zero_noise(kind):
    """Zero-initialised output layers (improved-diffusion; DiT's adaLN-Zero): training starts from eps_hat = 0."""
    model = _model(kind)
    assert model(torch.randn(2, 1, 8, 8), torch.tensor([3, 700]), torch.tensor([1, 2])).abs().max() == 0


def test_a_size_the_model_cannot_divide_is_one_line():
    with pytest.raises(ValueError, match="image size 10 is not divisible by 4"):
        UNetModel(UNetConfig(image_size=10, channel_mults=[1, 2, 2]))
    with pytest.raises(ValueError, match="image size 9 is not divisible by the patch size 2"):
        DiTModel(DiTConfig(image_size=9))


@pytest.mark.parametrize("kind", ["unet", "dit"])
def test_reload_gives_identical_outputs_through_automodel(kind, tmp_path):
    from transformers import AutoModel

    model = _randomise(_model(kind)).eval()
    model.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()
    assert type(again) is type(model)
    x, steps, labels = torch.randn(4, 1, 8, 8), torch.tensor([1, 10, 100, 1000]), torch.tensor([0, 3, 7, 10])
    assert torch.equal(model(x, steps, labels), again(x, steps, labels))


def test_label_dropout_replaces_a_tenth_with_the_null_label():
    labels = torch.randint(0, 10, (200_000,))
    dropped = drop_labels(labels, 10, 0.1, torch.Generator().manual_seed(0))
    changed = dropped != labels
    assert abs(changed.float().mean().item() - 0.1) < 0.003
    assert (dropped[changed] == 10).all() and torch.equal(dropped[~changed], labels[~changed])


def test_guidance_mixes_the_two_predictions():
    model = _randomise(_model("unet")).eval()
    x, steps, labels = torch.randn(4, 1, 8, 8), torch.full((4,), 400), torch.tensor([1, 2, 3, 4])
    conditional, unconditional = model(x, steps, labels), model(x, steps, None)
    assert torch.equal(predict_noise(model, x, steps, labels, 0.0), unconditional)  # w = 0: unconditional
    assert torch.equal(predict_noise(model, x, steps, labels, 1.0), conditional)
    torch.testing.assert_close(predict_noise(model, x, steps, labels, 3.0),
                               unconditional + 3.0 * (conditional - unconditional), rtol=1e-5, atol=1e-5)


def test_sampling_steps_through_the_shared_process(monkeypatch):
    """The image sampler owns no diffusion math: every step is GaussianProcess.ddim_step / ddpm_step."""
    model = _randomise(_model("unet"))
    process = GaussianProcess("cosine", 20)
    calls = []
    for name in ("ddim_step", "ddpm_step"):
        original = getattr(GaussianProcess, name)
        monkeypatch.setattr(GaussianProcess, name,
                            lambda self, *a, _o=original, _n=name, **kw: calls.append(_n) or _o(self, *a, **kw))
    result = sample_images(model, process, torch.arange(3), ImageSamplingOptions(ddim_steps=5), record_trace=True)
    assert calls == ["ddim_step"] * 5 and result.forward_passes == 5
    assert [s.step for s in result.trace] == [20, 16, 12, 8, 4]
    assert result.images.shape == (3, 1, 8, 8) and result.images.abs().max() <= 1
    calls.clear()
    sample_images(model, process, None, ImageSamplingOptions(sampler="ddpm", guidance=0), num_samples=2)
    assert calls == ["ddpm_step"] * 20
    # the source: no second copy of the schedule's coefficients anywhere in diffusion/image
    for path in glob.glob(os.path.join(REPO, "diffusion", "image", "*.py")):
        text = open(path).read()
        for sign in ("cumprod", "diffusion.schedules", "import schedules", "betas_for_alpha_bar"):
            assert sign not in text, (path, sign)


def test_ddim_with_eta_zero_is_deterministic_and_seeds_matter():
    model = _randomise(_model("dit"))
    process = GaussianProcess("cosine", 50)
    options = ImageSamplingOptions(ddim_steps=10, guidance=3.0)
    a = sample_images(model, process, torch.arange(4), options, seed=3).images
    assert torch.equal(a, sample_images(model, process, torch.arange(4), options, seed=3).images)
    assert not torch.equal(a, sample_images(model, process, torch.arange(4), options, seed=4).images)


@pytest.mark.parametrize("flags, message", [
    (dict(sampler="euler"), "--sampler must be one of ddpm, ddim"),
    (dict(eta=1.5), r"--eta must lie in \[0, 1\]"),
    (dict(guidance=-1), "--guidance must be at least 0"),
    (dict(ddim_steps=0), "--ddim-steps must be at least 1"),
])
def test_bad_sampling_options_are_one_line(flags, message):
    with pytest.raises(ValueError, match=message):
        ImageSamplingOptions(**flags)


def test_a_few_training_steps_lower_the_held_out_loss(digits, tmp_path):
    from transformers import TrainingArguments

    from diffusion.image.trainer import ImageTrainer

    model = _model("unet")
    process = GaussianProcess("cosine", 100)
    collator = ImageCollator(8, 1)
    held_out = digits["validation"].select(range(64))
    before = evaluate_per_noise_level(model, process, held_out, collator, [0.2, 0.8])
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=32, learning_rate=2e-3,
                             max_steps=30, logging_steps=10, report_to=[], use_cpu=True, save_strategy="no",
                             remove_unused_columns=False, disable_tqdm=True, seed=0)
    trainer = ImageTrainer(model=model, args=args, train_dataset=digits["train"], data_collator=collator, process=process)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(logs) == 3 and all(f"loss_noise_{t}" in logs[-1] for t in ("0.1", "0.5", "1.0"))
    after = evaluate_per_noise_level(model, process, held_out, collator, [0.2, 0.8])
    assert before[0.2]["loss"] == pytest.approx(1.0, abs=0.1)  # a fresh model predicts eps_hat = 0: MSE = Var(eps) = 1
    for t in (0.2, 0.8):
        assert after[t]["loss"] < 0.8 * before[t]["loss"], (t, before[t], after[t])


# ------------------------------------------------------------------------- train.py and generate.py
MICRO_FLAGS = ["--objective", "image", "--quick-test", "--config-overrides",
               "base_channels=16,groups=4,num_res_blocks=1,num_heads=2", "--diffusion-steps", "20", "--ddim-steps", "5",
               "--max_steps", "4", "--logging_steps", "2", "--eval_steps", "2", "--max-eval-samples", "32",
               "--disable_tqdm", "true"]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    from conftest import train_in_process

    out = tmp_path_factory.mktemp("image") / "run"
    assert train_in_process([*MICRO_FLAGS, "--output_dir", str(out)]) == 0
    return out


def test_quick_test_writes_a_checkpoint_metrics_curves_and_a_grid(image_run):
    import json

    from PIL import Image
    from transformers import AutoModel

    import diffusion.image.unet  # noqa: F401

    final = image_run / "final-model"
    settings = json.loads((final / "diffusion_config.json").read_text())
    assert settings["objective"] == "image" and settings["image_size"] == 8 and settings["channels"] == 1
    assert settings["class_names"][7] == "seven" and settings["schedule"] == "cosine" and settings["diffusion_steps"] == 20
    assert settings["cond_drop"] == 0.1 and settings["ema_decay"] == 0.999
    assert type(AutoModel.from_pretrained(final)).__name__ == "UNetModel"
    metrics = json.loads((image_run / "metrics.json").read_text())
    assert metrics["objective"] == "image" and metrics["global_step"] == 4 and metrics["eval_examples"] == 32
    assert set(metrics["final"]) >= {f"eval_loss_noise_{t}" for t in ("0.1", "0.5", "1.0")}
    assert "initial_perplexity" not in metrics["initial"]
    logs = [entry for entry in json.loads((final.parent / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
            if "loss" in entry]
    assert "loss_noise_0.5" in logs[-1] or "loss_noise_0.6" in logs[-1]
    with Image.open(image_run / "samples.png") as grid:  # 10 rows of 10 digits, 64 px each, labelled
        assert grid.height > 10 * 64 and grid.width > 10 * 64
    # during training: one digit of each class at every evaluation (steps 2 and 4), the end included once
    assert sorted(os.listdir(image_run / "samples")) == ["step-000002.png", "step-000004.png"]
    with Image.open(image_run / "samples" / "step-000002.png") as grid:
        assert grid.height > 10 * 64 and grid.width < 3 * 64 + 200  # a column of ten digits and their names
    with Image.open(image_run / "loss_curves.png") as curves:
        assert curves.size == (1400, 520)


def test_generate_writes_the_grid_and_one_png_per_sample(image_run, tmp_path, capsys):
    from conftest import call_main
    from PIL import Image

    out = tmp_path / "samples"
    proc = call_main("generate.py", ["--checkpoint", str(image_run / "final-model"), "--digit", "seven",
                                     "--num-samples", "3", "--guidance", "5", "--output-dir", str(out)], capsys)
    assert proc.returncode == 0, proc.stderr
    assert "3 images of 8x8, DDIM, 20 of 20 steps, eta 0, guidance 5: 20 steps" in proc.stdout
    assert sorted(os.listdir(out)) == ["7-seven_000.png", "7-seven_001.png", "7-seven_002.png", "grid.png"]
    with Image.open(out / "7-seven_000.png") as one:
        assert one.size == (8, 8) and one.mode == "L"  # the model's own resolution
    with Image.open(out / "grid.png") as grid:
        assert grid.width >= 3 * 64
    # every class, DDPM: 10 rows
    proc = call_main("generate.py", ["--checkpoint", str(image_run / "final-model"), "--sampler", "ddpm",
                                     "--num-samples", "1", "--output-dir", str(tmp_path / "all")], capsys)
    assert proc.returncode == 0 and "10 images of 8x8, DDPM, 20 steps, guidance 3: 20 steps" in proc.stdout
    assert len(os.listdir(tmp_path / "all")) == 11


@pytest.mark.parametrize("argv, message", [
    (["--digit", "11"], "--digit 11: "),
    (["--guidance", "-1"], "--guidance must be at least 0"),
    (["--prefix", "dog"], "--prefix only applies to text checkpoints"),
    (["--ddim-steps", "30"], "--ddim-steps must lie in 1..20 (the trained steps), got 30"),
])
def test_bad_image_sampling_input_is_one_line_and_writes_nothing(image_run, tmp_path, capsys, argv, message):
    from conftest import call_main

    proc = call_main("generate.py", ["--checkpoint", str(image_run / "final-model"), *argv,
                                     "--output-dir", str(tmp_path / "out")], capsys)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_text_checkpoint_given_image_flags_is_one_line(checkpoint, capsys):
    from conftest import call_main

    proc = call_main("generate.py", ["--checkpoint", checkpoint, "--digit", "3"], capsys)
    assert proc.returncode == 2 and "--digit only applies to an image checkpoint" in proc.stderr


@pytest.mark.parametrize("argv, message", [
    (["--model-type", "ResNet"], "--model-type must be UNet or DiT, got 'ResNet'"),
    (["--max-length", "64"], "--max-length only applies to the text objectives"),
    (["--config-overrides", "depth=3"], "'depth' is not a field of the diffusion-unet config"),
    (["--image-size", "10", "--config-overrides", "channel_mults=1x2x2"], "image size 10 is not divisible by 4"),
])
def test_bad_image_training_input_is_one_line(tmp_path, capsys, argv, message):
    from conftest import call_main

    proc = call_main("train.py", ["--objective", "image", "--quick-test", *argv, "--output_dir", str(tmp_path / "o")], capsys)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_seed_commands_parse_verbatim_and_a_yaml_config_is_read(tmp_path):
    from config import parse_image_train_args

    image, run, training = parse_image_train_args(["--objective", "image", "--model-type", "UNet", "--epochs", "30",
                                                   "--batch-size", "8", "--lr", "0.0001"])
    assert (image.model_type, training.num_train_epochs, training.per_device_train_batch_size) == ("UNet", 30, 8)
    assert training.learning_rate == 1e-4 and training.output_dir == "results-image-unet" and run.use_ema
    image, _, training = parse_image_train_args(["--objective", "image", "--model-type", "DiT", "--epochs", "50",
                                                 "--batch-size", "4", "--lr", "0.0002"])
    assert image.model_type == "DiT" and training.output_dir == "results-image-dit" and training.learning_rate == 2e-4
    config = tmp_path / "dit.yaml"
    config.write_text("model_type: DiT\nlearning_rate: 0.0003\nuse_ema: false\nconfig_overrides: depth=2\n")
    image, run, training = parse_image_train_args(["--objective", "image", "--config", str(config), "--lr", "0.0005"])
    assert image.model_type == "DiT" and image.config_overrides == "depth=2" and not run.use_ema
    assert training.learning_rate == 5e-4  # a flag typed after --config wins
    for path in glob.glob(os.path.join(REPO, "configs", "*.yaml")):  # the shipped examples parse
        parse_image_train_args(["--objective", "image", "--config", path])


def test_visualize_writes_the_denoising_gif_and_frames(image_run, tmp_path, capsys):
    from conftest import call_main
    from PIL import Image

    out = tmp_path / "viz"
    proc = call_main("visualize_generation.py", ["--checkpoint", str(image_run / "final-model"), "--ddim-steps", "5",
                                                 "--output", str(out)], capsys)
    assert proc.returncode == 0, proc.stderr
    frames = sorted(os.listdir(out / "visualization_frames"))
    assert frames == [f"frame_{i:03d}.png" for i in range(6)]  # 5 steps and the finished images
    sizes = set()
    for name in frames:
        with Image.open(out / "visualization_frames" / name) as frame:
            sizes.add(frame.size)
    assert len(sizes) == 1 and min(sizes)[0] >= 10 * 64  # one column per digit, 64 px each
    with Image.open(out / "image_diffusion_animation.gif") as gif:
        assert gif.n_frames == 6
    proc = call_main("visualize_generation.py", ["--checkpoint", str(image_run / "final-model"), "--prefix", "dog",
                                                 "--output", str(tmp_path / "nothing")], capsys)
    assert proc.returncode == 2 and "--prefix only applies to text checkpoints" in proc.stderr
    assert not (tmp_path / "nothing").exists()


def test_image_quality_benchmark_judges_every_setting(image_run, tmp_path, capsys):
    import json
    import sys

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import image_quality

    out = tmp_path / "quality"
    assert image_quality.main(["--checkpoint", str(image_run / "final-model"), "--per-class", "2",
                               "--guidance", "0", "3", "--ddim-steps", "5", "--output-dir", str(out)]) == 0
    data = json.loads((out / "image_quality.json").read_text())
    rows = data["rows"]
    assert [r["model"] for r in rows[:2]] == ["real", "noise"]
    assert 0.9 < data["meta"]["judge_held_out_accuracy"] <= 1  # the judge itself, on real held-out digits
    assert rows[0]["fd"] < rows[1]["fd"]  # the floor below the ceiling
    settings = [r["setting"] for r in rows[2:]]
    assert settings == ["DDIM, 20 of 20 steps, eta 0, guidance 0", "DDIM, 20 of 20 steps, eta 0, guidance 3",
                        "DDIM, 5 of 20 steps, eta 0, guidance 3", "DDPM, 20 steps, guidance 3"]
    for r in rows[2:]:
        assert 0 <= r["accuracy"] <= 1 and r["fd"] > 0 and 0 <= r["copies"] <= 1
    assert (out / "image_quality.png").is_file()
    assert "| real | held-out images (the judge's ceiling) |" in capsys.readouterr().out
    assert image_quality.main(["--checkpoint", str(image_run / "final-model"), "--ddim-steps", "30"]) == 2


def test_seed_sampling_flags_model_type_and_model_path(image_run, tmp_path, capsys):
    """seed 002: `python3 sampling.py --model-type UNet --model-path FILE`; here generate.py with those flags."""
    from conftest import call_main

    final = str(image_run / "final-model")
    proc = call_main("generate.py", ["--model-type", "UNet", "--model-path", final, "--num-samples", "1",
                                     "--output-dir", str(tmp_path / "s")], capsys)
    assert proc.returncode == 0, proc.stderr
    assert len(os.listdir(tmp_path / "s")) == 11  # one of each digit and the grid
    proc = call_main("generate.py", ["--model-type", "DiT", "--model-path", final, "--output-dir", str(tmp_path / "d")],
                     capsys)
    assert proc.returncode == 2 and f"--model-type DiT: {final!r} holds a UNet" in proc.stderr
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------------- text-conditioned images
def test_a_text_conditioned_unet_reads_the_caption(tokenizer):
    from diffusion.image.captions import CaptionBank, load_text_encoder

    bank = CaptionBank(*load_text_encoder("models/masked-base"))
    states, mask = bank.encode(["a handwritten seven", "", "a handwritten seven"])
    assert states.shape[0] == 3 and states.shape[2] == bank.dim == 256 and mask.dtype == torch.bool
    assert torch.equal(states[0], states[2]) and len(bank._cache) == 2  # each distinct caption encoded once
    assert mask[1].sum() == 2  # the null caption: <s></s>
    model = _randomise(_model("unet", num_classes=0, cross_attention_dim=bank.dim)).eval()
    x, steps = torch.randn(2, 1, 8, 8), torch.tensor([300, 300])
    seven = model(x, steps, None, *bank.encode(["a handwritten seven"] * 2))
    two = model(x, steps, None, *bank.encode(["a handwritten two"] * 2))
    assert seven.shape == x.shape and not torch.allclose(seven, two)
    with pytest.raises(ValueError, match="this UNet is text-conditioned"):
        model(x, steps)


def test_train_and_generate_with_captions(tmp_path, capsys):
    import json

    from conftest import call_main, train_in_process

    out = tmp_path / "run"
    assert train_in_process([*MICRO_FLAGS, "--condition", "text", "--output_dir", str(out)]) == 0
    settings = json.loads((out / "final-model" / "diffusion_config.json").read_text())
    assert settings["condition"] == "text" and settings["text_encoder"] == "models/masked-base"
    config = json.loads((out / "final-model" / "config.json").read_text())
    assert config["num_classes"] == 0 and config["cross_attention_dim"] == 256
    proc = call_main("generate.py", ["--checkpoint", str(out / "final-model"), "--prompt", "a handwritten seven",
                                     "--num-samples", "2", "--output-dir", str(tmp_path / "s")], capsys)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no load report of the text encoder
    assert sorted(os.listdir(tmp_path / "s")) == ["a-handwritten-seven_000.png", "a-handwritten-seven_001.png",
                                                  "grid.png"]
    proc = call_main("generate.py", ["--checkpoint", str(out / "final-model"), "--prompt", "seven", "--digit", "7",
                                     "--output-dir", str(tmp_path / "x")], capsys)
    assert proc.returncode == 2 and "give --prompt or --digit, not both" in proc.stderr


def test_captions_are_refused_where_they_cannot_apply(image_run, tmp_path, capsys):
    from conftest import call_main

    proc = call_main("generate.py", ["--checkpoint", str(image_run / "final-model"), "--prompt", "a handwritten seven",
                                     "--output-dir", str(tmp_path / "s")], capsys)
    assert proc.returncode == 2 and "is conditioned on class labels, not text; use --digit" in proc.stderr
    assert not (tmp_path / "s").exists()
    proc = call_main("train.py", ["--objective", "image", "--quick-test", "--condition", "text", "--model-type", "DiT",
                                  "--output_dir", str(tmp_path / "o")], capsys)
    assert proc.returncode == 2 and "only the UNet has cross-attention blocks" in proc.stderr


def test_seed_model_type_without_a_checkpoint_names_the_image_quick_test(tmp_path, capsys, monkeypatch):
    from conftest import call_main

    monkeypatch.chdir(tmp_path)  # no results-image/ here
    proc = call_main("generate.py", ["--model-type", "UNet"], capsys)
    assert proc.returncode == 2 and "python train.py --quick-test --objective image" in proc.stderr


def test_two_process_ddp_on_cpu_trains_one_image_model(tmp_path):
    """torchrun with 2 CPU processes: one model, one metrics file, one table, the held-out split shared."""
    from conftest import run_script

    out = tmp_path / "ddp"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    proc = run_script([torchrun, "--standalone", "--nproc_per_node", "2", "train.py", *MICRO_FLAGS, "--use-ema",
                       "--output_dir", str(out)], timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4 and metrics["eval_examples"] == 32
    assert (out / "final-model" / "model.safetensors").is_file() and (out / "samples.png").is_file()
    assert proc.stdout.count("Held-out noise-prediction loss and x0 error per noise level") == 1
