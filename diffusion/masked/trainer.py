"""``DiffusionTrainer``: transformers' Trainer with the masked-diffusion loss, logged per level.

What it adds to ``Trainer`` (everything else, DDP/accelerate, checkpoints, schedulers,
TensorBoard, is the stock Trainer):

* ``compute_loss`` computes the cross-entropy at masked positions only (the head's vocabulary
  projection runs on those positions alone, see :func:`logits_only_at`), optionally weighted by
  the ELBO weight of each example's noise level, and accumulates the loss of every masking
  level; ``log`` turns those sums into scalars ``loss_mask_0.1`` ... ``loss_mask_1.0``.
* ``evaluate`` reports held-out loss and masked-token accuracy at each fixed level, with masks
  drawn from generators seeded per batch and level, so numbers are comparable across runs,
  batch orders and numbers of processes (:func:`evaluate_per_level`).
* the collator's random generator is saved in every checkpoint, so ``--resume`` continues with
  exactly the masks the uninterrupted run would have drawn.

The trainer is handed its collator (``DiffusionTrainer(data_collator=VariableMaskingCollator(...))``,
as train.py does) and never imports it: :class:`MaskingCollator` lists what it relies on.
"""

from __future__ import annotations

import math
import os
from typing import Protocol

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffusion.masked.levels import format_level, level_index
from diffusion.masked.logits import masked_logits
from diffusion.training import LengthGroupedTrainer

COLLATOR_RNG_FILE = "collator_rng_{rank}.pt"
# What DiffusionTrainer uses of its collator (data_collator.py's VariableMaskingCollator has all of it).
COLLATOR_API = ("mask_levels", "eos_padding_length", "tokenizer", "consumed_state", "mark_consumed", "restore_state",
                "fixed_level")


class MaskingCollator(Protocol):
    """The collator contract of the masked trainer (see data_collator.py for the one the toolkit uses).

    ``__call__(examples)`` returns ``input_ids``, ``attention_mask``, ``labels`` (-100 where not
    masked), ``mask_rate``, ``elbo_weight`` and ``num_maskable``; ``mask_levels`` are the sorted
    levels that training logs; ``fixed_level(level, eos_padding)`` is a collator that masks at
    exactly that level (evaluation); ``consumed_state``, ``mark_consumed()`` and
    ``restore_state(state)`` carry its generator across ``--resume``.
    """

    mask_levels: tuple[float, ...]
    eos_padding_length: int | None
    tokenizer: object
    generator: torch.Generator
    consumed_state: torch.Tensor

    def __call__(self, examples) -> dict[str, torch.Tensor]: ...
    def mark_consumed(self) -> None: ...
    def restore_state(self, state: torch.Tensor) -> None: ...
    def fixed_level(self, level: float, eos_padding: bool = False) -> MaskingCollator: ...


