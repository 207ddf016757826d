"""Pictures of image diffusion: sample grids, one PNG per sample, and the denoising frames.

    grid = image_grid(images, ncols=10, scale=8, row_labels=["zero", ...])   # (B, C, H, W) in [-1, 1]
    grid.save("samples.png")
    frame = denoising_frame(x_t, x0_hat, step=400, n_steps=1000, t=0.4)      # x_k beside the predicted x_0

Pixels are enlarged by repeating them (nearest neighbour), never smoothed: an 8x8 digit stays 64
visible squares, which is what the model made. The labels use DejaVu Sans from matplotlib's
data folder, as the text frames do (diffusion/viz/rendering.py).
"""

from __future__ import annotations

import os

import torch
from PIL import Image, ImageDraw

from diffusion.image.pixels import from_pixels
from diffusion.viz.rendering import font

BACKGROUND = (24, 26, 32)
LABEL = (230, 230, 230)
MUTED = (150, 155, 165)


def to_image(pixels: torch.Tensor, scale: int = 1) -> Image.Image:
    """(C, H, W) in [-1, 1] -> a PIL image ``scale`` times larger, pixels repeated (no smoothing)."""
    array = from_pixels(pixels)
    image = Image.fromarray(array, mode="L" if array.ndim == 2 else "RGB")
    if scale != 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image.convert("RGB")


def image_grid(images: torch.Tensor, ncols: int, scale: int = 8, gap: int = 2,
               row_labels: list[str] | None = None, title: str | None = None) -> Image.Image:
    """(B, C, H, W) -> one picture, ``ncols`` images per row; an optional label left of every row."""
    n = images.shape[0]
    rows = (n + ncols - 1) // ncols
    side = images.shape[-1] * scale
    label_font = font(max(11, min(18, side // 3)))
    label_w = 0
    if row_labels:
        label_w = 12 + max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(label, font=label_font))
                           for label in row_labels)
    title_h = 28 if title else 0
    width = label_w + ncols * side + (ncols + 1) * gap
    height = title_h + rows * side + (rows + 1) * gap
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap + 4, 6), title, fill=LABEL, font=font(14))
    for i in range(n):
        r, c = divmod(i, ncols)
        x, y = label_w + gap + c * (side + gap), title_h + gap + r * (side + gap)
        canvas.paste(to_image(images[i], scale), (x, y))
    for r, label in enumerate(row_labels or []):
        y = title_h + gap + r * (side + gap) + side // 2
        draw.text((6, y), label, fill=LABEL, font=label_font, anchor="lm")
    return canvas


def save_samples(images: torch.Tensor, folder: str, names: list[str]) -> list[str]:
    """Every image as its own PNG at the model's resolution (seed 002's samples/ folder): folder/NAME.png."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for pixels, name in zip(images, names, strict=True):
        array = from_pixels(pixels)
        path = os.path.join(folder, f"{name}.png")
        Image.fromarray(array, mode="L" if array.ndim == 2 else "RGB").save(path)
        paths.append(path)
    return paths


def denoising_frame(x_t: torch.Tensor, x0_hat: torch.Tensor, step: int, n_steps: int, t: float,
                    scale: int = 8, header: str = "") -> Image.Image:
    """(B, C, H, W) noisy images and predicted clean images -> one frame: x_k row above the x_0 row.

    x_k is drawn clipped to [-1, 1] (early on it is mostly noise of standard deviation ~1).
    """
    ncols = x_t.shape[0]
    both = torch.cat([x_t.clamp(-1, 1), x0_hat])
    grid = image_grid(both, ncols, scale, row_labels=["x_t", "predicted x_0"])
    top = 48
    frame = Image.new("RGB", (max(grid.width, 360), grid.height + top), BACKGROUND)
    frame.paste(grid, (0, top))
    draw = ImageDraw.Draw(frame)
    draw.text((8, 6), f"step {step} of {n_steps}   t = {t:.3f}", fill=LABEL, font=font(16, bold=True))
    if header:
        draw.text((8, 28), header, fill=MUTED, font=font(12))
    return frame
