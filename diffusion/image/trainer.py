"""``ImageTrainer``: transformers' Trainer with the DDPM loss on images, logged per noise level.

One training step (Ho et al. 2020, in this project's notation, diffusion/gaussian/process.py):

    x_0   = pixels in [-1, 1]                      (B, C, H, W)
    k     ~ U{1..N} per example,  t = k / N         the noise level
    x_k   = sqrt(alpha_bar[k]) x_0 + sqrt(1 - alpha_bar[k]) eps
    y     = the label, replaced by the null label with probability --cond-drop (0.1)
    loss  = mean of (model(x_k, k, y) - eps)^2       epsilon-prediction, DDPM's "simple" loss

The same process, with the same code, noises token embeddings in diffusion/gaussian/trainer.py;
only the shape of x_0 and what the model predicts (x_0 there, epsilon here) differ. Dropping the
label on a tenth of the examples trains one network both conditionally and unconditionally, which
is what classifier-free guidance needs at sampling time (Ho & Salimans 2022).

Logging: ``loss_noise_<t>`` for ten buckets of t, like the text objectives. Evaluation reports
the held-out loss at t = 0.1, 0.2, ..., 1.0 (fixed noise, the true labels) and ``x0_mse``: the
squared error of the x_0 recovered from the predicted noise, the pixels a sample would end near.
"""

from __future__ import annotations

import random

import torch
from tqdm.auto import tqdm

from diffusion.gaussian.process import GaussianProcess
from diffusion.image.captions import NULL_CAPTION, TRAIN_TEMPLATES, caption, training_captions
from diffusion.masked.levels import DEFAULT_MASK_LEVELS, format_level
from diffusion.training import LengthGroupedTrainer, NoiseLevelMeter, process_batches, seed_level_noise

NOISE_LEVELS = DEFAULT_MASK_LEVELS  # t = 0.1 ... 1.0


