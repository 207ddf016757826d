"""The denoiser of Gaussian text diffusion: noisy token embeddings in, the clean embeddings (x0) out.

    config = GaussianTextConfig(vocab_size=len(tokenizer), embedding_dim=32, max_position_embeddings=64)
    model = GaussianTextModel(config)
    e = model.embed(input_ids)                                  # (B, L, d): the space that is diffused
    x0_hat = model(x_t, steps, attention_mask, self_condition)   # (B, L, d)
    logits = model.rounding_logits(x0_hat)                       # (B, L, V): back to tokens

Diffusion-LM (Li et al. 2022) in the layout of this project:

* tokens live in a *learned* embedding space of small dimension d (the table is trained with the
  denoiser; Diffusion-LM used 16-128), up-projected to the Transformer's width H;
* the Transformer encoder (pre-LN, PyTorch's ``nn.TransformerEncoder``) sees learned positions and
  a sinusoidal embedding of the diffusion step k, and attends only to real positions
  (``attention_mask``: 1 = attend);
* it predicts x0 (Diffusion-LM's choice: an epsilon-predicting model rounds badly), down-projected
  to d; ``rounding_logits`` scores a vector against every row of the embedding table (the
  rounding of Diffusion-LM, the table tied to the input embedding);
* with ``self_conditioning`` (Chen et al. 2022, "Analog Bits") the previous estimate of x0 is a
  second input, concatenated to x_t feature-wise; zeros when there is none.

The model is a plain callable of the Gaussian process (diffusion/gaussian/process.py): it never
adds noise or takes a sampling step itself.  It is a ``PreTrainedModel`` registered with
``AutoConfig`` / ``AutoModel``, so ``save_pretrained`` / ``AutoModel.from_pretrained(DIR)``,
Trainer, EMA and DDP treat it like any transformers model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from diffusion.adaln import AdaLNBlock, modulate


class GaussianTextConfig(PretrainedConfig):
    model_type = "gaussian-text-diffusion"

    def __init__(self, vocab_size: int = 8192, embedding_dim: int = 32, hidden_size: int = 256,
                 num_hidden_layers: int = 4, num_attention_heads: int = 4, intermediate_size: int = 1024,
                 max_position_embeddings: int = 64, hidden_dropout_prob: float = 0.1,
                 self_conditioning: bool = True, given_text_at_step_zero: bool = False, step_conditioning: str = "add",
                 condition_dim: int = 64, pad_token_id: int = 1, **kwargs):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        if step_conditioning not in ("add", "adaln"):
            raise ValueError(f"step_conditioning must be 'add' or 'adaln', got {step_conditioning!r}")
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}")
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.hidden_dropout_prob = hidden_dropout_prob
        self.self_conditioning = self_conditioning
        # Given text (a --prefix, a --text template, the trainer's fixed text) is told apart by its
        # step: 0 at its positions, k elsewhere. Without it, a clean embedding (about unit variance
        # per dimension) looks like one more noise draw at high t: the model cannot see which
        # positions it is given (docs/GAUSSIAN_TEXT.md, "Given text is marked by its step").
        # False only in configs saved before the option existed; every model train.py trains sets it.
        self.given_text_at_step_zero = given_text_at_step_zero
        # How the step reaches the encoder. "adaln" (every fresh model train.py builds): it sets the scale,
        # shift and gate of every block's normalisations (adaLN-Zero, diffusion/adaln.py, as the image
        # DiT). "add" (configs saved before the option): its embedding is added to every position,
        # Diffusion-LM's way, where it grew to 24x the positions' size and attention stayed uniform
        # (docs/GAUSSIAN_TEXT.md, "Why the first base wrote fragments").
        self.step_conditioning = step_conditioning
        # "adaln": the width of the step's conditioning vector. 64, not the hidden size: each block's
        # modulation is condition_dim x 6 hidden weights, and at 256 they would add 1.6M parameters
        # to the tiny model (the bundled base must stay under 10 MB).
        self.condition_dim = condition_dim


def step_embedding(steps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) integer or float steps -> (B, dim) sinusoids (the timestep embedding of DDPM / improved-diffusion)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=steps.device) / half)
    args = steps.float()[:, None] * freqs[None]
    out = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(out, (0, dim % 2))


class GaussianTextModel(PreTrainedModel):
    config_class = GaussianTextConfig
    base_model_prefix = "gaussian_text"
    main_input_name = "x_t"

    def __init__(self, config: GaussianTextConfig):
        super().__init__(config)
        d, h = config.embedding_dim, config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, d)
        inputs = 2 * d if config.self_conditioning else d  # [x_t, previous x0 estimate]
        self.input_up = nn.Sequential(nn.Linear(inputs, h), nn.Tanh(), nn.Linear(h, h))
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        adaln = config.step_conditioning == "adaln"
        step_out = config.condition_dim if adaln else h  # (B, step_out): the conditioning vector, or added to h
        self.step_mlp = nn.Sequential(nn.Linear(h, 4 * h), nn.SiLU(), nn.Linear(4 * h, step_out))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        if adaln:
            self.blocks = nn.ModuleList([AdaLNBlock(h, config.num_attention_heads, config.intermediate_size / h,
                                                    config.hidden_dropout_prob, config.condition_dim)
                                         for _ in range(config.num_hidden_layers)])
            self.norm_out = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
            self.adaln_out = nn.Linear(config.condition_dim, 2 * h)
            for layer in [block.adaln for block in self.blocks] + [self.adaln_out]:
                layer.adaln_zero = True  # _init_weights: zeros
        else:
            layer = nn.TransformerEncoderLayer(h, config.num_attention_heads, config.intermediate_size,
                                               config.hidden_dropout_prob, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, config.num_hidden_layers, norm=nn.LayerNorm(h),
                                                 enable_nested_tensor=False)
        self.output_down = nn.Sequential(nn.Linear(h, h), nn.Tanh(), nn.Linear(h, d))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            # adaLN-Zero (DiT): the modulations start at zero, so every block starts as the identity
            # and the final norm unmodulated (marked in __init__: post_init does not visit this module
            # itself, only its children)
            nn.init.normal_(module.weight, std=0.0 if getattr(module, "adaln_zero", False) else 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=1.0 if module is self.word_embeddings else 0.02)
        elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.word_embeddings = value

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, d): the clean x_0 of the Gaussian process."""
        return self.word_embeddings(input_ids)

    def rounding_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d) -> (B, L, V): each vector scored against every token's embedding (dot product)."""
        return F.linear(x, self.word_embeddings.weight)

    def position_steps(self, steps: torch.Tensor, given: torch.Tensor | None) -> torch.Tensor:
        """The steps to call forward with: (B,) steps and (B, L) bool given text -> (B, L), 0 where given.

        Unchanged (B,) for a config saved before ``given_text_at_step_zero`` or without given text.
        """
        if given is None or not self.config.given_text_at_step_zero:
            return steps
        return torch.where(given, torch.zeros_like(steps)[:, None], steps[:, None])

    def forward(self, x_t: torch.Tensor, steps: torch.Tensor, attention_mask: torch.Tensor | None = None,
                self_condition: torch.Tensor | None = None, output_attentions: bool = False):
        """x_t (B, L, d) at diffusion steps (B,), or (B, L) per position -> the predicted x0 (B, L, d).

        attention_mask (B, L): 1 where a position is real (attended), 0 for padding.
        self_condition (B, L, d): the previous x0 estimate (self-conditioning), zeros when None.
        output_attentions: return (x0, attentions), attentions a tuple of (B, heads, L, L) per layer
        (benchmarks/attention_entropy.py reads them: does the model look at its neighbours?).
        """
        batch, length, _ = x_t.shape
        if length > self.config.max_position_embeddings:
            raise ValueError(f"{length} positions, the model has {self.config.max_position_embeddings}")
        if self.config.self_conditioning:
            if self_condition is None:
                self_condition = torch.zeros_like(x_t)
            x_t = torch.cat([x_t, self_condition], dim=-1)  # (B, L, 2d)
        h = self.input_up(x_t)  # (B, L, H)
        h = h + self.position_embeddings(torch.arange(length, device=h.device))[None]
        step_h = self.step_mlp(step_embedding(steps.reshape(-1), self.config.hidden_size))  # (B or B*L, C)
        step_h = step_h if steps.dim() == 1 else step_h.view(batch, length, -1)  # (B, C) or (B, L, C)
        padding = None if attention_mask is None else ~attention_mask.bool()  # True = ignore (PyTorch's convention)
        weights = [] if output_attentions else None
        if self.config.step_conditioning == "adaln":
            h = self.dropout(h)
            for block in self.blocks:
                h = block(h, step_h, padding, weights)
            shift, scale = self.adaln_out(F.silu(step_h)).chunk(2, dim=-1)
            out = self.output_down(modulate(self.norm_out(h), shift, scale))
        else:
            h = h + (step_h[:, None, :] if steps.dim() == 1 else step_h)
            h = self.dropout(h)
            if output_attentions:  # nn.TransformerEncoder returns no weights: ask each layer's attention
                for layer in self.encoder.layers:
                    y = layer.norm1(h)
                    weights.append(layer.self_attn(y, y, y, key_padding_mask=padding, need_weights=True,
                                                   average_attn_weights=False)[1])
                    h = layer(h, src_key_padding_mask=padding)
                h = self.encoder.norm(h)
            else:
                h = self.encoder(h, src_key_padding_mask=padding)
            out = self.output_down(h)
        return (out, tuple(weights)) if output_attentions else out