class DiffusionTrainer(LengthGroupedTrainer):
    """Trainer for the masked objective. ``data_collator`` must be a :class:`MaskingCollator`."""

    def __init__(self, *args, loss_weighting: str = "none", eval_mask_levels=None,
                 max_eval_samples: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        missing = [name for name in COLLATOR_API if not hasattr(self.data_collator, name)]
        if missing:
            raise TypeError(f"DiffusionTrainer needs a masking collator (data_collator.py's VariableMaskingCollator); "
                            f"{type(self.data_collator).__name__} has no {', '.join(missing)}")
        self.loss_weighting = loss_weighting
        self.eval_mask_levels = list(eval_mask_levels or self.data_collator.mask_levels)
        self.max_eval_samples = max_eval_samples
        # compute_loss returns a per-micro-batch mean; let Trainer divide by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        n_levels = len(self.data_collator.mask_levels)
        self._level_sums = torch.zeros(2, n_levels, dtype=torch.float64)  # [loss sum, token count]
        self._sorted_eval_dataset = None

    # ------------------------------------------------------------------ training
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.data_collator.mark_consumed()  # for the collator state saved in checkpoints
        labels = inputs["labels"]  # (B, L), -100 where not masked
        masked = labels != -100  # (B, L)
        logits = masked_logits(model, inputs["input_ids"], inputs["attention_mask"], masked)  # (N, V)
        targets = labels[masked]  # (N,)
        token_loss = F.cross_entropy(logits.float(), targets, reduction="none")  # (N,)
        row = masked.nonzero()[:, 0]  # (N,) which example each masked token belongs to

        if token_loss.numel() == 0:  # nothing maskable in this batch: a zero that keeps the graph
            loss = logits.sum() * 0.0
        elif self.loss_weighting == "elbo":
            # MDLM / LLaDA: w(t) * sum_{masked} CE / (number of maskable tokens), averaged over
            # examples. With w = 1/t and E[#masked] = t * n this has the scale of a plain mean CE.
            batch = labels.shape[0]
            per_example = torch.zeros(batch, dtype=token_loss.dtype, device=token_loss.device)
            per_example.index_add_(0, row, token_loss)
            n_maskable = inputs["num_maskable"].to(token_loss.dtype).clamp_min(1)
            loss = (inputs["elbo_weight"].to(token_loss.dtype) * per_example / n_maskable).mean()
        else:
            loss = token_loss.mean()

        # Per-level bookkeeping for logging: mean CE of the masked tokens of each level.
        with torch.no_grad():
            level = level_index(inputs["mask_rate"].double(), self.data_collator.mask_levels)[row]  # (N,)
            sums = torch.zeros_like(self._level_sums, device=token_loss.device)
            sums[0].index_add_(0, level, token_loss.detach().double())
            sums[1].index_add_(0, level, torch.ones_like(level, dtype=torch.float64))
            self._level_sums = self._level_sums.to(token_loss.device) + sums
        return (loss, {"logits": logits}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the per-level means of this logging window
            # Collective: Trainer calls log() on every process at a training log, so this is safe.
            sums = self.accelerator.reduce(self._level_sums.clone(), reduction="sum").cpu()
            for j, level in enumerate(self.data_collator.mask_levels):
                if sums[1, j] > 0:
                    logs[f"loss_mask_{format_level(level)}"] = round(float(sums[0, j] / sums[1, j]), 4)
            self._level_sums.zero_()
        super().log(logs, start_time)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self._eval_subset()
        results = evaluate_per_level(
            self.model, dataset, self.data_collator, self.eval_mask_levels,
            batch_size=self.args.per_device_eval_batch_size, seed=self.args.seed,
            rank=self.args.process_index, world_size=self.args.world_size,
            reduce=lambda t: self.accelerator.reduce(t, reduction="sum"),
            show_progress=self.is_world_process_zero() and not self.args.disable_tqdm,
        )
        metrics = per_level_metrics(results, metric_key_prefix)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _eval_subset(self):
        """The validation set, cut to --max-eval-samples and sorted by length (once)."""
        if self._sorted_eval_dataset is None:
            dataset = self.eval_dataset
            if self.max_eval_samples is not None and len(dataset) > self.max_eval_samples:
                dataset = dataset.select(range(self.max_eval_samples))
            # Sorting keeps the padding per batch small: unsorted batches pad to the longest
            # sequence and made evaluation several times slower (measured on 2 CPU cores).
            self._sorted_eval_dataset = dataset.sort("length") if "length" in dataset.column_names else dataset
        return self._sorted_eval_dataset

    # ------------------------------------------------------------------ checkpoints
    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        path = os.path.join(output_dir, COLLATOR_RNG_FILE.format(rank=self.args.process_index))
        torch.save(self.data_collator.consumed_state, path)


def load_collator_state(collator: MaskingCollator, checkpoint_dir: str, rank: int) -> bool:
    """Restore the collator's generator from a checkpoint; False if the checkpoint has none."""
    path = os.path.join(checkpoint_dir, COLLATOR_RNG_FILE.format(rank=rank))
    if not os.path.exists(path):
        return False
    collator.restore_state(torch.load(path, weights_only=True))
    return True


@torch.no_grad()
def evaluate_per_level(model, dataset, collator: MaskingCollator, levels, batch_size: int = 64,
                       seed: int = 0, rank: int = 0, world_size: int = 1, reduce=None,
                       show_progress: bool = False) -> dict[float, dict[str, float]]:
    """Held-out loss and masked-token accuracy at each masking level.

    dataset: rows with ``input_ids``; batches are consecutive rows (sort by length first).
    Batch b is evaluated by process ``b % world_size``; its masks at level j come from a
    generator seeded with (seed, b, j), so the result does not depend on the number of
    processes.  ``reduce`` sums a tensor over processes (identity when None).
    Returns {level: {"loss": mean CE over masked tokens, "accuracy": ..., "tokens": count}}, plus
    "end_loss", "end_accuracy", "end_tokens" when the collator pads with </s>: the same at the
    masked *first* </s> of each EOS-padded row, the position where the text ends (the </s> after
    it are easy once one is known).
    """
    levels = [float(level) for level in levels]
    # Text accuracy is always measured the same way (<pad> padding, </s> never masked), so numbers
    # stay comparable between models trained with and without EOS padding. A model trained with it
    # is also scored where the text ends in EOS-padded rows: does it know where to stop?
    protocols = {"text": False}  # protocol -> rows padded with maskable </s>
    if collator.eos_padding_length is not None:
        protocols["end"] = True
    eval_collators = {
        (name, j): collator.fixed_level(level, eos_padding=eos_padding)
        for name, eos_padding in protocols.items() for j, level in enumerate(levels)
    }
    eos_id = collator.tokenizer.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # per protocol and level: loss sum, correct, count
    stats = {name: torch.zeros(len(levels), 3, dtype=torch.float64, device=device) for name in protocols}
    n_batches = math.ceil(len(dataset) / batch_size)
    my_batches = [b for b in range(n_batches) if b % world_size == rank]
    bar = tqdm(total=len(my_batches) * len(eval_collators), desc="Evaluating per level",
               disable=not show_progress, leave=False)
    for b in my_batches:
        rows = dataset[b * batch_size:(b + 1) * batch_size]["input_ids"]
        examples = [{"input_ids": ids} for ids in rows]
        for (name, j), eval_collator in eval_collators.items():
            eval_collator.generator.manual_seed(seed * 1_000_003 + b * 1_009 + j)
            batch = eval_collator(examples)
            masked = batch["labels"] != -100
            if name == "end":  # score only the first </s> of each row (B, L)
                original = torch.where(masked, batch["labels"], batch["input_ids"])
                is_eos = original == eos_id
                masked &= is_eos & (is_eos.long().cumsum(dim=1) == 1)
            logits = masked_logits(model, batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                   masked.to(device))
            targets = batch["labels"][masked].to(device)
            stats[name][j, 0] += F.cross_entropy(logits.float(), targets, reduction="sum").double()
            stats[name][j, 1] += (logits.argmax(dim=-1) == targets).sum()
            stats[name][j, 2] += targets.numel()
            bar.update(1)
    bar.close()
    if reduce is not None:
        stats = {name: reduce(s) for name, s in stats.items()}
    model.train(was_training)
    stats = {name: s.cpu() for name, s in stats.items()}

    def summary(s: torch.Tensor, j: int, key: str = "") -> dict[str, float]:
        return {
            f"{key}loss": float(s[j, 0] / s[j, 2]) if s[j, 2] else float("nan"),
            f"{key}accuracy": float(s[j, 1] / s[j, 2]) if s[j, 2] else float("nan"),
            f"{key}tokens": int(s[j, 2]),
        }

    results = {}
    for j, level in enumerate(levels):
        results[level] = summary(stats["text"], j)
        if "end" in stats:
            results[level].update(summary(stats["end"], j, key="end_"))
    return results


def per_level_metrics(results: dict[float, dict[str, float]], prefix: str = "eval") -> dict[str, float]:
    """Flat metrics: eval_loss_mask_0.5, eval_acc_mask_0.5, ..., eval_loss / eval_acc (mean over levels)."""
    metrics = {}
    for level, r in results.items():
        metrics[f"{prefix}_loss_mask_{format_level(level)}"] = round(r["loss"], 4)
        metrics[f"{prefix}_acc_mask_{format_level(level)}"] = round(r["accuracy"], 4)
        if "end_accuracy" in r:
            metrics[f"{prefix}_end_acc_mask_{format_level(level)}"] = round(r["end_accuracy"], 4)
    metrics[f"{prefix}_loss"] = round(sum(r["loss"] for r in results.values()) / len(results), 4)
    metrics[f"{prefix}_acc"] = round(sum(r["accuracy"] for r in results.values()) / len(results), 4)
    return metrics
