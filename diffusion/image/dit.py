"""A small Diffusion Transformer (Peebles & Xie 2023, "DiT"), as a transformers ``PreTrainedModel``.

    model = DiTModel(DiTConfig(image_size=8, patch_size=2, in_channels=1, num_classes=10))
    eps_hat = model(x_t, steps, labels)          # (B, C, H, W), (B,) in 1..N, (B,) -> (B, C, H, W)

The data through the network, for the default 8x8 digits (patches of 2x2, hidden 128):

    x_t (B, 1, 8, 8) -> patchify: a 2x2-stride convolution -> (B, 16, 128) tokens, + fixed 2-D sin-cos positions
    c = MLP(sinusoidal embedding of k) + label embedding                 (B, 128)
    depth x DiT block:  x = x + gate1 * Attention(LN(x) * (1 + scale1) + shift1)
                        x = x + gate2 * MLP(LN(x) * (1 + scale2) + shift2)
                        (shift, scale, gate) x 2 = Linear(SiLU(c)), zero-initialised: "adaLN-Zero"
    final layer: LN(x) * (1 + scale) + shift -> Linear -> (B, 16, 2*2*1) -> unpatchify (B, 1, 8, 8)

adaLN-Zero starts every block as the identity (its gates are zero), which the DiT paper found
trains best of its conditioning variants. The output is the predicted noise only, with as many
channels as the image: DiT's reference code also predicts a variance and, for guidance, splits
its output at a hard-coded channel index (3 of 4 latent channels), which is wrong for one-channel
images. Here guidance mixes whole predictions (diffusion/gaussian/process.py, ``guided``). The
label table has one extra row, ``num_classes``: the null label of classifier-free guidance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from diffusion.adaln import AdaLNBlock, modulate
from diffusion.gaussian.model import step_embedding


class DiTConfig(PretrainedConfig):
    model_type = "diffusion-dit"

    def __init__(self, image_size: int = 8, in_channels: int = 1, patch_size: int = 2, hidden_size: int = 128,
                 depth: int = 4, num_heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 num_classes: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.hidden_size = hidden_size
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout
        self.num_classes = num_classes

    @property
    def null_label(self) -> int:
        return self.num_classes


def sincos_positions(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim) fixed 2-D sin-cos position embeddings (DiT, after MAE): half the channels for rows, half for columns."""
    def one_axis(positions: torch.Tensor, d: int) -> torch.Tensor:
        freqs = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d // 2))
        angles = positions[:, None] * freqs[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                                indexing="ij")
    emb = torch.cat([one_axis(rows.flatten(), dim // 2), one_axis(cols.flatten(), dim // 2)], dim=1)
    return emb.float()


class DiTModel(PreTrainedModel):
    config_class = DiTConfig
    base_model_prefix = "dit"
    main_input_name = "x_t"

    def __init__(self, config: DiTConfig):
        super().__init__(config)
        p, d = config.patch_size, config.hidden_size
        if config.image_size % p:
            raise ValueError(f"image size {config.image_size} is not divisible by the patch size {p}")
        if d % config.num_heads or d % 4:
            raise ValueError(f"hidden size {d} must be divisible by 4 and by the {config.num_heads} heads")
        self.grid = config.image_size // p
        self.patchify = nn.Conv2d(config.in_channels, d, kernel_size=p, stride=p)
        # (T, D), fixed; saved with the weights (a non-persistent buffer would not survive from_pretrained's
        # initialisation on the meta device)
        self.register_buffer("positions", sincos_positions(self.grid, d))
        self.step_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.label_embedding = nn.Embedding(config.num_classes + 1, d) if config.num_classes > 0 else None
        self.blocks = nn.ModuleList([AdaLNBlock(d, config.num_heads, config.mlp_ratio, config.dropout)
                                     for _ in range(config.depth)])
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.adaln_out = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, p * p * config.in_channels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # DiT's initialisation: Xavier-uniform linear layers, the patch embedding like a linear layer,
        # then every adaLN modulation and the output layer at zero (each block starts as the identity).
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if module is self:
            for block in self.blocks:
                nn.init.zeros_(block.adaln.weight)
                nn.init.zeros_(block.adaln.bias)
            for layer in (self.adaln_out, self.out):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            for layer in (self.step_mlp[0], self.step_mlp[2]):
                nn.init.normal_(layer.weight, std=0.02)

    def condition(self, steps: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        c = self.step_mlp(step_embedding(steps, self.config.hidden_size))
        if self.label_embedding is not None:
            if labels is None:
                labels = torch.full_like(steps, self.config.null_label)
            c = c + self.label_embedding(labels)
        return c

    def forward(self, x_t: torch.Tensor, steps: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """x_t (B, C, H, W) at steps (B,), labels (B,) or None -> the predicted noise (B, C, H, W)."""
        x = self.patchify(x_t).flatten(2).transpose(1, 2) + self.positions  # (B, T, D), T = g*g
        c = self.condition(steps, labels)
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.adaln_out(F.silu(c)).chunk(2, dim=-1)
        return self.unpatchify(self.out(modulate(self.norm_out(x), shift, scale)))  # (B, T, p*p*C) -> image

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, p*p*C) -> (B, C, H, W): token i*g + j holds patch (i, j), its values ordered (row, column, channel)."""
        b, p, g, channels = x.shape[0], self.config.patch_size, self.grid, self.config.in_channels
        x = x.reshape(b, g, g, p, p, channels).permute(0, 5, 1, 3, 2, 4)  # (B, C, g, p, g, p)
        return x.reshape(b, channels, g * p, g * p)


AutoConfig.register(DiTConfig.model_type, DiTConfig)
AutoModel.register(DiTConfig, DiTModel)

