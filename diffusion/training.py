"""Trainer parts that every objective shares: reproducible length-grouped batches and one-line logs.

* ``LengthGroupedTrainer``: ``Trainer`` whose ``group_by_length`` order is a function of
  (seed, epoch) alone, so ``--resume`` sees exactly the batches the uninterrupted run would have;
  the causal baseline trains with it as is, and each objective's trainer builds on it
  (diffusion/masked/trainer.py).
  It also writes ``run_progress.json`` into every checkpoint (the calls that trained it, with
  their steps, wall time and loss), so a run trained in several calls, or one killed and resumed,
  reports its time and its mean training loss over *all* its steps (diffusion/runs.py).
* ``NoiseLevelMeter``: the training loss summed in ten buckets of the noise level t, for the
  ``loss_noise_<t>`` scalars of the Gaussian objectives (text embeddings and images).
* ``format_log`` and the two callbacks that print it: one readable line per Trainer log
  (``step 50 | loss 1.595 | lr 2.4e-05 | mask 0.1: 1.02 ...``) instead of a raw dict.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import torch
from transformers import ProgressCallback, Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from diffusion.checkpoint import EMA_FILE
from diffusion.masked.levels import format_level, level_index
from diffusion.runs import PROGRESS_FILE, checkpoint_stages


class LengthGroupedTrainer(Trainer):
    """Trainer whose ``group_by_length`` order is reproducible across ``--resume``, and whose
    checkpoints record the calls that trained them (every objective)."""

    _earlier_stages: list[dict] = []  # set by train(): the calls before this one (diffusion/runs.py)
    _call_started = 0.0
    # train.py sets it: every checkpoint-N then carries its diffusion_config.json (global_step N), so it
    # decodes exactly like the final model (generate.py --checkpoint OUTPUT/checkpoint-N).
    diffusion_config = None

    def point_tensorboard_into_the_run(self) -> None:
        """TensorBoard logs go to OUTPUT/runs/..., also for the evaluation logged before training starts
        (stock Trainer creates its writer there at on_train_begin; an earlier log would write ./runs)."""
        import socket
        from datetime import datetime

        from transformers.integrations import TensorBoardCallback

        for callback in self.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
                # the name stock Trainer gives the folder: runs/<month><day>_<time>_<host>
                name = datetime.now().strftime("%b%d_%H-%M-%S") + "_" + socket.gethostname()
                callback.logging_dir = os.path.join(self.args.output_dir, "runs", name)

    # ------------------------------------------------------------------ stages across calls
    def train(self, resume_from_checkpoint=None, **kwargs):
        self._earlier_stages = checkpoint_stages(resume_from_checkpoint, self.args.output_dir)
        self._call_started = time.time()
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _this_call(self, loss_sum: float | None = None) -> dict:
        initial = getattr(self, "_initial_global_step", 0)
        steps = self.state.global_step - initial
        stage = {"global_step": self.state.global_step, "steps": steps,
                 "train_runtime_s": round(time.time() - self._call_started, 1)}
        if loss_sum is not None and steps > 0:
            stage["train_loss"] = round(loss_sum / steps, 4)
        return stage

    def run_stages(self, train_loss: float | None = None) -> list[dict]:
        """Every call that trained this model, this one last: [{global_step, steps, train_runtime_s, train_loss}]."""
        steps = self.state.global_step - getattr(self, "_initial_global_step", 0)
        return self._earlier_stages + [self._this_call(None if train_loss is None else train_loss * steps)]

    def _save_checkpoint(self, model, trial):
        # Written before Trainer's own files, so trainer_state.json (written last) still marks a whole checkpoint.
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            tr_loss = getattr(self, "_tr_loss", None)
            loss_sum = getattr(self, "_total_loss_scalar", 0.0) + (float(tr_loss) if tr_loss is not None else 0.0)
            with open(os.path.join(folder, PROGRESS_FILE), "w") as f:
                json.dump({"stages": self._earlier_stages + [self._this_call(loss_sum)]}, f, indent=2)
            if self.diffusion_config is not None:
                dataclasses.replace(self.diffusion_config, global_step=self.state.global_step).save(folder)
        super()._save_checkpoint(model, trial)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "train_runtime" in logs and "train_loss" in logs and self._earlier_stages:
            # Trainer's train_loss covers this call's steps only; make it the mean over every step.
            this = self._this_call(logs["train_loss"] * (self.state.global_step - self._initial_global_step))
            stages = self._earlier_stages + [this]
            if all("train_loss" in st or st.get("steps") == 0 for st in stages):
                total = sum(st.get("steps", 0) for st in stages)
                if total:
                    logs["train_loss_this_call"] = logs["train_loss"]
                    logs["train_loss"] = sum(st.get("train_loss", 0.0) * st.get("steps", 0) for st in stages) / total
            logs["resumed_at_step"] = self._initial_global_step
        super().log(logs, start_time)

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset  # Trainer passes a copy without the "length" column
        if self.args.train_sampling_strategy == "group_by_length" and "length" in getattr(dataset, "column_names", []):
            # Stock LengthGroupedSampler shuffles with torch's global RNG when iterated, which a
            # resumed Trainer restores only after it has fetched the first batch: the resumed run
            # then sees another data order. A generator seeded by (seed, epoch) makes the order a
            # function of the epoch alone, identical on every process. Lengths come from our
            # "length" column instead of re-measuring every row.
            return EpochSeededLengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                lengths=list(dataset["length"]), seed=self.args.data_seed or self.args.seed)
        return super()._get_train_sampler(train_dataset)


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Batches of similar length (less padding), shuffled by a generator seeded with seed + epoch."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by Trainer / accelerate at each epoch
        self.epoch = int(epoch)

    def __iter__(self):
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


class NoiseLevelMeter:
    """Sums of a loss in buckets of t (0.1 = t in (0, 0.1], ..., 1.0), emptied at every training log.

    ``add(t, losses)`` with t and losses (N,) (one entry per example or per token); ``pop(reduce)``
    -> {"loss_noise_0.1": mean, ...} over the logging window, ``reduce`` summing across processes
    (a collective: every process calls it).
    """

    def __init__(self, levels):
        self.levels = [float(level) for level in levels]
        self.keys = [f"loss_noise_{format_level(level)}" for level in self.levels]
        self.sums = torch.zeros(2, len(self.levels), dtype=torch.float64)  # [loss sum, count]

    @torch.no_grad()
    def add(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        bucket = level_index(t.double(), self.levels)  # (N,)
        sums = torch.zeros_like(self.sums, device=losses.device)
        sums[0].index_add_(0, bucket, losses.detach().double())
        sums[1].index_add_(0, bucket, torch.ones_like(bucket, dtype=torch.float64))
        self.sums = self.sums.to(losses.device) + sums

    def pop(self, reduce=None) -> dict[str, float]:
        sums = (reduce(self.sums.clone()) if reduce is not None else self.sums.clone()).cpu()
        self.sums.zero_()
        return {key: round(float(sums[0, j] / sums[1, j]), 4) for j, key in enumerate(self.keys) if sums[1, j] > 0}


def process_batches(n_rows: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The indices of the evaluation batches this process scores (every world_size-th, from its rank)."""
    return [b for b in range((n_rows + batch_size - 1) // batch_size) if b % world_size == rank]


def seed_level_noise(generator: torch.Generator, seed: int, batch: int, level: int) -> torch.Generator:
    """Seed the noise of evaluation batch ``batch`` at noise level ``level``: a function of (seed, batch, level)
    alone, so the per-level numbers do not depend on the batch order or the number of processes."""
    return generator.manual_seed(seed * 1_000_003 + batch * 1_009 + level)


def format_log(logs: dict, step: int) -> str:
    """One readable line for a Trainer log instead of a raw dict:

        step    50 | loss 7.412 | lr 9.8e-04 | mask 0.1: 7.10  0.2: 7.15 ... 1.0: 7.80
        eval evaluation at step 600 | loss 6.10 | accuracy per level 0.1: 0.150 ...
    """
    if "loss" in logs:
        lr = logs.get("learning_rate")
        line = f"step {step:>6} | loss {logs['loss']:.3f}"
        line += f" | lr {lr:.1e}" if lr is not None else ""
        for tag, label in (("mask", "mask"), ("noise", "t")):  # masked levels, Gaussian noise levels
            levels = "  ".join(f"{k[len(f'loss_{tag}_'):]}: {v:.2f}" for k, v in logs.items()
                               if k.startswith(f"loss_{tag}_"))
            line += f" | {label} {levels}" if levels else ""
        return line
    if "train_runtime" in logs:
        loss = logs.get("train_loss", float("nan"))
        if "resumed_at_step" in logs:
            over = f"over all {step} steps" if "train_loss_this_call" in logs else "over this call's steps"
            return (f"training done: step {step} ({step - logs['resumed_at_step']} steps in this call, resumed at "
                    f"step {logs['resumed_at_step']}) in {logs['train_runtime']:.0f} s, mean training loss {loss:.3f} {over}")
        return f"training done: {step} steps in {logs['train_runtime']:.0f} s, mean training loss {loss:.3f}"
    eval_keys = [k for k in logs if k.endswith("_loss")]
    if eval_keys:  # an evaluation: eval_loss, initial_loss, ...
        prefix = eval_keys[0][: -len("_loss")]
        accs = "  ".join(f"{k.split('_')[-1]}: {v:.3f}" for k, v in logs.items()
                         if k.startswith((f"{prefix}_acc_mask_", f"{prefix}_acc_noise_")))
        line = f"{prefix} evaluation at step {step} | loss {logs[prefix + '_loss']:.3f}"
        line += f" | accuracy per level {accs}" if accs else ""
        if f"{prefix}_perplexity" in logs:
            line += f" | perplexity {logs[prefix + '_perplexity']:.1f}"
        return line
    return " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items())


class CompactProgressCallback(ProgressCallback):
    """Trainer's progress bar, with :func:`format_log` lines instead of raw dicts."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            writer = self.training_bar.write if self.training_bar is not None else print
            writer(format_log(logs, state.global_step))


class CompactPrinterCallback(TrainerCallback):
    """The same lines without a progress bar (``--disable_tqdm true``, e.g. for log files)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            print(format_log(logs, state.global_step), flush=True)


class FirstStepCallback(TrainerCallback):
    """Calls ``action()`` once, after the first optimizer step of this call (the new run has proven it can train)."""

    def __init__(self, action):
        self.action, self.done = action, False

    def on_step_end(self, args, state, control, **kwargs):
        if not self.done:
            self.done = True
            self.action()


class EMACallback(TrainerCallback):
    """An exponential moving average of the weights, kept beside the trained ones (``--use-ema``).

    After every optimizer step, for every trainable parameter p (float32 shadow copy e):

        decay_n = min(decay, (1 + n) / (10 + n))        n = the global step (warm-up)
        e = decay_n * e + (1 - decay_n) * p

    Polyak averaging as DDPM, improved-diffusion and DiT sample from it; the warm-up (the one of
    TensorFlow's ExponentialMovingAverage with num_updates) keeps a short CPU run from sampling
    an average dominated by the random init, which a fixed 0.9999 would be for its first
    thousands of steps.  The shadow is saved in every checkpoint as ``ema.safetensors`` and read
    back on ``--resume``; :meth:`copy_to` puts it into a model (for the final save and sampling).
    """

    FILE = EMA_FILE

    def __init__(self, decay: float = 0.9999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema-decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _params(model) -> dict[str, torch.Tensor]:
        while hasattr(model, "module"):  # DDP / accelerate wrappers
            model = model.module
        return {name: p for name, p in model.named_parameters() if p.requires_grad}

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        params = self._params(model)
        saved = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}", self.FILE)
        if state.global_step > 0 and os.path.isfile(saved):  # a resumed run: its average goes on
            from safetensors.torch import load_file

            self.shadow = {k: v.to(params[k].device) for k, v in load_file(saved).items()}
        elif self.shadow is None:
            self.shadow = {k: p.detach().float().clone() for k, p in params.items()}

    @torch.no_grad()
    def on_step_end(self, args, state, control, model=None, **kwargs):
        d = self.decay_at(state.global_step)
        for name, p in self._params(model).items():
            self.shadow[name].mul_(d).add_(p.detach().float(), alpha=1.0 - d)

    def on_save(self, args, state, control, **kwargs):
        if self.shadow is not None and state.is_world_process_zero:
            from safetensors.torch import save_file

            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            save_file({k: v.contiguous().cpu() for k, v in self.shadow.items()}, os.path.join(folder, self.FILE))

    @torch.no_grad()
    def copy_to(self, model) -> None:
        """Overwrite ``model``'s trainable parameters with the average."""
        for name, p in self._params(model).items():
            p.copy_(self.shadow[name].to(p.dtype))

