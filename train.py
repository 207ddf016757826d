"""Train a masked LM as a text diffusion model (or a GPT-2-style baseline) with HF Trainer.

    python train.py --quick-test                           # fine-tune the bundled base, offline, minutes -> results/
    python train.py --quick-test --from-scratch            # the same from a random init (learns word frequencies)
    python train.py                                        # roberta-base on the bundled corpus -> results-full/
    python train.py --model roberta-base --dataset roneneldan/TinyStories --packing --max-length 256
    python train.py --quick-test --objective causal --output_dir results-gpt2   # fine-tune the bundled GPT-2 baseline
    python train.py --quick-test --resume                  # continue from the last checkpoint
    torchrun --nproc_per_node 2 train.py --quick-test      # data-parallel (CPU: gloo; GPU: nccl)

Data flows: data/ (text) -> diffusion/text/data.py (tokenise) -> data_collator.py (mask at a random
rate) -> diffusion/masked/trainer.py (loss per level) -> OUTPUT/final-model (+ metrics.json,
loss_curves.png).  Every flag: ``python train.py --help`` or config.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import warnings  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# pyarrow deprecation noise from datasets' Dataset.sort, not ours to fix.
warnings.filterwarnings("ignore", message="Specifying null_placement", category=FutureWarning)

import torch  # noqa: E402
from transformers import DataCollatorForLanguageModeling, PrinterCallback, ProgressCallback, Trainer, set_seed  # noqa: E402

from config import DASHBOARD_SAMPLE_EVERY, parse_image_train_args, parse_train_args  # noqa: E402
from data_collator import VariableMaskingCollator  # noqa: E402
from diffusion.checkpoint import (  # noqa: E402
    DiffusionConfig,
    ModelLoadError,
    check_length,
    load_diffusion_config,
    load_model,
    load_tokenizer,
)
from diffusion.cli import flag_value, run_main  # noqa: E402
from diffusion.dashboard import DashboardError, train_with_dashboard  # noqa: E402
from diffusion.gaussian.model import build_gaussian_model  # noqa: E402
from diffusion.gaussian.process import GaussianProcess  # noqa: E402
from diffusion.gaussian.sampling import length_quantiles  # noqa: E402
from diffusion.gaussian.trainer import NOISE_LEVELS, GaussianCollator, GaussianTrainer  # noqa: E402
from diffusion.masked.levels import format_level  # noqa: E402
from diffusion.masked.trainer import DiffusionTrainer, load_collator_state  # noqa: E402
from diffusion.paths import BUNDLED_TOKENIZER  # noqa: E402
from diffusion.runs import (  # noqa: E402
    RunError,
    check_output_dir,
    release_aside_run,
    restore_aside_run,
    restore_interrupted_overwrite,
    set_aside_run,
)
from diffusion.samples import ImageSamplesCallback, SamplesCallback, text_sampler  # noqa: E402
from diffusion.text.data import DataError, check_data_source, load_raw_datasets, tokenize_datasets  # noqa: E402
from diffusion.text.models import build_model, count_parameters  # noqa: E402
from diffusion.training import (  # noqa: E402
    CompactPrinterCallback,
    CompactProgressCallback,
    EMACallback,
    FirstStepCallback,
    LengthGroupedTrainer,
)
from diffusion.viz.plotting import plot_loss_curves  # noqa: E402

OFFLINE_HINT = " (--model models/masked-base), a fresh model (--model-config tiny)"


def save_final_model(trainer: Trainer, output_dir: str, diffusion_config: DiffusionConfig) -> str:
    """Write OUTPUT/final-model atomically: a crash mid-save never leaves a half-written model."""
    final = os.path.join(output_dir, "final-model")
    tmp = final + ".tmp"
    if trainer.is_world_process_zero() and os.path.exists(tmp):
        shutil.rmtree(tmp)
    trainer.save_model(tmp)  # weights (safetensors), config and tokenizer
    if trainer.is_world_process_zero():
        diffusion_config.save(tmp)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    trainer.accelerator.wait_for_everyone()
    return final


def level_table(before: dict[str, float] | None, after: dict[str, float], levels, prefix_before="initial",
                tag: str = "mask", name: str = "mask level") -> str:
    """Loss and accuracy per level before and after training (tag: 'mask' levels or 'noise' levels t)."""
    lines = [f"{name:>10} | loss before | loss after | change | accuracy before | accuracy after",
             "---------- | ----------- | ---------- | ------ | --------------- | --------------"]
    for level in levels:
        key = format_level(level)
        b_loss = before.get(f"{prefix_before}_loss_{tag}_{key}") if before else None
        b_acc = before.get(f"{prefix_before}_acc_{tag}_{key}") if before else None
        a_loss = after[f"eval_loss_{tag}_{key}"]
        change = f"{a_loss - b_loss:+.3f}" if b_loss is not None else "-"
        b_loss = f"{b_loss:.3f}" if b_loss is not None else "-"
        b_acc = f"{b_acc:.3f}" if b_acc is not None else "-"
        lines.append(f"{key:>10} | {b_loss:>11} | {a_loss:10.3f} | {change:>6} | "
                     f"{b_acc:>15} | {after[f'eval_acc_{tag}_{key}']:14.3f}")
    return "\n".join(lines)


def loss_note(eos_padding: bool, n_eval: int) -> str:
    """Why the training curves and the held-out numbers differ (under loss_curves.png and the table)."""
    held_out = f"the held-out loss scores text tokens of {n_eval:,} validation documents, with fixed masks"
    if eos_padding:
        return ("Training loss also counts the </s> padding that --eos-padding makes a target (easy once the end "
                f"of the text is known), and is a mean over this run's batches; {held_out}, so it lies higher.")
    return (f"Training loss is a mean over this run's batches while the model changes (noisy: batches grouped by "
            f"length differ in difficulty); {held_out}.")


def gaussian_loss_note(n_eval: int) -> str:
    return ("Training loss is x0 MSE + rounding cross-entropy over this run's batches (half of them self-conditioned, "
            f"half of the rows with some clean text left unscored); the held-out loss scores every token of {n_eval:,} "
            "validation documents with fixed noise, self-conditioned as sampling is.")


def gaussian_process(model_args, diff_args, gauss_args) -> GaussianProcess:
    """The Gaussian process to train with: a loaded checkpoint's own schedule and steps unless others are typed.

    A fresh denoiser gets sqrt-quarter-snr: Diffusion-LM's sqrt with its SNR divided by 4, so that
    the default 64-dimensional embeddings are as hard to recognise from their own noisy vector as
    Diffusion-LM's 16 were under sqrt (diffusion/schedules.py; docs/GAUSSIAN_TEXT.md).
    """
    schedule, steps = "sqrt-quarter-snr", gauss_args.diffusion_steps
    trained = load_diffusion_config(model_args.model) if model_args.model and os.path.isdir(model_args.model) else None
    if trained is not None and trained.objective == "gaussian":
        schedule, steps = trained.schedule or schedule, trained.diffusion_steps or steps
    if "--schedule" in gauss_args.given:
        schedule = diff_args.schedule
    if "--diffusion-steps" in gauss_args.given:
        steps = gauss_args.diffusion_steps
    try:
        process = GaussianProcess(schedule, steps)
        if gauss_args.ddim_steps is not None:
            process.ddim_steps(gauss_args.ddim_steps)  # more steps than trained fails here, before any run
    except ValueError as err:
        raise RunError(str(err)) from None
    return process


def open_output_dir(run_args, training_args) -> str | None:
    """Before anything loads: an interrupted overwrite is put back, the folder is checked, the seed set.

    Returns the checkpoint to resume from (None for a fresh run)."""
    output_dir = training_args.output_dir
    is_main = training_args.process_index == 0
    for note in restore_interrupted_overwrite(output_dir) if is_main else []:
        print(note, file=sys.stderr)
    resume_from, notes = check_output_dir(output_dir, run_args.overwrite_output_dir, run_args.resume, is_main)
    for note in notes if is_main else []:
        print(note, file=sys.stderr)
    set_seed(training_args.seed)
    return resume_from


def guarded_train(trainer, collator, model_args, diff_args, run_args, training_args, resume_from):
    """The compact log lines, then the evaluation before training and training itself -> (before, TrainOutput).

    Everything is checked and loaded by now. The earlier run is only moved aside (diffusion/runs.py):
    it is deleted after the new run's first training step, and put back if the new run fails before.
    """
    output_dir = training_args.output_dir
    trainer.point_tensorboard_into_the_run()
    # Replace the raw-dict log printers with one readable line per log.
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(CompactPrinterCallback if training_args.disable_tqdm else CompactProgressCallback)
    aside = set_aside_run(output_dir) if run_args.overwrite_output_dir and training_args.process_index == 0 else None
    first_step = FirstStepCallback(lambda: release_aside_run(output_dir) if aside else None)
    trainer.add_callback(first_step)
    trainer.accelerator.wait_for_everyone()
    try:
        return evaluate_and_train(trainer, collator, model_args, diff_args, training_args, output_dir, resume_from)
    except BaseException as err:  # Ctrl-C too: a run that never trained a step gives back what it replaced
        if first_step.done:
            raise  # it trained: its checkpoints are what --resume continues
        restored = aside is not None and restore_aside_run(output_dir)
        if isinstance(err, ValueError):  # e.g. torch's "Invalid learning rate": the user's flags, not a bug
            kept = f"; the earlier run in {output_dir!r} is unchanged" if restored else ""
            raise RunError(f"training failed before its first step: {err}{kept}") from None
        raise


def write_metrics(trainer, train_result, objective: str, source: str, parameters: int, eval_set, before, after,
                  output_dir: str, **extra) -> dict:
    """OUTPUT/metrics.json: what was trained, for how long (every call of a resumed run), and the numbers."""
    runtime_s = round(train_result.metrics.get("train_runtime", float("nan")), 1)  # this call only
    # Every call that trained this model, this one last, with its steps, time and mean loss.
    this_call_loss = train_result.metrics.get("train_loss_this_call", train_result.metrics.get("train_loss"))
    stages = trainer.run_stages(this_call_loss)
    stages[-1]["train_runtime_s"] = runtime_s
    args = trainer.args
    metrics = {
        "objective": objective,
        "model": source,
        "parameters": parameters,
        "global_step": trainer.state.global_step,
        "world_size": args.world_size,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "train_runtime_s": runtime_s,
        "train_loss": round(train_result.metrics.get("train_loss", float("nan")), 4),  # over all steps
        # every call that trained this model, this one last (several when --resume extended it)
        "stages": stages,
        "total_train_runtime_s": round(sum(stage["train_runtime_s"] for stage in stages), 1),
        "eval_examples": len(eval_set),
        **extra,
        "initial": before,
        "final": after,
    }
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def open_dashboard(argv: list[str], training_args, train) -> int:
    """--dashboard: the same run in a background thread, behind the live window (diffusion/dashboard.py)."""
    if training_args.world_size > 1:
        raise RunError("--dashboard shows one process's training: run it without torchrun / accelerate launch")
    return train_with_dashboard(lambda callback: train(argv, callback), training_args.output_dir)


def stopped_from_dashboard(dashboard, trainer) -> bool:
    """True when the window's close button stopped training (its checkpoint is saved; nothing more to do)."""
    if dashboard is None or dashboard.stopped_at is None:
        return False
    checkpoint = os.path.join(trainer.args.output_dir, f"checkpoint-{trainer.state.global_step}")
    print(f"stopped from the dashboard at step {trainer.state.global_step}, checkpoint saved: {checkpoint}; "
          f"the same command with --resume continues it")
    return True


