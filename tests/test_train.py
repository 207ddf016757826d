"""train.py end to end: outputs, logging, reload, resume, DDP, other data sources, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import pytest
import torch
from conftest import FAST, MICRO_GPT2, MICRO_MODEL, REPO, call_main, run_script, train_in_process
from PIL import Image

LEVELS = ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0"]


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory, small_corpus):
    """One micro-model run on the small corpus, shared by the tests that only read its outputs."""
    out = str(tmp_path_factory.mktemp("runs") / "micro")
    argv = MICRO_MODEL + FAST + ["--dataset", small_corpus, "--max_steps", "6", "--output_dir", out,
                                 "--report_to", "tensorboard"]
    assert train_in_process(argv) == 0
    return out


def test_quick_test_cli_fine_tunes_the_bundled_base(tmp_path):
    """The README's main command, cut to a few steps: exit code, printed table, files, and a
    starting point far better than random (the bundled base, models/mlm-base, a 15%-masking MLM)."""
    out = tmp_path / "results"
    proc = run_script([sys.executable, "train.py", "--quick-test", "--max_steps", "4", "--logging_steps", "2",
                       "--max-eval-samples", "64", "--disable_tqdm", "true", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "note: no bundled base" not in proc.stdout
    assert re.search(r"^model: \S*models/mlm-base, masked objective, 4\.\d\dM parameters", proc.stdout, re.M)
    assert "Held-out loss and masked-token accuracy per masking level (64 validation examples)" in proc.stdout
    assert "loss before | loss after | change |" in proc.stdout
    table_rows = [line for line in proc.stdout.splitlines() if line.strip().split(" |")[0].strip() in LEVELS]
    assert len(table_rows) == 10
    assert "Training loss is a mean over this run's batches" in proc.stdout  # why the two losses differ
    assert "step      2 | loss" in proc.stdout  # the compact per-level log line
    final = out / "final-model"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "diffusion_config.json"):
        assert (final / name).is_file(), name
    assert not (out / "final-model.tmp").exists()
    settings = json.loads((final / "diffusion_config.json").read_text())
    assert settings["objective"] == "masked" and settings["max_length"] == 64 and settings["dataset"] == "wordnet"
    assert settings["mask_levels"] == [float(level) for level in LEVELS]  # variable masking, from a 15% base
    assert settings["eos_padding"] is False
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 4
    # A random init scores 0.000 at every level and word frequencies ~0.04 (README); the base more
    # wherever there is context, and it was never trained to end texts.
    assert metrics["initial"]["initial_acc_mask_0.1"] > 0.15
    for level in LEVELS:
        assert 0.05 < metrics["initial"][f"initial_acc_mask_{level}"] <= 1
        assert f"initial_end_acc_mask_{level}" not in metrics["initial"]
        assert 0 <= metrics["final"][f"eval_acc_mask_{level}"] <= 1
    with Image.open(out / "loss_curves.png") as image:
        assert image.size == (1400, 520)  # training and held-out panels side by side


def test_quick_test_from_scratch_starts_at_random_and_learns(tmp_path, capsys):
    out = tmp_path / "results"
    assert train_in_process(["--quick-test", "--from-scratch", "--max_steps", "4", "--max-eval-samples", "32",
                             "--per_device_train_batch_size", "16",
                             "--disable_tqdm", "true", "--output_dir", str(out)]) == 0
    assert "model: fresh tiny config, masked objective" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    for level in LEVELS:
        assert metrics["initial"][f"initial_acc_mask_{level}"] < 0.01
        assert metrics["final"][f"eval_loss_mask_{level}"] < metrics["initial"][f"initial_loss_mask_{level}"]


def test_quick_test_without_a_bundled_base_says_so(monkeypatch):
    import config

    monkeypatch.setattr(config, "BUNDLED_MLM_MODEL", "/nonexistent/mlm-base")
    model, _, _, _, run, _ = config.parse_train_args(["--quick-test"])
    assert model.model is None and model.model_config == "tiny"
    assert run.note == "note: no bundled base at /nonexistent/mlm-base; the quick test trains from scratch instead"


def test_gaussian_quick_test_trains_a_fresh_denoiser_unless_a_model_is_named():
    import config

    model, _, _, _, run, training = config.parse_train_args(["--quick-test", "--objective", "gaussian"])
    assert (model.model, model.model_config, run.note) == (None, "tiny", None)
    assert (training.learning_rate, training.max_steps, training.weight_decay) == (1e-3, 250, 0.0)
    assert training.output_dir == "results-gaussian"
    # Fine-tuning the converged base stays one flag away, at the rate the user gives.
    model, _, _, _, _, training = config.parse_train_args(
        ["--quick-test", "--objective", "gaussian", "--model", "models/gaussian-base", "--learning_rate", "1e-4"])
    assert (model.model, model.model_config, training.learning_rate) == ("models/gaussian-base", None, 1e-4)
    assert model.tokenizer is None  # the checkpoint's own tokenizer, not the preset's


@pytest.mark.parametrize("extra, expected", [
    ([], "word"),  # a fresh denoiser on the bundled corpus reads it word by word
    (["--dataset", "wordnet"], "word"),
    (["--dataset", "roneneldan/TinyStories"], None),  # other text: the default byte-level BPE
    (["--data-dir", "src"], None),
    (["--tokenizer", "data/tokenizer"], "data/tokenizer"),
])
def test_fresh_gaussian_presets_take_the_word_tokenizer_only_for_the_bundled_corpus(extra, expected):
    import config
    from diffusion.paths import BUNDLED_WORD_TOKENIZER

    expected = BUNDLED_WORD_TOKENIZER if expected == "word" else expected
    for preset in (["--quick-test"], []):
        model = config.parse_train_args([*preset, "--objective", "gaussian", *extra])[0]
        assert model.tokenizer == expected, (preset, extra)
    assert config.parse_train_args(["--quick-test", *extra])[0].tokenizer == (None if expected != "data/tokenizer"
                                                                             else expected)  # masked: unchanged


def test_per_level_scalars_in_log_history(micro_run):
    state = json.loads(open(os.path.join(micro_run, "checkpoint-6", "trainer_state.json")).read())
    train_logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert [entry["step"] for entry in train_logs] == [2, 4, 6]
    for entry in train_logs:
        per_level = {k: v for k, v in entry.items() if k.startswith("loss_mask_")}
        assert len(per_level) >= 5  # 16 examples per logging window: most levels appear
        assert set(per_level) <= {f"loss_mask_{level}" for level in LEVELS}
        assert all(0 < v < 20 for v in per_level.values())
    # The evaluation before training is kept beside the run (Trainer.train resets log_history).
    initial = json.loads(open(os.path.join(micro_run, "initial_metrics.json")).read())
    assert {f"initial_acc_mask_{level}" for level in LEVELS} <= set(initial)


def test_tensorboard_gets_the_per_level_scalars(micro_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = [os.path.join(root, f) for root, _, files in os.walk(micro_run) for f in files
                   if f.startswith("events.out.tfevents")]
    assert event_files
    tags = set()
    for path in event_files:
        accumulator = EventAccumulator(path)
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert any(tag.endswith("loss_mask_1.0") or tag.endswith("loss_mask_0.5") for tag in tags), tags
    # Every event file, the initial evaluation's too, lies in the run's own runs/ folder, none in the
    # folder train.py was started from.
    assert all(os.path.relpath(path, micro_run).startswith("runs" + os.sep) for path in event_files)
    assert not os.path.exists(os.path.join(REPO, "runs"))
    # the texts written at the end of training are there as text, and in samples.jsonl
    texts = set()
    for path in event_files:
        accumulator = EventAccumulator(path, size_guidance={"tensors": 0})
        accumulator.Reload()
        if "samples/text_summary" in accumulator.Tags().get("tensors", []):
            texts |= {event.step for event in accumulator.Tensors("samples/text_summary")}
    assert texts == {6}
    samples = [json.loads(line) for line in open(os.path.join(micro_run, "samples.jsonl"))]
    assert [s["step"] for s in samples] == [6] and len(samples[0]["texts"]) == 3


def test_every_checkpoint_carries_its_diffusion_config(micro_run, capsys):
    """A Trainer checkpoint decodes like the final model: it has the same diffusion_config.json."""
    import generate
    from diffusion.checkpoint import load_diffusion_config

    final = load_diffusion_config(os.path.join(micro_run, "final-model"))
    for name in sorted(n for n in os.listdir(micro_run) if n.startswith("checkpoint-")):
        config = load_diffusion_config(os.path.join(micro_run, name))
        assert config is not None and config.global_step == int(name.split("-")[1])
        assert {**vars(config), "global_step": None} == {**vars(final), "global_step": None}
    last = os.path.join(micro_run, "checkpoint-6")  # the final step: the same weights as final-model
    outputs = []
    for folder in (last, os.path.join(micro_run, "final-model")):
        assert generate.main(["--checkpoint", folder, "--steps", "4", "--sampling", "topk", "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out)["samples"])
    assert outputs[0] == outputs[1]


def test_final_model_reloads_with_identical_logits(tokenizer, small_corpus, tmp_path):
    """Save through train.py's own save path, reload with AutoModelForMaskedLM: same logits."""
    from transformers import AutoModelForMaskedLM, TrainingArguments

    import train
    from data_collator import VariableMaskingCollator
    from diffusion.checkpoint import DiffusionConfig
    from diffusion.masked.trainer import DiffusionTrainer
    from diffusion.text.data import load_raw_datasets, tokenize_datasets
    from diffusion.text.models import build_model

    data = tokenize_datasets(load_raw_datasets(small_corpus), tokenizer, max_length=32)
    model = build_model("masked", "tiny", tokenizer, 32, {"hidden_size": "32", "num_hidden_layers": "1",
                                                          "num_attention_heads": "2", "intermediate_size": "64"})
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8, use_cpu=True,
                             report_to="none", save_strategy="no", disable_tqdm=True, learning_rate=1e-3)
    trainer = DiffusionTrainer(model=model, args=args, train_dataset=data["train"], processing_class=tokenizer,
                               data_collator=VariableMaskingCollator(tokenizer, seed=0))
    trainer.train()
    final = train.save_final_model(trainer, str(tmp_path), DiffusionConfig(objective="masked"))
    batch = tokenizer(["a <mask> of the genus Canis.", "run: move <mask>."], padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        reloaded = AutoModelForMaskedLM.from_pretrained(final).eval()(**batch).logits
    assert expected.shape == (2, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.equal(expected, reloaded)


def test_fill_mask_pipeline_loads_the_final_model(micro_run):
    from transformers import pipeline

    fill = pipeline("fill-mask", model=os.path.join(micro_run, "final-model"), device="cpu")
    predictions = fill("dog: a <mask> of the genus Canis.", top_k=5)
    assert len(predictions) == 5
    assert all(set(p) >= {"token_str", "score", "sequence"} for p in predictions)
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True) and sum(scores) <= 1.0 + 1e-6


def test_resume_matches_an_uninterrupted_run(tmp_path, small_corpus):
    """8 steps straight vs 4 steps, stop, resume to 8: the same losses (CPU, 1e-6)."""
    common = MICRO_MODEL + FAST + ["--dataset", small_corpus, "--max_steps", "8", "--save_steps", "4",
                                   "--logging_steps", "1"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train_in_process(common + ["--output_dir", str(straight)]) == 0
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-4", resumed / "checkpoint-4")  # as if stopped after step 4
    assert train_in_process(common + ["--output_dir", str(resumed), "--resume"]) == 0

    def losses(run):
        state = json.loads((run / "checkpoint-8" / "trainer_state.json").read_text())
        return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}

    a, b = losses(straight), losses(resumed)
    assert sorted(b) == [1, 2, 3, 4, 5, 6, 7, 8]
    for step in range(5, 9):
        assert abs(a[step] - b[step]) < 1e-6, (step, a[step], b[step])
    final_a = json.loads((straight / "metrics.json").read_text())["final"]
    final_b = json.loads((resumed / "metrics.json").read_text())["final"]
    assert abs(final_a["eval_loss"] - final_b["eval_loss"]) < 1e-6


def test_resume_with_a_longer_schedule_records_every_stage(tmp_path, small_corpus):
    """Training extended in the same folder (4 steps, then --resume to 6): metrics.json lists both
    calls, and its total wall time is their sum, not only the last call's."""
    common = MICRO_MODEL + FAST + ["--dataset", small_corpus, "--save_steps", "2", "--output_dir", str(tmp_path)]
    assert train_in_process(common + ["--max_steps", "4"]) == 0
    first = json.loads((tmp_path / "metrics.json").read_text())
    assert [s["global_step"] for s in first["stages"]] == [4]
    assert first["total_train_runtime_s"] == first["train_runtime_s"] > 0

    assert train_in_process(common + ["--max_steps", "6", "--resume"]) == 0
    second = json.loads((tmp_path / "metrics.json").read_text())
    assert second["global_step"] == 6
    assert [s["global_step"] for s in second["stages"]] == [4, 6]
    assert second["stages"][0]["train_runtime_s"] == first["train_runtime_s"]
    assert second["stages"][1]["train_runtime_s"] == second["train_runtime_s"]
    assert second["total_train_runtime_s"] == pytest.approx(first["train_runtime_s"] + second["train_runtime_s"],
                                                            abs=0.11)


MICRO_GAUSSIAN = ["--objective", "gaussian", "--model-config", "tiny", "--embedding-dim", "8", "--diffusion-steps", "20",
                  "--config-overrides", "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"]


@pytest.mark.parametrize("objective", ["masked", "gaussian"])
def test_two_process_ddp_on_cpu(tmp_path, small_corpus, objective):
    out = tmp_path / "ddp"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    model = MICRO_MODEL if objective == "masked" else MICRO_GAUSSIAN + ["--use-ema"]
    proc = run_script([torchrun, "--standalone", "--nproc_per_node", "2", "train.py"] + model + FAST +
                      ["--dataset", small_corpus, "--max_steps", "4", "--output_dir", str(out)], timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4
    assert (out / "final-model" / "model.safetensors").is_file()
    # one final table, printed by the main process only
    table = "Held-out loss and masked-token accuracy" if objective == "masked" else "rounding accuracy per noise level"
    assert proc.stdout.count(table) == 1


def test_causal_objective_and_wrong_model_kind(tmp_path, small_corpus, capsys):
    out = tmp_path / "gpt2"
    argv = ["--objective", "causal"] + MICRO_GPT2 + FAST + ["--dataset", small_corpus, "--max_steps", "4",
                                                              "--output_dir", str(out)]
    assert train_in_process(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["eval_perplexity"] == pytest.approx(float(torch.exp(torch.tensor(metrics["final"]["eval_loss"]))),
                                                                rel=1e-3)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "final-model")
    assert model.config.model_type == "gpt2"
    # --eos-padding is a masked-collator setting: a causal run does not claim it.
    assert json.loads((out / "final-model" / "diffusion_config.json").read_text())["eos_padding"] is False
    printed = capsys.readouterr().out
    assert "perplexity" in printed and "samples at step 4:" in printed  # the samples callback, causal side
    samples = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert [s["step"] for s in samples] == [4] and len(samples[0]["texts"]) == 3
    # A causal checkpoint is refused as the start of a masked run, in one line.
    code = train_in_process(FAST + ["--model", str(out / "final-model"), "--dataset", small_corpus,
                                    "--max_steps", "1", "--output_dir", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "is not a masked LM" in err and "\n" not in err


def test_code_folder_dataset(tmp_path):
    src = tmp_path / "code"
    (src / "pkg").mkdir(parents=True)
    (src / ".git").mkdir()
    for i in range(12):
        (src / "pkg" / f"m{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n")
    (src / "notes.md").write_text("not code")
    (src / ".git" / "hidden.py").write_text("skip me")
    from diffusion.text.data import load_raw_datasets

    raw = load_raw_datasets("unused", data_dir=str(src), extensions=[".py"], validation_split_percentage=20)
    texts = list(raw["train"]["text"]) + list(raw["validation"]["text"])
    assert len(texts) == 12 and all(t.startswith("def f") for t in texts)  # whole files, hidden dirs skipped
    out = tmp_path / "run"
    argv = MICRO_MODEL + FAST + ["--data-dir", str(src), "--extensions", ".py", "--max_steps", "2",
                                 "--validation-split-percentage", "20", "--output_dir", str(out)]
    assert train_in_process(argv) == 0
    assert json.loads((out / "final-model" / "diffusion_config.json").read_text())["dataset"] == str(src)


def test_local_txt_csv_and_packing(tmp_path, tokenizer):
    from diffusion.text.data import load_raw_datasets, tokenize_datasets

    (tmp_path / "a.txt").write_text("\n".join(f"line number {i} of the text file" for i in range(50)))
    raw = load_raw_datasets(str(tmp_path / "a.txt"))
    assert len(raw["train"]) + len(raw["validation"]) == 50
    (tmp_path / "t.csv").write_text("body,label\n" + "\n".join(f"row {i} text,{i}" for i in range(40)))
    raw = load_raw_datasets(str(tmp_path / "t.csv"), validation_split_percentage=25)
    assert raw["train"].column_names == ["body", "label"]
    packed = tokenize_datasets(raw, tokenizer, text_column="body", max_length=16, packing=True)
    assert set(packed["train"]["length"]) == {16}
    assert all(len(ids) == 16 for ids in packed["train"]["input_ids"])
    unpacked = tokenize_datasets(raw, tokenizer, text_column="body", max_length=16)
    assert unpacked["train"][0]["input_ids"][0] == tokenizer.bos_token_id
    assert unpacked["train"][0]["input_ids"][-1] == tokenizer.eos_token_id


# ---------------------------------------------------------------------------------- bad input
def _one_line_error(capsys, argv, *needles):
    code = train_in_process(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, err)
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in captured.err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_bad_dataset_path(capsys, tmp_path):
    _one_line_error(capsys, MICRO_MODEL + ["--dataset", "./no/such/file.jsonl", "--output_dir", str(tmp_path / "o")],
                    "does not exist")
    assert not (tmp_path / "o").exists()


def test_missing_text_column_lists_columns(capsys, tmp_path, small_corpus):
    _one_line_error(capsys, MICRO_MODEL + ["--dataset", small_corpus, "--text-column", "body",
                                           "--output_dir", str(tmp_path / "o")], "'body'", "text, source")


def test_max_length_too_small_for_prefix(capsys, tmp_path):
    _one_line_error(capsys, MICRO_MODEL + ["--max-length", "8", "--prefix-len", "6", "--output_dir", str(tmp_path / "o")],
                    "--max-length 8", "--prefix-len 6", "at least 9")


def test_bad_flag_values(capsys, tmp_path):
    _one_line_error(capsys, MICRO_MODEL + ["--schedule", "zigzag", "--output_dir", str(tmp_path)], "known schedules")
    _one_line_error(capsys, MICRO_MODEL + ["--mask-levels", "0.5", "1.5", "--output_dir", str(tmp_path)], "(0, 1]")
    _one_line_error(capsys, MICRO_MODEL + ["--resume", "--overwrite-output-dir", "--output_dir", str(tmp_path)], "pick one")
    _one_line_error(capsys, MICRO_MODEL + ["--resume", "--output_dir", str(tmp_path / "empty")], "no checkpoint")
    _one_line_error(capsys, MICRO_MODEL + ["--eval-mask-levels", "0", "--output_dir", str(tmp_path)], "--eval-mask-levels")
    _one_line_error(capsys, ["--model", "x", "--sinusoidal-positions", "--output_dir", str(tmp_path)], "fresh model")
    _one_line_error(capsys, MICRO_GPT2 + ["--objective", "causal", "--pre-layer-norm", "--output_dir", str(tmp_path)],
                    "fresh masked model")
    _one_line_error(capsys, MICRO_MODEL + ["--from-scratch", "--output_dir", str(tmp_path)], "--quick-test")
    _one_line_error(capsys, MICRO_GPT2 + ["--objective", "causal", "--local-attention-init", "--output_dir", str(tmp_path)],
                    "fresh masked or gaussian model")


def test_pre_layer_norm_and_sinusoidal_positions(tokenizer):
    from diffusion.text.models import build_model

    masked = build_model("masked", "tiny", tokenizer, 64, pre_layer_norm=True, sinusoidal_positions=True)
    causal = build_model("causal", "tiny", tokenizer, 64, sinusoidal_positions=True)
    assert type(masked).__name__ == "RobertaPreLayerNormForMaskedLM"
    for table, first in ((masked.base_model.embeddings.position_embeddings.weight, 2), (causal.transformer.wpe.weight, 0)):
        table = table.detach().double()[first:]  # RoBERTa's rows 0-1 are before its first position
        assert table.std().item() == pytest.approx(0.02, rel=0.05)  # the scale of the random init
        # Sinusoids: the dot product of two positions depends only on their distance.
        for distance in (1, 3):
            dots = (table[:-distance] * table[distance:]).sum(-1)
            assert dots.std() < 1e-3 * dots.abs().mean()
    assert masked.base_model.embeddings.position_embeddings.weight[1].abs().sum() == 0  # the padding position


def test_local_attention_init_points_the_first_heads_at_the_neighbours(tokenizer):
    from diffusion.text.models import LOCAL_ATTENTION_OFFSETS, build_model

    torch.manual_seed(0)
    model = build_model("masked", "tiny", tokenizer, 64, {"num_hidden_layers": "2"}, pre_layer_norm=True,
                        local_attention_init=True).eval()
    model.config._attn_implementation = "eager"  # the SDPA kernel returns no attention weights
    batch = tokenizer(["dog: a member of the genus Canis that has been domesticated by man.",
                       "loganberry: large red variety of the dewberry."], return_tensors="pt", padding=True)
    ids = batch["input_ids"].clone()
    ids[:, 3:9] = tokenizer.mask_token_id  # the queries below sit on <mask> tokens
    with torch.no_grad():
        attentions = model(input_ids=ids, attention_mask=batch["attention_mask"], output_attentions=True).attentions
    first, second = attentions[0][0], attentions[1][0]  # (heads, L, L), first document
    queries = torch.arange(3, 9)
    for head, offset in enumerate(LOCAL_ATTENTION_OFFSETS):
        on_neighbour = first[head, queries, queries + offset]  # (6,)
        assert on_neighbour.min() > 0.5, (head, offset, on_neighbour)
    # Only the first layer is shaped; the second starts as a random init, near uniform.
    assert second[0, queries, queries - 1].max() < 0.3
    # --local-attention-layers 2 shapes the second layer the same way.
    torch.manual_seed(0)
    two = build_model("masked", "tiny", tokenizer, 64, {"num_hidden_layers": "2"}, pre_layer_norm=True,
                      local_attention_init=True, local_attention_layers=2).eval()
    two.config._attn_implementation = "eager"
    with torch.no_grad():
        second = two(input_ids=ids, attention_mask=batch["attention_mask"], output_attentions=True).attentions[1][0]
    for head, offset in enumerate(LOCAL_ATTENTION_OFFSETS):
        assert second[head, queries, queries + offset].min() > 0.5, (head, offset)
    # The word embeddings start at zero in the position channel (the first head's dims).
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    assert model.base_model.embeddings.word_embeddings.weight[:, :head_dim].abs().max() == 0


def test_eval_mask_levels_are_reported_instead_of_the_training_levels(tmp_path, small_corpus):
    out = tmp_path / "mlm15"
    argv = MICRO_MODEL + FAST + ["--dataset", small_corpus, "--max_steps", "2", "--mask-levels", "0.15",
                                 "--eval-mask-levels", "0.1", "0.5", "1.0", "--output_dir", str(out)]
    assert train_in_process(argv) == 0
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert {k for k in final if k.startswith("eval_acc_mask_")} == {f"eval_acc_mask_{x}" for x in ("0.1", "0.5", "1.0")}
    assert json.loads((out / "final-model" / "diffusion_config.json").read_text())["mask_levels"] == [0.15]


def test_eos_padding_trains_on_end_tokens_and_reports_them(tmp_path, small_corpus):
    """--eos-padding: recorded in diffusion_config.json, and the evaluation adds the accuracy where
    the text ends (the first </s> of padded rows) per level beside the unchanged text accuracy."""
    out = tmp_path / "eos"
    argv = MICRO_MODEL + FAST + ["--dataset", small_corpus, "--max_steps", "2", "--max-length", "32", "--eos-padding",
                                 "--eval-mask-levels", "0.5", "1.0", "--output_dir", str(out)]
    assert train_in_process(argv) == 0
    final = json.loads((out / "metrics.json").read_text())["final"]
    for level in ("0.5", "1.0"):
        assert 0.0 <= final[f"eval_end_acc_mask_{level}"] <= 1.0
        assert f"eval_acc_mask_{level}" in final
    config = json.loads((out / "final-model" / "diffusion_config.json").read_text())
    assert config["eos_padding"] is True and config["max_length"] == 32


def test_existing_run_is_not_overwritten(capsys, micro_run):
    metrics = os.path.join(micro_run, "metrics.json")
    before = open(metrics).read(), os.path.getmtime(metrics)
    _one_line_error(capsys, MICRO_MODEL + ["--output_dir", micro_run], "already holds a run", "--resume",
                    "--overwrite-output-dir")
    assert (open(metrics).read(), os.path.getmtime(metrics)) == before


def test_hub_ids_offline_name_the_alternative(tmp_path, capsys):
    proc = call_main("train.py", ["--model", "roberta-base", "--output_dir", str(tmp_path / "o")], capsys)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "roberta-base" in err[0] and "--model-config tiny" in err[0], proc.stderr
    proc = call_main("train.py", ["--quick-test", "--dataset", "roneneldan/TinyStories", "--output_dir", str(tmp_path / "o")],
                     capsys)
    assert proc.returncode == 2
    # The bundled base loads first (its "Loading weights" progress bar); then one error line, no traceback.
    err = [line for line in proc.stderr.strip().splitlines() if not line.startswith("Loading weights")]
    assert "Traceback" not in proc.stderr
    assert len(err) == 1 and "TinyStories" in err[0] and "--dataset wordnet" in err[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_end_of_text_accuracy_scores_the_first_end_token_only(tokenizer):
    """evaluate_per_level with an EOS-padding collator adds end_accuracy: a model that predicts </s>
    everywhere gets every text token wrong and every end of text right, one target per row."""
    from types import SimpleNamespace

    import torch
    from datasets import Dataset

    from data_collator import VariableMaskingCollator
    from diffusion.masked.trainer import evaluate_per_level

    class AlwaysEnd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def get_output_embeddings(self):
            return None

        def forward(self, input_ids, attention_mask=None):
            logits = torch.zeros(*input_ids.shape, len(tokenizer))
            logits[..., tokenizer.eos_token_id] = 10.0
            return SimpleNamespace(logits=logits)

    rows = [tokenizer(t)["input_ids"] for t in ("the dog barked all night", "a short one.", "cat: a feline")]
    dataset = Dataset.from_dict({"input_ids": rows})
    collator = VariableMaskingCollator(tokenizer, eos_padding_length=16)
    results = evaluate_per_level(AlwaysEnd(), dataset, collator, [1.0], batch_size=2)
    assert results[1.0]["accuracy"] == 0.0 and results[1.0]["end_accuracy"] == 1.0
    assert results[1.0]["end_tokens"] == 3  # at 100% masking every row's end is a target
    assert results[1.0]["tokens"] == sum(len(r) - 2 for r in rows)  # text protocol: </s> never a target
    plain = evaluate_per_level(AlwaysEnd(), dataset, VariableMaskingCollator(tokenizer), [1.0], batch_size=2)
    assert "end_accuracy" not in plain[1.0]
