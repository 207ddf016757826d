"""A small UNet denoiser (Ho et al. 2020, "DDPM"), as a transformers ``PreTrainedModel``.

    model = UNetModel(UNetConfig(image_size=8, in_channels=1, num_classes=10))
    eps_hat = model(x_t, steps, labels)          # (B, C, H, W), (B,) in 1..N, (B,) -> (B, C, H, W)

The shape of the data through the network, for the default 8x8 digits (channel_mults (1, 2)):

    x_t (B, 1, 8, 8) -> conv_in (B, 32, 8, 8)
      down 0: 2 residual blocks at 8x8, 32 channels   -> downsample to 4x4
      down 1: 2 residual blocks at 4x4, 64 channels, each followed by self-attention (lowest resolution)
      middle: residual block, self-attention, residual block (4x4)
      up 1:   3 residual blocks (+ attention), each taking a skip connection of the down path  -> upsample to 8x8
      up 0:   3 residual blocks at 8x8
    -> GroupNorm, SiLU, conv_out (B, 1, 8, 8): the predicted noise epsilon

Each residual block adds the conditioning vector: the sinusoidal embedding of the step k through
an MLP (as in DDPM), plus the embedding of the class label. The label table has one extra row,
``num_classes``, the *null* label: classifier-free guidance (Ho & Salimans 2022) trains the model
with labels dropped to it (``--cond-drop``) and samples a mix of the two predictions
(diffusion/gaussian/process.py, ``guided``). ``num_classes = 0`` makes an unconditional model.
The last convolution of every block and of the output starts at zero, so a fresh network is the
identity on its residual path and predicts zero noise (improved-diffusion does the same).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from diffusion.gaussian.model import step_embedding


class UNetConfig(PretrainedConfig):
    model_type = "diffusion-unet"

    def __init__(self, image_size: int = 8, in_channels: int = 1, base_channels: int = 32,
                 channel_mults: tuple[int, ...] | list[int] = (1, 2), num_res_blocks: int = 2, num_heads: int = 4,
                 groups: int = 8, dropout: float = 0.0, num_classes: int = 10, cross_attention_dim: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.channel_mults = list(channel_mults)
        self.num_res_blocks = num_res_blocks
        self.num_heads = num_heads
        self.groups = groups
        self.dropout = dropout
        self.num_classes = num_classes
        self.cross_attention_dim = cross_attention_dim  # text conditioning: the caption encoder's width

    @property
    def null_label(self) -> int:
        """The label id of "no label" (classifier-free guidance's unconditional branch)."""
        return self.num_classes


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv; + the conditioning vector; GroupNorm, SiLU, dropout, conv; + the input."""

    def __init__(self, channels_in: int, channels_out: int, cond_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.cond = nn.Linear(cond_dim, channels_out)
        self.norm2 = nn.GroupNorm(groups, channels_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_module(nn.Conv2d(channels_out, channels_out, 3, padding=1))
        self.skip = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, H, W), cond (B, cond_dim) -> (B, C_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.cond(F.silu(cond))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over the H*W positions of a feature map, with a residual connection."""

    def __init__(self, channels: int, num_heads: int, groups: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_module(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w).unbind(1)
        # (B, heads, C/heads, HW) -> (B, heads, HW, C/heads) for scaled_dot_product_attention
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class CrossAttentionBlock(nn.Module):
    """The feature map's positions attend to the caption's tokens (a spatial transformer's cross-attention,
    Rombach et al. 2022): queries from the image, keys and values from the frozen text encoder."""

    def __init__(self, channels: int, context_dim: int, num_heads: int, groups: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj = zero_module(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, C, H, W); context (B, L, D) caption states; context_mask (B, L) True at real tokens."""
        b, c, h, w = x.shape
        heads, d = self.num_heads, c // self.num_heads
        q = self.q(self.norm(x)).reshape(b, heads, d, h * w).transpose(-1, -2)  # (B, heads, HW, d)
        k, v = self.kv(context).reshape(b, -1, 2, heads, d).permute(2, 0, 3, 1, 4)  # (B, heads, L, d) each
        mask = None if context_mask is None else context_mask[:, None, None, :].bool()  # (B, 1, 1, L)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, HW, d)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNetModel(PreTrainedModel):
    config_class = UNetConfig
    base_model_prefix = "unet"
    main_input_name = "x_t"

    def __init__(self, config: UNetConfig):
        super().__init__(config)
        ch, groups, drop = config.base_channels, config.groups, config.dropout
        widths = [ch * m for m in config.channel_mults]
        levels = len(widths)
        if config.image_size % (2 ** (levels - 1)):
            raise ValueError(f"image size {config.image_size} is not divisible by {2 ** (levels - 1)}, "
                             f"the downsampling of {levels} levels (channel_mults {config.channel_mults})")
        cond_dim = 4 * ch
        self.step_mlp = nn.Sequential(nn.Linear(ch, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.label_embedding = nn.Embedding(config.num_classes + 1, cond_dim) if config.num_classes > 0 else None
        # Text conditioning: the mean of the caption's states joins the conditioning vector (as Imagen adds a
        # pooled text embedding to the step's), and cross-attention at the lowest resolution reads every token.
        context = config.cross_attention_dim
        self.text_pool = nn.Linear(context, cond_dim) if context else None
        self.conv_in = nn.Conv2d(config.in_channels, ch, 3, padding=1)

        # Down path: every block's output is kept as a skip connection for the up path.
        self.down = nn.ModuleList()
        skip_widths, width = [ch], ch
        for level, out in enumerate(widths):
            for _ in range(config.num_res_blocks):
                self.down.append(self._block(width, out, cond_dim, groups, drop, attention=level == levels - 1))
                width = out
                skip_widths.append(width)
            if level < levels - 1:
                self.down.append(nn.Conv2d(width, width, 3, stride=2, padding=1))  # downsample by 2
                skip_widths.append(width)
        self.middle = nn.ModuleList([ResBlock(width, width, cond_dim, groups, drop),
                                     AttentionBlock(width, config.num_heads, groups),
                                     *([CrossAttentionBlock(width, context, config.num_heads, groups)] if context else []),
                                     ResBlock(width, width, cond_dim, groups, drop)])
        # Up path: one more block per level than down, each taking one skip connection.
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            out = widths[level]
            for _ in range(config.num_res_blocks + 1):
                self.up.append(self._block(width + skip_widths.pop(), out, cond_dim, groups, drop,
                                           attention=level == levels - 1))
                width = out
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(width, width, 3, padding=1)))
        self.norm_out = nn.GroupNorm(groups, width)
        self.conv_out = zero_module(nn.Conv2d(width, config.in_channels, 3, padding=1))
        self.post_init()

    def _block(self, channels_in, channels_out, cond_dim, groups, dropout, attention: bool) -> nn.ModuleList:
        block = [ResBlock(channels_in, channels_out, cond_dim, groups, dropout)]
        if attention:
            block.append(AttentionBlock(channels_out, self.config.num_heads, groups))
            if self.config.cross_attention_dim:
                block.append(CrossAttentionBlock(channels_out, self.config.cross_attention_dim, self.config.num_heads,
                                                 groups))
        return nn.ModuleList(block)

    def _init_weights(self, module: nn.Module) -> None:
        pass  # PyTorch's default initialisation; the zero-initialised layers are set in __init__

    def condition(self, steps: torch.Tensor, labels: torch.Tensor | None, context: torch.Tensor | None = None,
                  context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) steps, (B,) labels (None: the null label), caption states (B, L, D) -> (B, 4 * base_channels)."""
        cond = self.step_mlp(step_embedding(steps, self.config.base_channels))
        if self.label_embedding is not None:
            if labels is None:
                labels = torch.full_like(steps, self.config.null_label)
            cond = cond + self.label_embedding(labels)
        if self.text_pool is not None and context is not None:
            weights = (context_mask.float() if context_mask is not None else
                       torch.ones(context.shape[:2], device=context.device))[..., None]  # (B, L, 1)
            pooled = (context * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # (B, D)
            cond = cond + self.text_pool(pooled)
        return cond

    def forward(self, x_t: torch.Tensor, steps: torch.Tensor, labels: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x_t (B, C, H, W) at steps (B,), labels (B,) or None -> the predicted noise (B, C, H, W).

        A text-conditioned model (``cross_attention_dim``) also takes the caption: encoder_hidden_states
        (B, L, D) from the frozen text encoder and encoder_attention_mask (B, L), 1 at real tokens.
        """
        if self.config.cross_attention_dim and encoder_hidden_states is None:
            raise ValueError("this UNet is text-conditioned: give encoder_hidden_states (the caption's; the null "
                             "caption '' for the unconditional branch)")
        context = (encoder_hidden_states, encoder_attention_mask)
        cond = self.condition(steps, labels, *context)
        h = self.conv_in(x_t)
        skips = [h]
        for module in self.down:
            h = self._run_block(module, h, cond, context)
            skips.append(h)
        h = self._run_block(self.middle, h, cond, context)
        for module in self.up:
            if isinstance(module, nn.ModuleList):
                h = self._run_block(module, torch.cat([h, skips.pop()], dim=1), cond, context)
            else:
                h = module(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    @staticmethod
    def _run_block(module: nn.Module, h: torch.Tensor, cond: torch.Tensor, context) -> torch.Tensor:
        if not isinstance(module, nn.ModuleList):  # a downsampling convolution
            return module(h)
        for layer in module:
            if isinstance(layer, ResBlock):
                h = layer(h, cond)
            elif isinstance(layer, CrossAttentionBlock):
                h = layer(h, *context)
            else:
                h = layer(h)
        return h


AutoConfig.register(UNetConfig.model_type, UNetConfig)
AutoModel.register(UNetConfig, UNetModel)