def attach_samples(trainer, run_args, dashboard, make_samples) -> None:
    """The samples written during training (``make_samples(every)``, unless --sample-every 0) and the
    dashboard's callback, which hears about every sample."""
    every = sample_every(run_args, dashboard)
    samples = make_samples(every or 0) if every != 0 else None
    if samples is not None:
        samples.trainer = trainer
        # First in the list: at the end of training it writes before TensorBoard's callback closes its writer.
        trainer.callback_handler.callbacks.insert(0, samples)
    if dashboard is not None:
        trainer.add_callback(dashboard)
        if samples is not None:
            samples.listeners.append(dashboard)


def run(argv: list[str], dashboard=None) -> int:
    """Train a text model; ``dashboard``: the DashboardCallback of the window this call runs behind."""
    if flag_value(argv, "--objective") == "image":
        return run_image(argv, dashboard)
    try:
        model_args, data_args, diff_args, gauss_args, run_args, training_args = parse_train_args(argv)
    except ValueError as err:
        raise RunError(str(err)) from None
    if run_args.dashboard and dashboard is None:
        return open_dashboard(argv, training_args, run)
    output_dir = training_args.output_dir
    is_main = training_args.process_index == 0
    resume_from = open_output_dir(run_args, training_args)

    # ---- tokenizer ------------------------------------------------------------
    tokenizer_source = model_args.tokenizer or model_args.model or BUNDLED_TOKENIZER
    tokenizer = load_tokenizer(tokenizer_source, OFFLINE_HINT)
    if model_args.objective == "masked" and tokenizer.mask_token_id is None:
        raise RunError(f"tokenizer {tokenizer_source!r} has no mask token; the masked objective needs one")
    if tokenizer.pad_token_id is None:  # e.g. GPT-2's tokenizer
        tokenizer.pad_token = tokenizer.eos_token

    # ---- the data's source is checked before any weights load (quietly); the model before the
    # data is tokenised, so that a bad --model fails fast too -------------------------------
    data_source = check_data_source(data_args.dataset, data_args.data_dir, data_args.extension_list())

    # ---- model ---------------------------------------------------------------------------
    if model_args.model is not None:
        model = load_model(model_args.objective, model_args.model, OFFLINE_HINT)
        source = model_args.model
        if model_args.objective == "gaussian" and not model.config.given_text_at_step_zero:
            # A model saved before the option: from now on its given text is marked by step 0 (model.py)
            model.config.given_text_at_step_zero = True
            source += ", its given text now marked by step 0"
    elif model_args.objective == "gaussian":
        local = model_args.local_attention_layers if model_args.local_attention_init else 0
        model = build_gaussian_model(model_args.model_config, tokenizer, data_args.max_length, gauss_args.embedding_dim,
                                     model_args.config_overrides_dict(), local_attention_layers=local,
                                     self_conditioning=not gauss_args.no_self_conditioning)
        source = (f"fresh {model_args.model_config} config, {model.config.embedding_dim}-dimensional embeddings"
                  f"{'' if model.config.self_conditioning else ', no self-conditioning'}"
                  f"{', local-attention-initialised' if local else ''}")
    else:
        model = build_model(model_args.objective, model_args.model_config, tokenizer, data_args.max_length,
                            model_args.config_overrides_dict(), pre_layer_norm=model_args.pre_layer_norm,
                            sinusoidal_positions=model_args.sinusoidal_positions,
                            local_attention_init=model_args.local_attention_init,
                            local_attention_layers=model_args.local_attention_layers)
        source = (f"fresh {model_args.model_config}{' pre-layer-norm' if model_args.pre_layer_norm else ''}"
                  f"{' sinusoid-initialised' if model_args.sinusoidal_positions else ''}"
                  f"{' local-attention-initialised' if model_args.local_attention_init else ''} config")
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        raise RunError(f"the model's vocabulary ({model.get_input_embeddings().num_embeddings}) is smaller than "
                       f"the tokenizer's ({len(tokenizer)}); pass the model's own tokenizer with --tokenizer")
    try:
        check_length(data_args.max_length, model, source)
    except ValueError as err:
        raise RunError(str(err)) from None

    process = gaussian_process(model_args, diff_args, gauss_args) if model_args.objective == "gaussian" else None

    # ---- data -------------------------------------------------------------------------
    with training_args.main_process_first(desc="loading and tokenising the dataset"):
        raw = load_raw_datasets(data_args.dataset, data_args.dataset_config, data_args.data_dir,
                                data_args.extension_list(), data_args.validation_split_percentage, source=data_source)
        data = tokenize_datasets(raw, tokenizer, data_args.text_column, data_args.max_length,
                                 data_args.packing, data_args.preprocessing_num_workers)
    train_set, eval_set = data["train"], data["validation"]
    if data_args.max_train_samples is not None:
        train_set = train_set.select(range(min(data_args.max_train_samples, len(train_set))))
    if data_args.max_eval_samples is not None:
        eval_set = eval_set.select(range(min(data_args.max_eval_samples, len(eval_set))))
    eval_set = eval_set.sort("length")  # less padding per evaluation batch

    if is_main:
        if run_args.note:
            print(run_args.note)
        print(f"model: {source}, {model_args.objective} objective, {count_parameters(model) / 1e6:.2f}M parameters; "
              f"data: {len(train_set):,} training / {len(eval_set):,} held-out examples, max length {data_args.max_length}")

    # ---- trainer -----------------------------------------------------------------------
    common = dict(model=model, args=training_args, train_dataset=train_set, eval_dataset=eval_set,
                  processing_class=tokenizer)
    if model_args.objective == "masked":
        collator = VariableMaskingCollator(
            tokenizer, mask_levels=diff_args.mask_levels, rate_sampling=diff_args.rate_sampling,
            schedule=diff_args.schedule, per_example=diff_args.mask_rate_per == "example",
            prefix_len=diff_args.prefix_len, seed=training_args.seed + training_args.process_index,
            eos_padding_length=data_args.max_length if diff_args.eos_padding else None,
        )
        trainer = DiffusionTrainer(data_collator=collator, loss_weighting=diff_args.loss_weighting,
                                   eval_mask_levels=diff_args.eval_mask_levels, **common)
    elif model_args.objective == "gaussian":
        collator = GaussianCollator(tokenizer)
        training_args.remove_unused_columns = False  # the model's forward takes x_t, not input_ids
        trainer = GaussianTrainer(data_collator=collator, process=process,
                                  self_conditioning_rate=gauss_args.self_conditioning_rate,
                                  fixed_text_rate=gauss_args.fixed_text_rate, **common)
    else:
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
        trainer = LengthGroupedTrainer(data_collator=collator, **common)
    settings = {}  # the collator's settings; the causal objective has no collator of ours
    if model_args.objective == "masked":
        settings = dict(mask_levels=diff_args.mask_levels, rate_sampling=diff_args.rate_sampling,
                        schedule=diff_args.schedule, mask_rate_per=diff_args.mask_rate_per,
                        prefix_len=diff_args.prefix_len, eos_padding=diff_args.eos_padding,
                        loss_weighting=diff_args.loss_weighting)
    elif model_args.objective == "gaussian":
        settings = dict(schedule=process.schedule, diffusion_steps=process.num_steps,
                        fixed_text_rate=gauss_args.fixed_text_rate,
                        ema_decay=run_args.ema_decay if run_args.use_ema else None,
                        sample_lengths=length_quantiles(train_set["length"]))
    diffusion_config = DiffusionConfig(objective=model_args.objective, max_length=data_args.max_length,
                                       dataset=data_args.data_dir or data_args.dataset, trained_from=source,
                                       **settings)
    trainer.diffusion_config = diffusion_config  # written into every checkpoint as well
    ema = EMACallback(run_args.ema_decay) if run_args.use_ema else None
    if ema is not None:
        trainer.add_callback(ema)
    attach_samples(trainer, run_args, dashboard, lambda every: SamplesCallback(
        text_sampler(model_args.objective, tokenizer, data_args.max_length, diffusion_config, process,
                     gauss_args.sampler, gauss_args.ddim_steps), every=every, num_texts=run_args.num_sample_texts))
    before, train_result = guarded_train(trainer, collator, model_args, diff_args, run_args, training_args, resume_from)
    if stopped_from_dashboard(dashboard, trainer):
        return 0
    if ema is not None:  # the average is what is evaluated, saved and sampled from
        ema.copy_to(trainer.model)
    after = add_perplexity(trainer.evaluate(), "eval")

    final = save_final_model(trainer, output_dir,
                             dataclasses.replace(diffusion_config, global_step=trainer.state.global_step))
    if not is_main:
        return 0

    # train_tokens: tokens in one pass over the training split (models/bundle_model.py's "tokens seen")
    write_metrics(trainer, train_result, model_args.objective, source, count_parameters(model), eval_set,
                  before, after, output_dir, train_tokens=int(sum(train_set["length"])))
    note = {"masked": loss_note(diff_args.eos_padding, len(eval_set)),
            "gaussian": gaussian_loss_note(len(eval_set))}.get(model_args.objective)
    # Trainer.train() starts a fresh log history, so the evaluation before training is added back as step 0.
    history = ([{"step": 0, **before}] if before else []) + trainer.state.log_history
    plot_path = plot_loss_curves(history, os.path.join(output_dir, "loss_curves.png"), note)

    print()
    if model_args.objective == "masked":
        print(f"Held-out loss and masked-token accuracy per masking level ({len(eval_set)} validation examples):")
        print(level_table(before, after, diff_args.eval_mask_levels or diff_args.mask_levels))
        print(note)
    elif model_args.objective == "gaussian":
        print(f"Held-out loss (x0 MSE + rounding CE) and rounding accuracy per noise level t "
              f"({len(eval_set)} validation examples, {process.schedule} schedule, {process.num_steps} steps):")
        print(level_table(before, after, NOISE_LEVELS, tag="noise", name="noise t"))
        print(note)
    else:
        line = f"Held-out loss {after['eval_loss']:.3f}, perplexity {after['eval_perplexity']:.1f}"
        if before:
            line += f" (before training: {before['initial_loss']:.3f}, perplexity {before['initial_perplexity']:.1f})"
        print(line)
    print(f"\nfinal model: {final}\nmetrics:     {os.path.join(output_dir, 'metrics.json')}")
    if plot_path:
        print(f"loss curves: {plot_path}")
    return 0


