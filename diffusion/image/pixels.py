"""Pixels <-> tensors, the one place that knows the data range: (C, H, W) float32 in [-1, 1].

A grey image is (1, H, W), a colour one (3, H, W), scaled from 0..255 to [-1, 1] (x / 127.5 - 1),
the range of the Gaussian process's clean data x_0 (DDPM, Ho et al. 2020). Light on purpose
(numpy, torch, Pillow): the drawing code imports it without loading datasets.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_pixels(image: Image.Image, size: int, channels: int) -> torch.Tensor:
    """A PIL image -> (C, size, size) float32 in [-1, 1], resized (bicubic) when its side is not ``size``."""
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    array = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()) / 127.5 - 1.0
    return array[None] if channels == 1 else array.permute(2, 0, 1)


def from_pixels(pixels: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W) or (H, W, 3) uint8 for a PNG; values outside [-1, 1] are clipped."""
    array = ((pixels.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    return array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()