@torch.no_grad()
def init_local_attention(model: GaussianTextModel, layers: int = 1, amplitude: float = 0.3,
                         peak_score: float = 8.0) -> None:
    """Start the first blocks' heads as previous/next-token heads (offsets -1, +1, -2, +2): the
    masked base's init (diffusion/text/models.py, init_local_attention), for an adaLN denoiser.

    Why: measured on the first Gaussian base (docs/GAUSSIAN_TEXT.md, "Why the first base wrote fragments"),
    a denoiser from a random init attends uniformly at every layer and ends a bag of words, as a
    masked LM does on these cores without this init.  Here:
    * dims [0, 2F) of the position table (F = head size / 2) hold the sin/cos position channel, at
      ``amplitude`` per dimension (0.3: about twice what the token stream reaches in its first
      thousand steps, so that the channel is not drowned when the LayerNorm rescales the stream);
    * the token path writes nothing there at the start: input_up's last layer is zero in those rows;
    * in each of the first ``layers`` blocks, head h's query is the channel rotated by its offset
      and its key the channel itself, so each head starts on its neighbour.  Every weight trains.
    """
    from diffusion.text.models import LOCAL_ATTENTION_OFFSETS, point_heads_at_offsets, position_channel

    if model.config.step_conditioning != "adaln":
        raise ValueError("init_local_attention needs a denoiser with step_conditioning='adaln'")
    hidden, heads = model.config.hidden_size, model.config.num_attention_heads
    head_dim = hidden // heads
    pairs = head_dim // 2
    positions = model.position_embeddings.weight  # (P, H)
    table, omega = position_channel(positions.shape[0], hidden, pairs, amplitude)
    positions.copy_(table.to(positions.dtype))
    model.input_up[-1].weight[:2 * pairs] = 0.0
    model.input_up[-1].bias[:2 * pairs] = 0.0
    for block in model.blocks[:layers]:
        w, b = block.qkv.weight, block.qkv.bias  # (3H, H), (3H,): query rows [0, H), key rows [H, 2H)
        point_heads_at_offsets(w[:hidden], b[:hidden], w[hidden:2 * hidden], b[hidden:2 * hidden], omega,
                               LOCAL_ATTENTION_OFFSETS[:heads], head_dim, hidden, peak_score)


