"""Cached block decoding: the keys and values outside the block, computed once per block.

In block decoding (diffusion/masked/unmasking.py, ``--block-length``) the steps of one block
change only the block's tokens, yet a plain forward pass recomputes every position of the
window.  Fast-dLLM (Wu et al. 2025) observed that the keys and values of the positions outside
the block barely change while the block is unmasked, so they can be kept from one full pass at
the start of the block:

* ``prefix``: the positions left of the block (the prompt and the committed blocks) are cached;
  every other step computes the block and everything to its right;
* ``dual``: the positions on both sides are cached; every other step computes only the block.

What is cached is exact for the tokens: the positions outside the block do not change during
the block.  What is approximate is their deeper layers: a position's key at layer 2 depends on
what it attended to at layer 1, the block included, and the block changes.  In a one-layer
model nothing is approximate (its keys depend only on the tokens); tests/test_cache.py checks
both, and docs/BENCHMARKS.md measures what the approximation costs.

    cache = BlockCache(model)                          # a BERT-family masked LM
    logits = cache.full_pass(x, predict_at)            # the model's own forward; keeps every layer's K, V
    logits = cache.block_pass(x, start, end, predict_at)   # only columns [start, end) through the layers

The block pass is written over the model's own modules (embeddings, each layer's attention
projections, output and feed-forward, the head), so its weights are the checkpoint's; only the
attention between the block's queries and all keys is written out, in :func:`attention`.
"""

from __future__ import annotations

import torch

from diffusion.masked.logits import masked_logits

CACHE_MODES = ("none", "prefix", "dual")
# The default --cache when decoding in blocks: on the bundled model (blocks of 8, --threshold 0.9) dual
# caching kept the judge perplexity of uncached decoding (53.6 against 53.1) with 4.0x fewer positions
# computed per token and 0.62x the wall time (docs/BENCHMARKS.md, "Cached block decoding").
DEFAULT_CACHE = "dual"
# Encoders with BERT's layer layout (embeddings -> encoder.layer[i].attention.self.query/key/value ...):
# the block pass reuses their modules. Others decode uncached.
CACHEABLE_TYPES = ("bert", "roberta", "roberta-prelayernorm", "xlm-roberta", "camembert")


def cache_support(model) -> str | None:
    """None when the block pass can run on ``model``, else why not (for a one-line error)."""
    config = getattr(model, "config", None)
    if config is None:
        return "--cache needs a transformers model (it reuses the model's layers): use --cache none"
    if config.model_type not in CACHEABLE_TYPES:
        return (f"--cache works on {', '.join(CACHEABLE_TYPES)} models (the block pass reuses their layers); "
                f"this one is {config.model_type!r}: use --cache none")
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return f"--cache needs absolute position embeddings, this model has {config.position_embedding_type!r}: use --cache none"
    return None


def needs_blocks(cache: str, block_length: int | None) -> str:
    """The one-line error for a cache without blocks (block_length 0 as given, or None: the model has none)."""
    given = ", not --block-length 0" if block_length == 0 else ""
    return (f"--cache {cache} keeps the positions outside the block being unmasked: it needs blocks "
            f"(--block-length 8, say){given}, or --cache none")


