"""The adaLN-Zero Transformer block (Peebles & Xie 2023, "DiT"), shared by the image DiT and the Gaussian text denoiser.

    block = AdaLNBlock(hidden=256, num_heads=4, mlp_ratio=4.0, dropout=0.0, condition_dim=64)
    x = block(x, c, padding)    # x (B, T, D) tokens; c (B, C) or (B, T, C) conditioning; padding (B, T) bool

    x = x + gate1 * Attention(LN(x) * (1 + scale1) + shift1)
    x = x + gate2 * MLP(LN(x) * (1 + scale2) + shift2)
    (shift, scale, gate) x 2 = Linear(SiLU(c)), zero-initialised by the model: "adaLN-Zero"

The conditioning (the diffusion step, a class label) never enters the token stream: it sets the
scale and shift of each normalisation.  Added to the tokens instead, a step embedding is the same
vector at every position of a row and can grow to dominate it (docs/GAUSSIAN_TEXT.md, "Why the
first base wrote fragments"), which drowns the positions that attention needs to read its neighbours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, T, D) scaled and shifted per example by (B, D) vectors, or per token by (B, T, D) ones."""
    if shift.dim() == 2:
        shift, scale = shift[:, None], scale[:, None]
    return x * (1 + scale) + shift


class AdaLNBlock(nn.Module):
    def __init__(self, hidden: int, num_heads: int, mlp_ratio: float, dropout: float, condition_dim: int | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(inner, hidden))
        # c (condition_dim, default hidden) -> 6 vectors of hidden; zero-initialised by the model: adaLN-Zero
        self.adaln = nn.Linear(condition_dim or hidden, 6 * hidden)
        self.dropout = nn.Dropout(dropout)

    def attention(self, x: torch.Tensor, padding: torch.Tensor | None = None,
                  weights: list | None = None) -> torch.Tensor:
        """x (B, T, D); padding (B, T) bool, True = a padded key, never attended.

        ``weights``: a list that receives this call's attention weights (B, heads, T, T), computed
        explicitly (the fused kernel returns none); None for the fused kernel alone.
        """
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        keep = None if padding is None else ~padding[:, None, None, :]  # (B, 1, 1, T): True = attend
        if weights is not None:
            scores = q @ k.transpose(-1, -2) / (d // self.num_heads) ** 0.5  # (B, heads, T, T)
            if keep is not None:
                scores = scores.masked_fill(~keep, float("-inf"))
            probs = scores.softmax(dim=-1)
            weights.append(probs)
            out = probs @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (B, heads, T, D/heads)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))

    def forward(self, x: torch.Tensor, c: torch.Tensor, padding: torch.Tensor | None = None,
                weights: list | None = None) -> torch.Tensor:
        """x (B, T, D) tokens, c (B, C) or (B, T, C) conditioning, padding (B, T) bool -> (B, T, D)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(F.silu(c)).chunk(6, dim=-1)
        if gate1.dim() == 2:
            gate1, gate2 = gate1[:, None], gate2[:, None]
        x = x + gate1 * self.dropout(self.attention(modulate(self.norm1(x), shift1, scale1), padding, weights))
        return x + gate2 * self.dropout(self.mlp(modulate(self.norm2(x), shift2, scale2)))
