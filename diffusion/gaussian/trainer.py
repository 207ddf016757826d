"""``GaussianTrainer``: transformers' Trainer with the loss of Gaussian text diffusion, logged per noise level.

One training step (Diffusion-LM, Li et al. 2022, in this project's notation, diffusion/gaussian/process.py):

    x_0   = E[ids]                              (B, L, d)  the model's own embedding table
    k     ~ U{1..N} per example,  t = k / N     noise level
    x_k   = sqrt(alpha_bar[k]) x_0 + sqrt(1 - alpha_bar[k]) eps
    x0_hat = model(x_k, k, attention_mask, self_condition)
    loss  = mean over real tokens of  ||x0_hat - x_0||^2 / d  +  CE(x0_hat . E^T, ids)

The second term is Diffusion-LM's rounding cross-entropy, on the *predicted* x_0: the denoiser
must land near the right row of the table, and the table must keep its rows apart (with the
MSE alone, shrinking every embedding towards one point is a minimum).

Padding is handled explicitly: padded positions are not attended (``attention_mask``), not
scored, and never diffused as tokens.  The length of a generated text is chosen when sampling
(from the training lengths, diffusion/gaussian/sampling.py), and the model learns to put ``</s>``
at the last position it is given.  The alternative of Diffusion-LM, fixed-width rows padded with
a trained padding token, is what its users report as models that emit only padding: the padding
token is the most frequent target by far, and at high noise predicting it everywhere is the
cheapest x_0 (see tests/test_gaussian_training.py for the check that padding is never scored).

Self-conditioning (Chen et al. 2022, "Analog Bits"): on a random half of the training batches a
first pass without gradient estimates x_0, and the second pass gets that estimate as an extra
input; on the other half the extra input is zeros.  Sampling always feeds the previous estimate.

Logging: ``loss_noise_<t>`` for ten buckets of t (0.1 = t in (0, 0.1], ... 1.0), like the masked
trainer's ``loss_mask_<level>``.  Evaluation reports, at ten fixed noise levels t = 0.1 ... 1.0,
the held-out loss and the *rounding accuracy*: the argmax token of the predicted x_0 against the
real one, at every real position (comparable with the masked model's accuracy per masking level).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffusion.gaussian.process import GaussianProcess
from diffusion.masked.levels import DEFAULT_MASK_LEVELS, format_level
from diffusion.training import LengthGroupedTrainer, NoiseLevelMeter, process_batches, seed_level_noise

NOISE_LEVELS = DEFAULT_MASK_LEVELS  # t = 0.1 ... 1.0: the buckets logged and the levels evaluated


class GaussianCollator:
    """Right-pads ``input_ids`` to the longest row of the batch: ``input_ids`` (B, L), ``attention_mask`` (B, L).

    Padding ids are never seen by the model's loss (the mask excludes them); the noise and the
    steps are drawn by the trainer, on the model's device.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pad_token_id = tokenizer.pad_token_id

    def __call__(self, examples) -> dict[str, torch.Tensor]:
        rows = [list(example["input_ids"]) for example in examples]
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, :len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def _unwrap(model):
    while hasattr(model, "module"):  # DDP / accelerate wrappers
        model = model.module
    return model


def fixed_text(attention_mask: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, L) bool: the positions of each row kept clean, so that the model learns to write around given text.

    A share ``rate`` of the rows is conditioned: its ``<s>`` and last real position (``</s>``)
    are kept, plus either a prefix of 0 .. n/2 tokens (half of those rows: ``--prefix``) or a
    random share U(0.1, 0.9) of the tokens (the other half: ``--text`` templates).  DiffuSeq's
    partial noising (Gong et al. 2023) keeps its source sentence clean the same way.
    """
    real = attention_mask.bool()
    batch, length = real.shape
    device = real.device
    draw = lambda *shape: torch.rand(*shape, generator=generator).to(device)  # noqa: E731
    lengths = real.sum(dim=1)  # (B,)
    position = torch.arange(length, device=device)[None]  # (1, L)
    conditioned = draw(batch) < rate  # (B,)
    prefix_mode = draw(batch) < 0.5  # (B,)
    prefix_len = (draw(batch) * (lengths // 2 + 1).float()).long()  # (B,) 0 .. n/2 text tokens
    prefix = position <= prefix_len[:, None]  # <s> and the prefix
    scattered = draw(batch, length) < (0.1 + 0.8 * draw(batch))[:, None]
    ends = (position == 0) | (position == (lengths - 1)[:, None])
    chosen = torch.where(prefix_mode[:, None], prefix, scattered) | ends
    return chosen & conditioned[:, None] & real


def denoise_terms(model, process: GaussianProcess, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  steps: torch.Tensor, noise: torch.Tensor, self_condition: bool,
                  fixed: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One noising and denoising of a batch, and its loss terms per token.

    input_ids, attention_mask (B, L); steps (B,) in 1..N; noise (B, L, d); fixed (B, L) bool:
    positions kept at their clean embedding (the given text; sampling.py holds them the same way).
    ``model`` is called
    (it may be DDP-wrapped); its embedding table and rounding are read from the unwrapped module.
    Returns ``mse`` (B, L) = ||x0_hat - x_0||^2 / d, ``ce`` (B, L) the rounding cross-entropy,
    ``correct`` (B, L) bool (argmax of the rounding = the real token), ``x0_hat`` (B, L, d).
    """
    core = _unwrap(model)
    x0 = core.embed(input_ids)  # (B, L, d)
    x_t = process.q_sample(x0, steps, noise)
    keep = None if fixed is None else fixed[..., None]  # (B, L, 1)
    if keep is not None:
        x_t = torch.where(keep, x0, x_t)
    steps = core.position_steps(steps, fixed)  # (B,), or (B, L) with 0 at the fixed text
    estimate = None
    if self_condition and core.config.self_conditioning:
        with torch.no_grad():  # the unwrapped module: no DDP collective in a pass that some processes skip
            estimate = core(x_t, steps, attention_mask, None)
            if keep is not None:
                estimate = torch.where(keep, x0, estimate)
    x0_hat = model(x_t, steps, attention_mask, estimate)  # (B, L, d)
    logits = core.rounding_logits(x0_hat).float()  # (B, L, V)
    ce = F.cross_entropy(logits.transpose(1, 2), input_ids, reduction="none")  # (B, L)
    mse = (x0_hat.float() - x0.float()).pow(2).mean(dim=-1)  # (B, L)
    return {"mse": mse, "ce": ce, "correct": logits.argmax(dim=-1) == input_ids, "x0_hat": x0_hat}