def resolve_cache(requested: str | None, block_length: int | None, model) -> str:
    """The cache mode to decode with: as asked (checked), or the default for these blocks and this model.

    Not given: DEFAULT_CACHE when decoding in blocks and the model supports it, else none.
    """
    if requested is None:
        return DEFAULT_CACHE if block_length and cache_support(model) is None else "none"
    if requested != "none":
        if not block_length:
            raise ValueError(needs_blocks(requested, block_length))
        reason = cache_support(model)
        if reason:
            raise ValueError(reason)
    return requested


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float) -> torch.Tensor:
    """Scaled dot-product attention, every query to every key (Vaswani et al. 2017).

    query: (B, heads, Lq, d) for the block's positions; key, value: (B, heads, Lk, d) for the whole
    window.  Returns (B, heads, Lq, d).  No mask: the decoder's windows have no padding, so every
    position sees every other (the model is bidirectional).
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, heads, Lq, Lk)
    return torch.matmul(scores.softmax(dim=-1), value)


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, L, H) -> (B, heads, L, H / heads)."""
    batch, length, hidden = x.shape
    return x.view(batch, length, n_heads, hidden // n_heads).transpose(1, 2)


class BlockCache:
    """Every layer's keys and values of the current window, and the pass that reuses them."""

    def __init__(self, model):
        reason = cache_support(model)
        if reason:
            raise ValueError(reason)
        self.model = model
        self.base = getattr(model, model.base_model_prefix)  # the encoder without its head
        # The MLM head is the other child (RoBERTa: lm_head, BERT: cls).
        self.head = next(m for name, m in model.named_children() if name != model.base_model_prefix)
        self.layers = list(self.base.encoder.layer)
        self.n_heads = model.config.num_attention_heads
        # Per layer, (B, L, H): the outputs of the key and value projections over the whole window.
        self.keys: list[torch.Tensor | None] = [None] * len(self.layers)
        self.values: list[torch.Tensor | None] = [None] * len(self.layers)

    def full_pass(self, x: torch.Tensor, predict_at: torch.Tensor) -> torch.Tensor:
        """The model's own forward over the whole window x (B, L); logits (N, V) at ``predict_at``.

        Hooks on every layer's key and value projections keep their outputs as the cache, so this
        pass is exactly the uncached decoder's.
        """
        hooks = []
        for i, layer in enumerate(self.layers):
            hooks.append(layer.attention.self.key.register_forward_hook(self._keeper(self.keys, i)))
            hooks.append(layer.attention.self.value.register_forward_hook(self._keeper(self.values, i)))
        try:
            return masked_logits(self.model, x, torch.ones_like(x), predict_at)
        finally:
            for hook in hooks:
                hook.remove()

    @staticmethod
    def _keeper(store: list, index: int):
        def keep(module, args, output):
            store[index] = output  # (B, L, H)
        return keep

    def block_pass(self, x: torch.Tensor, start: int, end: int, predict_at: torch.Tensor) -> torch.Tensor:
        """Columns [start, end) of x (B, L) through the layers, attending to the cache elsewhere.

        Their fresh keys and values replace the cached ones in those columns (the next step
        recomputes them anyway).  predict_at (B, L) bool must lie inside [start, end); returns the
        logits (N, V) there, rows in the row-major order of ``predict_at`` as masked_logits gives.
        """
        if self.keys[0] is None or self.keys[0].shape[:2] != x.shape:
            raise RuntimeError("block_pass needs a full_pass over a window of this shape first")
        # A position's embedding depends only on its token and its position: embed the window, keep the block.
        hidden = self.base.embeddings(input_ids=x)[:, start:end]  # (B, W, H)
        for i, layer in enumerate(self.layers):
            hidden = self._layer(i, layer, hidden, start, end)
        if hasattr(self.base, "LayerNorm"):  # pre-LayerNorm models end with one (RoBERTa-PreLayerNorm)
            hidden = self.base.LayerNorm(hidden)
        return self.head(hidden[predict_at[:, start:end]])  # (N, V)

    def _layer(self, i: int, layer, hidden: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """One encoder layer for the block's hidden states (B, W, H) -> (B, W, H)."""
        attn = layer.attention
        # Pre-LayerNorm layers normalise before attending; post-LN ones (BERT, RoBERTa) after, in attn.output.
        normed = attn.LayerNorm(hidden) if hasattr(attn, "LayerNorm") else hidden
        self.keys[i][:, start:end] = attn.self.key(normed)  # (B, W, H) written into the window's (B, L, H)
        self.values[i][:, start:end] = attn.self.value(normed)
        query = _heads(attn.self.query(normed), self.n_heads)  # (B, heads, W, d)
        context = attention(query, _heads(self.keys[i], self.n_heads), _heads(self.values[i], self.n_heads),
                            attn.self.scaling)  # (B, heads, W, d)
        context = context.transpose(1, 2).reshape(hidden.shape)  # (B, W, H)
        attended = attn.output(context, hidden)  # output projection + residual (+ LayerNorm in post-LN models)
        return layer.output(layer.intermediate(attended), attended)  # feed-forward + residual