def image_level_table(before: dict | None, after: dict, levels) -> str:
    """Held-out noise-prediction loss and x0 error per noise level t, before and after training."""
    lines = ["   noise t | loss before | loss after | change | x0 MSE before | x0 MSE after",
             "---------- | ----------- | ---------- | ------ | ------------- | ------------"]
    for level in levels:
        key = format_level(level)
        a_loss, a_mse = after[f"eval_loss_noise_{key}"], after[f"eval_x0_mse_noise_{key}"]
        b_loss = before.get(f"initial_loss_noise_{key}") if before else None
        b_mse = before.get(f"initial_x0_mse_noise_{key}") if before else None
        change = f"{a_loss - b_loss:+.3f}" if b_loss is not None else "-"
        lines.append(f"{key:>10} | {b_loss if b_loss is None else f'{b_loss:.4f}':>11} | {a_loss:10.4f} | {change:>6} | "
                     f"{b_mse if b_mse is None else f'{b_mse:.4f}':>13} | {a_mse:12.4f}")
    return "\n".join(lines).replace("None", "   -")


def run_image(argv: list[str], dashboard=None) -> int:
    """--objective image: a UNet or DiT denoiser on the digits (or any image dataset); docs/IMAGE_DIFFUSION.md."""
    from diffusion.image.captions import HELD_OUT_TEMPLATES, CaptionBank, caption, load_text_encoder
    from diffusion.image.data import ImageCollator, class_names, load_image_datasets, num_classes
    from diffusion.image.models import build_image_model
    from diffusion.image.sampling import ImageSamplingOptions, sample_images
    from diffusion.image.trainer import NOISE_LEVELS as IMAGE_LEVELS
    from diffusion.image.trainer import ImageTrainer
    from diffusion.viz.images import image_grid

    try:
        image_args, run_args, training_args = parse_image_train_args(argv)
    except ValueError as err:
        raise RunError(str(err)) from None
    if run_args.dashboard and dashboard is None:
        return open_dashboard(argv, training_args, run_image)
    output_dir = training_args.output_dir
    is_main = training_args.process_index == 0
    resume_from = open_output_dir(run_args, training_args)

    # ---- data: checked before any model is built -----------------------------------------
    data = load_image_datasets(image_args.dataset, image_args.image_column, image_args.label_column)
    train_set, eval_set = data["train"], data["validation"]
    if image_args.max_train_samples is not None:
        train_set = train_set.select(range(min(image_args.max_train_samples, len(train_set))))
    if image_args.max_eval_samples is not None:
        eval_set = eval_set.select(range(min(image_args.max_eval_samples, len(eval_set))))
    first = train_set[0]["image"]
    channels = 1 if first.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
    size = image_args.image_size
    if size is None:
        if first.width != first.height:
            raise RunError(f"the images of {image_args.dataset!r} are {first.width}x{first.height}, not square: "
                           f"give --image-size N to resize them to N x N")
        size = first.width
    classes = num_classes(data)
    names = class_names(data) if classes else None

    # ---- model ---------------------------------------------------------------------------
    bank = None
    if image_args.condition == "text":
        if not classes:
            raise RunError("--condition text makes captions from the labels: the data needs a --label-column")
        bank = CaptionBank(*load_text_encoder(image_args.text_encoder))
    schedule, steps = image_args.schedule, image_args.diffusion_steps
    if image_args.model is not None:
        model = load_model("image", image_args.model, " (an image checkpoint folder)")
        source = image_args.model
        built = (model.config.image_size, model.config.in_channels, model.config.num_classes)
        if built != (size, channels, 0 if bank is not None else classes):
            raise RunError(f"{image_args.model!r} was built for {built[0]}x{built[0]} images with {built[1]} channel(s) "
                           f"and {built[2]} classes; the data gives {size}x{size}, {channels} and {classes}"
                           f"{' (--image-size resizes them)' if built[0] != size else ''}")
        trained = load_diffusion_config(image_args.model)
        if trained is not None and trained.objective == "image":
            schedule, steps = trained.schedule or schedule, trained.diffusion_steps or steps
    else:
        # conditioned by captions: no label table, cross-attention to the caption's states
        text = {"cross_attention_dim": bank.dim} if bank is not None else {}
        try:
            model = build_image_model(image_args.model_type, size, channels, 0 if bank is not None else classes,
                                      image_args.overrides_dict(), **text)
        except ValueError as err:
            raise RunError(str(err)) from None
        source = f"fresh {image_args.model_type}" + (f", captions read by {image_args.text_encoder}" if bank else "")
    try:
        process = GaussianProcess(schedule, steps)
        process.ddim_steps(image_args.ddim_steps)
    except ValueError as err:
        raise RunError(str(err)) from None
    if is_main:
        print(f"model: {source}, image objective, {count_parameters(model) / 1e6:.2f}M parameters; data: "
              f"{len(train_set):,} training / {len(eval_set):,} held-out images of {size}x{size}x{channels}, "
              f"{classes or 'no'} classes; {schedule} schedule, {steps} steps")

    # ---- trainer -------------------------------------------------------------------------
    training_args.remove_unused_columns = False  # the model's forward takes x_t, not pixel_values
    collator = ImageCollator(size, channels)
    trainer = ImageTrainer(model=model, args=training_args, train_dataset=train_set, eval_dataset=eval_set,
                           data_collator=collator, process=process, cond_drop=image_args.cond_drop, captions=bank)
    diffusion_config = DiffusionConfig(objective="image", schedule=schedule, diffusion_steps=steps, image_size=size,
                                       channels=channels, class_names=names, cond_drop=image_args.cond_drop,
                                       condition=image_args.condition,
                                       text_encoder=image_args.text_encoder if bank is not None else None,
                                       ema_decay=run_args.ema_decay if run_args.use_ema else None,
                                       dataset=image_args.dataset, trained_from=source)
    trainer.diffusion_config = diffusion_config
    ema = EMACallback(run_args.ema_decay) if run_args.use_ema else None
    if ema is not None:
        trainer.add_callback(ema)
    options = ImageSamplingOptions(sampler=image_args.sampler, ddim_steps=image_args.ddim_steps,
                                   guidance=image_args.guidance if classes else 0.0)

    def grid(model, per_row: int = 10):
        """Samples of every class (per_row of each; 4 rows unconditionally), labelled: the training grids and the last."""
        labels = torch.arange(classes).repeat_interleave(per_row) if classes else None
        texts = [caption(HELD_OUT_TEMPLATES[0], int(y)) for y in labels] if bank is not None else None
        result = sample_images(model, process, labels, options, num_samples=None if classes else 4 * per_row,
                               seed=training_args.seed, captions=texts, bank=bank)
        rows = [f'"{t}"' for t in texts[::per_row]] if texts else names  # a held-out template: never seen in training
        return image_grid(result.images, per_row, scale=max(1, 64 // size), row_labels=rows,
                          title=f"{options.describe(process)}, step {trainer.state.global_step}")

    # one sample of each class, at every evaluation (or every --sample-every steps)
    attach_samples(trainer, run_args, dashboard,
                   lambda every: ImageSamplesCallback(lambda model: grid(model, per_row=1), every=every))
    if dashboard is not None:
        dashboard.y_label = "noise-prediction MSE (per pixel)"
    before, train_result = guarded_train(trainer, collator, image_args, image_args, run_args, training_args, resume_from)
    if stopped_from_dashboard(dashboard, trainer):
        return 0
    if ema is not None:
        ema.copy_to(trainer.model)
    after = trainer.evaluate()
    final = save_final_model(trainer, output_dir,
                             dataclasses.replace(diffusion_config, global_step=trainer.state.global_step))
    if not is_main:
        return 0
    write_metrics(trainer, train_result, "image", source, count_parameters(model), eval_set, before, after, output_dir)
    what = "captions" if bank is not None else "labels"
    note = (f"Training loss: the noise-prediction MSE of this run's batches ({image_args.cond_drop:.0%} of their {what} "
            f"dropped); held-out: the same on {len(eval_set):,} validation images with fixed noise and their true {what}.")
    history = ([{"step": 0, **before}] if before else []) + trainer.state.log_history
    plot_path = plot_loss_curves(history, os.path.join(output_dir, "loss_curves.png"), note,
                                 y_label="noise-prediction MSE (per pixel)", held_out_name="validation images")

    # ---- the sample grid: ten of every class (or 4 rows unconditionally) ------------------
    grid_path = os.path.join(output_dir, "samples.png")
    grid(trainer.model).save(grid_path)

    print()
    print(f"Held-out noise-prediction loss and x0 error per noise level t ({len(eval_set)} validation images, "
          f"{schedule} schedule, {steps} steps):")
    print(image_level_table(before, after, IMAGE_LEVELS))
    print(note)
    print(f"\nfinal model: {final}\nmetrics:     {os.path.join(output_dir, 'metrics.json')}")
    if plot_path:
        print(f"loss curves: {plot_path}")
    print(f"samples:     {grid_path} ({options.describe(process)})")
    return 0


def sample_every(run_args, dashboard) -> int | None:
    """--sample-every, or with the dashboard (and no --sample-every) every DASHBOARD_SAMPLE_EVERY steps."""
    if run_args.sample_every is None and dashboard is not None:
        return DASHBOARD_SAMPLE_EVERY
    return run_args.sample_every


def evaluate_and_train(trainer, collator, model_args, diff_args, training_args, output_dir: str, resume_from):
    """The initial evaluation (or its stored result, when resuming), then training. -> (before, TrainOutput)."""
    is_main = training_args.process_index == 0
    initial_path = os.path.join(output_dir, "initial_metrics.json")
    before = None
    if resume_from is not None:
        if model_args.objective == "masked" and not load_collator_state(collator, resume_from, training_args.process_index):
            print(f"warning: {resume_from} has no collator state; masks after resuming will differ", file=sys.stderr)
        if os.path.exists(initial_path):
            with open(initial_path) as f:
                before = json.load(f)
        if is_main:
            print(f"resuming from {resume_from}")
    elif diff_args.eval_before_training:
        before = trainer.evaluate(metric_key_prefix="initial")
        if model_args.objective == "causal":
            before = add_perplexity(before, "initial")
        if is_main:
            os.makedirs(output_dir, exist_ok=True)
            with open(initial_path, "w") as f:
                json.dump(before, f, indent=2)
    return before, trainer.train(resume_from_checkpoint=resume_from)


def add_perplexity(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """For the causal objective, exp(loss) is the perplexity people quote."""
    if f"{prefix}_loss" in metrics and f"{prefix}_acc" not in metrics:
        metrics[f"{prefix}_perplexity"] = round(float(torch.exp(torch.tensor(metrics[f"{prefix}_loss"]))), 2)
    return metrics


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv, errors=(RunError, DataError, ModelLoadError, DashboardError),
                    interrupted="the same command with --resume continues from the newest complete checkpoint "
                                "in --output_dir (a checkpoint cut short by the interrupt is never taken)")


if __name__ == "__main__":
    sys.exit(main())