class GaussianTrainer(LengthGroupedTrainer):
    """Trainer for the Gaussian objective; ``data_collator`` is a :class:`GaussianCollator`."""

    def __init__(self, *args, process: GaussianProcess, self_conditioning_rate: float = 0.5,
                 fixed_text_rate: float = 0.5, eval_levels=NOISE_LEVELS, **kwargs):
        super().__init__(*args, **kwargs)
        self.process = process
        self.self_conditioning_rate = self_conditioning_rate
        self.fixed_text_rate = fixed_text_rate
        self.eval_levels = [float(level) for level in eval_levels]
        self.loss_is_scaled_for_ga = False  # compute_loss returns a per-micro-batch mean
        self.meter = NoiseLevelMeter(NOISE_LEVELS)
        self._sorted_eval_dataset = None

    # ------------------------------------------------------------------ training
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        batch, length = ids.shape
        d = _unwrap(model).config.embedding_dim
        steps = torch.randint(1, self.process.num_steps + 1, (batch,), device=ids.device)  # (B,)
        noise = torch.randn(batch, length, d, device=ids.device)
        self_condition = bool(torch.rand(()) < self.self_conditioning_rate)
        fixed = fixed_text(mask, self.fixed_text_rate)  # (B, L) bool: kept clean, not scored
        terms = denoise_terms(model, self.process, ids, mask, steps, noise, self_condition, fixed)
        real = mask.bool() & ~fixed  # (B, L): padding and fixed text are never scored
        per_token = (terms["mse"] + terms["ce"])[real]  # (N,)
        loss = per_token.mean()
        t = (steps.double() / self.process.num_steps)[:, None].expand(batch, length)[real]  # (N,) each token's t
        self.meter.add(t, per_token)  # the loss per bucket of t, for the logs
        return (loss, {"x0_hat": terms["x0_hat"]}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: the per-bucket means of this logging window (collective)
            logs.update(self.meter.pop(lambda t: self.accelerator.reduce(t, reduction="sum")))
        super().log(logs, start_time)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        if eval_dataset is None:
            if self._sorted_eval_dataset is None:
                dataset = self.eval_dataset
                self._sorted_eval_dataset = dataset.sort("length") if "length" in dataset.column_names else dataset
            eval_dataset = self._sorted_eval_dataset
        results = evaluate_per_noise_level(
            self.model, self.process, eval_dataset, self.data_collator, self.eval_levels,
            batch_size=self.args.per_device_eval_batch_size, seed=self.args.seed,
            rank=self.args.process_index, world_size=self.args.world_size,
            reduce=lambda t: self.accelerator.reduce(t, reduction="sum"),
            show_progress=self.is_world_process_zero() and not self.args.disable_tqdm)
        metrics = noise_level_metrics(results, metric_key_prefix)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


@torch.no_grad()
def evaluate_per_noise_level(model, process: GaussianProcess, dataset, collator, levels, batch_size: int = 64,
                             seed: int = 0, rank: int = 0, world_size: int = 1, reduce=None,
                             show_progress: bool = False) -> dict[float, dict[str, float]]:
    """Held-out loss, x0 MSE and rounding accuracy at each noise level t (step k = round(t N), at least 1).

    The noise of batch b at level j comes from a generator seeded with (seed, b, j), so numbers
    do not depend on the batch order or the number of processes.  Self-conditioning is used the
    way sampling uses it: a first pass's estimate is fed to the second.
    Returns {t: {"loss", "mse", "accuracy", "tokens"}}.
    """
    model = _unwrap(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    stats = torch.zeros(len(levels), 4, dtype=torch.float64, device=device)  # loss, mse, correct, count
    mine = process_batches(len(dataset), batch_size, rank, world_size)
    bar = tqdm(total=len(mine) * len(levels), desc="Evaluating per noise level", disable=not show_progress,
               leave=False)
    generator = torch.Generator()
    for b in mine:
        batch = collator([{"input_ids": ids} for ids in dataset[b * batch_size:(b + 1) * batch_size]["input_ids"]])
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        real = mask.bool()
        for j, level in enumerate(levels):
            seed_level_noise(generator, seed, b, j)
            k = max(1, round(level * process.num_steps))
            steps = torch.full((ids.shape[0],), k, dtype=torch.long, device=device)
            noise = torch.randn(*ids.shape, model.config.embedding_dim, generator=generator).to(device)
            terms = denoise_terms(model, process, ids, mask, steps, noise, self_condition=True)
            stats[j, 0] += (terms["mse"] + terms["ce"])[real].sum().double()
            stats[j, 1] += terms["mse"][real].sum().double()
            stats[j, 2] += terms["correct"][real].sum()
            stats[j, 3] += real.sum()
            bar.update(1)
    bar.close()
    if reduce is not None:
        stats = reduce(stats)
    model.train(was_training)
    stats = stats.cpu()
    return {float(level): {"loss": float(stats[j, 0] / stats[j, 3]) if stats[j, 3] else float("nan"),
                           "mse": float(stats[j, 1] / stats[j, 3]) if stats[j, 3] else float("nan"),
                           "accuracy": float(stats[j, 2] / stats[j, 3]) if stats[j, 3] else float("nan"),
                           "tokens": int(stats[j, 3])}
            for j, level in enumerate(levels)}


@torch.no_grad()
def evaluate_given_text(model, process: GaussianProcess, dataset, collator, shares, batch_size: int = 64,
                        seed: int = 0) -> dict[float, dict[str, float]]:
    """Rounding accuracy of hidden tokens when the rest of the row is given: the masked model's test.

    At each share m, every token between ``<s>`` and ``</s>`` is hidden with probability m (at
    least one per row) and starts from pure noise at k = N; the others, and both ends, are given
    clean, as a ``--text`` template gives them.  Two self-conditioned passes, as in
    evaluate_per_noise_level.  A masked LM's accuracy at mask level m answers the same question
    (models/masked-base/README.md): how well does the model read the words around a gap?
    Returns {m: {"accuracy", "tokens"}}.
    """
    model = _unwrap(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    stats = torch.zeros(len(shares), 2, dtype=torch.float64)  # correct, count
    generator = torch.Generator()
    steps_n = process.num_steps
    for b in range((len(dataset) + batch_size - 1) // batch_size):
        batch = collator([{"input_ids": ids} for ids in dataset[b * batch_size:(b + 1) * batch_size]["input_ids"]])
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        lengths = mask.sum(dim=1)  # (B,)
        position = torch.arange(ids.shape[1], device=device)[None]  # (1, L)
        inner = (position > 0) & (position < (lengths - 1)[:, None])  # (B, L): between <s> and </s>
        for j, share in enumerate(shares):
            seed_level_noise(generator, seed, b, j)
            draw = torch.rand(ids.shape, generator=generator).to(device)
            hidden = (draw < share) & inner
            # at least one hidden token per row: the one with the lowest draw
            first = torch.where(inner, draw, torch.full_like(draw, 2.0)).argmin(dim=1)  # (B,)
            hidden[torch.arange(ids.shape[0], device=device), first] |= inner.any(dim=1)
            noise = torch.randn(*ids.shape, model.config.embedding_dim, generator=generator).to(device)
            steps = torch.full((ids.shape[0],), steps_n, dtype=torch.long, device=device)
            terms = denoise_terms(model, process, ids, mask, steps, noise, self_condition=True,
                                  fixed=mask.bool() & ~hidden)
            stats[j, 0] += terms["correct"][hidden].sum().item()
            stats[j, 1] += hidden.sum().item()
    model.train(was_training)
    return {float(share): {"accuracy": float(stats[j, 0] / stats[j, 1]) if stats[j, 1] else float("nan"),
                           "tokens": int(stats[j, 1])}
            for j, share in enumerate(shares)}


def noise_level_metrics(results: dict[float, dict[str, float]], prefix: str = "eval") -> dict[str, float]:
    """Flat metrics: eval_loss_noise_0.5, eval_acc_noise_0.5, eval_mse_noise_0.5, ..., eval_loss / eval_acc (means)."""
    metrics = {}
    for level, r in results.items():
        key = format_level(level)
        metrics[f"{prefix}_loss_noise_{key}"] = round(r["loss"], 4)
        metrics[f"{prefix}_acc_noise_{key}"] = round(r["accuracy"], 4)
        metrics[f"{prefix}_mse_noise_{key}"] = round(r["mse"], 4)
    metrics[f"{prefix}_loss"] = round(sum(r["loss"] for r in results.values()) / len(results), 4)
    metrics[f"{prefix}_acc"] = round(sum(r["accuracy"] for r in results.values()) / len(results), 4)
    return metrics