def drop_labels(labels: torch.Tensor, null_label: int, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) labels with each one replaced by ``null_label`` with probability ``rate`` (label dropout)."""
    drop = torch.rand(labels.shape, generator=generator).to(labels.device) < rate
    return torch.where(drop, torch.full_like(labels, null_label), labels)


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


class ImageTrainer(LengthGroupedTrainer):
    """Trainer for ``--objective image``; ``data_collator`` is a diffusion.image.data.ImageCollator.

    LengthGroupedTrainer for what every objective's runs share (images have no lengths to group):
    the record of every call that trained the model, and the diffusion config in each checkpoint.
    """

    def __init__(self, *args, process: GaussianProcess, cond_drop: float = 0.1, eval_levels=NOISE_LEVELS,
                 captions=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.process = process
        self.cond_drop = cond_drop
        self.eval_levels = [float(level) for level in eval_levels]
        self.meter = NoiseLevelMeter(NOISE_LEVELS)
        self.captions = captions  # a diffusion.image.captions.CaptionBank for --condition text, else None
        self.caption_rng = random.Random(self.args.seed + self.args.process_index)

    def text_context(self, labels: torch.Tensor, drop: bool = True, rng: random.Random | None = None):
        """(states (B, L, D), mask (B, L)) of a caption made from each label (a random training template),
        the null caption for a --cond-drop share of them."""
        rng = rng or self.caption_rng
        texts = training_captions(labels.tolist(), rng)
        if drop:
            texts = [NULL_CAPTION if rng.random() < self.cond_drop else text for text in texts]
        return self.captions.encode(texts, labels.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        x0 = inputs["pixel_values"]
        batch = x0.shape[0]
        steps = torch.randint(1, self.process.num_steps + 1, (batch,), device=x0.device)  # (B,)
        noise = torch.randn_like(x0)
        x_t = self.process.q_sample(x0, steps, noise)
        labels = inputs.get("labels")
        core = _unwrap(model)
        context = ()
        if self.captions is not None:  # text-conditioned: the label only chooses the caption
            context, labels = self.text_context(labels), None
        elif labels is not None and core.config.num_classes > 0:
            labels = drop_labels(labels, core.config.null_label, self.cond_drop)
        else:
            labels = None
        eps_hat = model(x_t, steps, labels, *context)
        per_example = (eps_hat.float() - noise.float()).pow(2).flatten(1).mean(dim=1)  # (B,)
        self.meter.add(steps.double() / self.process.num_steps, per_example)
        loss = per_example.mean()
        return (loss, {"eps_hat": eps_hat}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: the per-bucket means of this logging window (collective)
            logs.update(self.meter.pop(lambda t: self.accelerator.reduce(t, reduction="sum")))
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        results = evaluate_per_noise_level(
            self.model, self.process, eval_dataset if eval_dataset is not None else self.eval_dataset,
            self.data_collator, self.eval_levels, batch_size=self.args.per_device_eval_batch_size, captions=self.captions,
            seed=self.args.seed, rank=self.args.process_index, world_size=self.args.world_size,
            reduce=lambda t: self.accelerator.reduce(t, reduction="sum"),
            show_progress=self.is_world_process_zero() and not self.args.disable_tqdm)
        metrics = image_level_metrics(results, metric_key_prefix)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


@torch.no_grad()
def evaluate_per_noise_level(model, process: GaussianProcess, dataset, collator, levels, batch_size: int = 128,
                             seed: int = 0, rank: int = 0, world_size: int = 1, reduce=None,
                             show_progress: bool = False, captions=None) -> dict[float, dict[str, float]]:
    """Held-out epsilon MSE and x0 MSE at each noise level t (step k = round(t N), at least 1).

    The noise of batch b at level j comes from a generator seeded with (seed, b, j), so the numbers
    do not depend on the batch order or the number of processes. Labels are the true ones.
    Returns {t: {"loss", "x0_mse", "images"}}.
    """
    model = _unwrap(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    stats = torch.zeros(len(levels), 3, dtype=torch.float64, device=device)  # eps sq. error, x0 sq. error, images
    mine = process_batches(len(dataset), batch_size, rank, world_size)
    bar = tqdm(total=len(mine) * len(levels), desc="Evaluating per noise level", disable=not show_progress,
               leave=False)
    generator = torch.Generator()
    for b in mine:
        rows = dataset[b * batch_size:(b + 1) * batch_size]
        batch = collator([dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)])
        x0 = batch["pixel_values"].to(device)
        labels = batch["labels"].to(device) if "labels" in batch and model.config.num_classes > 0 else None
        context = ()
        if captions is not None:  # text-conditioned: the first training template of each true label
            context = captions.encode([caption(TRAIN_TEMPLATES[0], int(y)) for y in batch["labels"]], device)
        for j, level in enumerate(levels):
            seed_level_noise(generator, seed, b, j)
            k = max(1, round(level * process.num_steps))
            steps = torch.full((x0.shape[0],), k, dtype=torch.long, device=device)
            noise = torch.randn(x0.shape, generator=generator).to(device)
            x_t = process.q_sample(x0, steps, noise)
            eps_hat = model(x_t, steps, labels, *context)
            x0_hat = process.x0_from_eps(x_t, steps, eps_hat).clamp(-1, 1)
            stats[j, 0] += (eps_hat - noise).pow(2).flatten(1).mean(1).sum().double()
            stats[j, 1] += (x0_hat - x0).pow(2).flatten(1).mean(1).sum().double()
            stats[j, 2] += x0.shape[0]
            bar.update(1)
    bar.close()
    if reduce is not None:
        stats = reduce(stats)
    model.train(was_training)
    stats = stats.cpu()
    return {float(level): {"loss": float(stats[j, 0] / stats[j, 2]) if stats[j, 2] else float("nan"),
                           "x0_mse": float(stats[j, 1] / stats[j, 2]) if stats[j, 2] else float("nan"),
                           "images": int(stats[j, 2])}
            for j, level in enumerate(levels)}


def image_level_metrics(results: dict[float, dict[str, float]], prefix: str = "eval") -> dict[str, float]:
    """Flat metrics: eval_loss_noise_0.5, eval_x0_mse_noise_0.5, ..., eval_loss (the mean over levels)."""
    metrics = {}
    for level, r in results.items():
        key = format_level(level)
        metrics[f"{prefix}_loss_noise_{key}"] = round(r["loss"], 5)
        metrics[f"{prefix}_x0_mse_noise_{key}"] = round(r["x0_mse"], 5)
    metrics[f"{prefix}_loss"] = round(sum(r["loss"] for r in results.values()) / len(results), 5)
    return metrics