# The sizes and dropout of diffusion/text/models.py's presets, for comparisons at equal width and
# depth. No dropout in "tiny": its random masks were 17% of a CPU training step (torch.profiler).
GAUSSIAN_PRESETS = {
    "tiny": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                 hidden_dropout_prob=0.0),
    "small": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048,
                  hidden_dropout_prob=0.1),
}
DEFAULT_EMBEDDING_DIM = 64


def build_gaussian_model(preset: str, tokenizer, max_length: int, embedding_dim: int | None = None,
                         overrides: dict[str, str] | None = None, local_attention_layers: int = 0,
                         self_conditioning: bool = True) -> GaussianTextModel:
    """A fresh denoiser of the named size for ``tokenizer``'s vocabulary and ``max_length`` positions."""
    from diffusion.text.models import typed_override

    config = GaussianTextConfig(vocab_size=len(tokenizer), embedding_dim=embedding_dim or DEFAULT_EMBEDDING_DIM,
                                given_text_at_step_zero=True, step_conditioning="adaln",
                                self_conditioning=self_conditioning,
                                max_position_embeddings=max_length, pad_token_id=tokenizer.pad_token_id,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                **GAUSSIAN_PRESETS[preset])
    for key, value in (overrides or {}).items():
        setattr(config, key, typed_override(config, key, value))
    model = GaussianTextModel(config)
    if local_attention_layers:
        init_local_attention(model, layers=local_attention_layers)
    return model


AutoConfig.register(GaussianTextConfig.model_type, GaussianTextConfig)
AutoModel.register(GaussianTextConfig, GaussianTextModel)
