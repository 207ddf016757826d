"""Texts written during training, for every objective: what the model writes now, every N steps.

    sampler = text_sampler("gaussian", tokenizer, max_length=64, diffusion_config=config, process=process)
    trainer.add_callback(SamplesCallback(sampler, every=500, num_texts=3))

Each time, the texts go to the training log (one line each), to ``OUTPUT/samples.jsonl``
(``{"step": N, "texts": [...]}`` per line) and to TensorBoard as text (tag ``samples``).  A loss
curve says that something is learned; the texts say what.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import torch
from transformers import TrainerCallback

SAMPLES_FILE = "samples.jsonl"
Sampler = Callable[[object, int], list[str]]  # (model, number of texts) -> texts


def text_sampler(objective: str, tokenizer, max_length: int, diffusion_config=None, process=None,
                 sampler: str = "ddim", ddim_steps: int = 50) -> Sampler:
    """A fixed-seed sampler of each objective's own kind, cheap enough to run during training.

    masked: unmask ``max_length`` positions with the decoder's defaults (diffusion/masked/unmasking.py);
    causal: nucleus sampling from ``<s>``; gaussian: ``sampler`` (ddim with ``ddim_steps``, or ddpm)
    at the training lengths (diffusion/gaussian/sampling.py).
    """
    if objective == "masked":
        from diffusion.masked.unmasking import DecodeOptions, build_prompt, decode, resolve_block_length

        options = DecodeOptions(seed=0, block_length=resolve_block_length(None, diffusion_config))

        def masked(model, n: int) -> list[str]:
            return decode(model, tokenizer, build_prompt(tokenizer, max_length=max_length, num_samples=n), options).texts
        return masked
    if objective == "causal":
        from diffusion.text.causal import causal_context, generate_causal

        def causal(model, n: int) -> list[str]:
            return generate_causal(model, tokenizer, causal_context(tokenizer, None), max_length - 1,
                                   sampling="nucleus", seed=0, num_samples=n).texts
        return causal
    if objective == "gaussian":
        from diffusion.gaussian.sampling import GaussianSamplingOptions, gaussian_prompt, sample, sample_lengths

        options = GaussianSamplingOptions(sampler=sampler, ddim_steps=ddim_steps)

        def gaussian(model, n: int) -> list[str]:
            lengths = sample_lengths(diffusion_config, None, n, seed=0)
            return sample(model, process, tokenizer, gaussian_prompt(tokenizer, lengths), options, seed=0,
                          record_trace=False).texts
        return gaussian
    raise ValueError(f"no text sampler for objective {objective!r}")


class SamplesCallback(TrainerCallback):
    """Generates ``num_texts`` texts every ``every`` steps (0: at every evaluation) and at the end of training."""

    def __init__(self, sampler: Sampler, every: int = 0, num_texts: int = 3):
        self.sampler, self.every, self.num_texts = sampler, every, num_texts
        self.trainer = None  # set by train.py: its TensorBoard writer, if any, gets the texts
        # Told before and after each sampling: samples_started(step), samples_ready(step, texts or image)
        # (the --dashboard window, diffusion/dashboard.py).
        self.listeners: list = []
        self._last_step = -1

    def _write(self, args, state, model) -> None:
        if not state.is_world_process_zero or model is None or state.global_step == self._last_step:
            return
        self._last_step = state.global_step
        while hasattr(model, "module"):
            model = model.module
        for listener in self.listeners:
            listener.samples_started(state.global_step)
        with torch.random.fork_rng(devices=[]):  # training's random stream is left as it was
            sample = self._emit(args, state, model)
        model.train()
        for listener in self.listeners:
            listener.samples_ready(state.global_step, sample)

    def _emit(self, args, state, model) -> list[str]:
        """Sample and write: the log, OUTPUT/samples.jsonl, TensorBoard. -> the texts"""
        texts = self.sampler(model, self.num_texts)
        print(f"samples at step {state.global_step}:", flush=True)
        for i, text in enumerate(texts, 1):
            print(f"  [{i}] {text}", flush=True)
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, SAMPLES_FILE), "a") as f:
            f.write(json.dumps({"step": state.global_step, "texts": texts}) + "\n")
        writer = self._tensorboard()
        if writer is not None:
            writer.add_text("samples", "\n\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1)), state.global_step)
        return texts

    def _tensorboard(self):
        from transformers.integrations import TensorBoardCallback

        for callback in getattr(getattr(self.trainer, "callback_handler", None), "callbacks", []):
            if isinstance(callback, TensorBoardCallback) and getattr(callback, "tb_writer", None) is not None:
                return callback.tb_writer
        return None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every and state.global_step % self.every == 0:
            self._write(args, state, model)

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if not self.every and state.global_step > 0:
            self._write(args, state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._write(args, state, model)


class ImageSamplesCallback(SamplesCallback):
    """The image objective's samples: a grid (a PIL image from ``grid(model)``) every ``every`` steps
    (0: at every evaluation) and at the end -> OUTPUT/samples/step-000200.png, the log and TensorBoard."""

    def __init__(self, grid: Callable, every: int = 0):
        super().__init__(sampler=None, every=every)
        self.grid = grid

    def _emit(self, args, state, model):
        """-> the grid (a PIL image)"""
        import numpy as np

        image = self.grid(model)
        folder = os.path.join(args.output_dir, "samples")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"step-{state.global_step:06d}.png")
        image.save(path)
        print(f"samples at step {state.global_step}: {path}", flush=True)
        writer = self._tensorboard()
        if writer is not None:
            writer.add_image("samples", np.asarray(image.convert("RGB")), state.global_step, dataformats="HWC")
        return image
