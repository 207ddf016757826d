"""Masking levels: the noise levels of masked text diffusion, as training logs and evaluation name them.

A level is a mask rate in (0, 1].  Training draws rates from the levels (or from a continuous t,
diffusion/schedules.py) and logs the loss of each level as ``loss_mask_<level>``; evaluation
reports ``eval_loss_mask_<level>`` and ``eval_acc_mask_<level>`` at each fixed level.
"""

from __future__ import annotations

import torch

DEFAULT_MASK_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def format_level(level: float) -> str:
    """0.5 -> '0.5', 1.0 -> '1.0', 0.15 -> '0.15': the suffix of ``loss_mask_<level>``."""
    text = f"{level:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def level_index(rates: torch.Tensor, levels) -> torch.Tensor:
    """Index into the sorted ``levels`` of the level each rate is logged under: the smallest
    level >= rate (continuous rates fall into the bins the levels delimit). rates (B,) -> (B,) long."""
    levels = torch.tensor(list(levels), dtype=rates.dtype, device=rates.device)
    idx = torch.searchsorted(levels, rates - 1e-6)
    return idx.clamp(max=len(levels) - 1)
