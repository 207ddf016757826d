"""Fresh text models from a small preset config, sized for a CPU, so that everything runs with no download.

masked -> ``RobertaConfig`` (or ``RobertaPreLayerNormConfig``) / ``AutoModelForMaskedLM``;
causal -> ``GPT2Config`` / ``AutoModelForCausalLM``.  Loading a trained or hub model by name is
diffusion/checkpoint.py's ``load_model``; this module builds new ones and holds the two
initialisations that get a CPU-sized masked model off the unigram plateau.
"""

from __future__ import annotations

import math

import torch
from transformers import GPT2Config, PretrainedConfig, RobertaConfig, RobertaPreLayerNormConfig

from diffusion.checkpoint import ModelLoadError, model_class

# Sizes measured on 2 CPU cores (see docs/BENCHMARKS.md). Dropout is off in "tiny": on this
# little data a 5M model underfits, and dropout costs ~9% of a CPU step for nothing.
MODEL_PRESETS = {
    "tiny": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024, dropout=0.0),
    "small": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048, dropout=0.1),
}


def typed_override(config: PretrainedConfig, key: str, value: str):
    """Cast a --config-overrides string to the type of the config's current value."""
    if not hasattr(config, key):
        raise ModelLoadError(f"--config-overrides: {type(config).__name__} has no field {key!r}")
    current = getattr(config, key)
    try:
        if isinstance(current, bool):
            return value.lower() in ("1", "true", "yes")
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
    except ValueError:
        raise ModelLoadError(f"--config-overrides: {key}={value!r} is not a {type(current).__name__}") from None
    return value


def build_config(objective: str, preset: str, tokenizer, max_length: int,
                 overrides: dict[str, str] | None = None, pre_layer_norm: bool = False) -> PretrainedConfig:
    """A fresh RobertaConfig (masked) or GPT2Config (causal) of the named size.

    ``pre_layer_norm`` picks RobertaPreLayerNormConfig: the same encoder with the layer norm
    moved before each sublayer, which keeps gradients well scaled at a high learning rate
    from scratch (Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture").
    """
    p = MODEL_PRESETS[preset]
    special = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id,
        eos_token_id=tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id,
    )
    if objective == "masked":
        config = (RobertaPreLayerNormConfig if pre_layer_norm else RobertaConfig)(
            hidden_size=p["hidden_size"], num_hidden_layers=p["num_hidden_layers"],
            num_attention_heads=p["num_attention_heads"], intermediate_size=p["intermediate_size"],
            hidden_dropout_prob=p["dropout"], attention_probs_dropout_prob=p["dropout"],
            # RoBERTa numbers positions from pad_token_id + 1, so it needs 2 spare positions.
            max_position_embeddings=max_length + 2, type_vocab_size=1, **special,
        )
    else:
        config = GPT2Config(
            n_embd=p["hidden_size"], n_layer=p["num_hidden_layers"], n_head=p["num_attention_heads"],
            n_inner=p["intermediate_size"], resid_pdrop=p["dropout"], embd_pdrop=p["dropout"],
            attn_pdrop=p["dropout"], n_positions=max_length, **special,
        )
    for key, value in (overrides or {}).items():
        setattr(config, key, typed_override(config, key, value))
    return config


def build_model(objective: str, preset: str, tokenizer, max_length: int, overrides: dict[str, str] | None = None,
                pre_layer_norm: bool = False, sinusoidal_positions: bool = False,
                local_attention_init: bool = False, local_attention_layers: int = 1):
    config = build_config(objective, preset, tokenizer, max_length, overrides, pre_layer_norm)
    model = model_class(objective).from_config(config)
    if sinusoidal_positions:
        init_sinusoidal_positions(model)
    if local_attention_init:
        init_local_attention(model, layers=local_attention_layers)
    return model


def sinusoids(n_positions: int, dim: int) -> torch.Tensor:
    """(n_positions, dim) table of Vaswani et al. 2017: sin/cos pairs at geometric frequencies.

    Row p+1 is row p rotated pair by pair, so "the previous/next position" is one fixed linear map
    for every p: attention can learn it with one matrix instead of one pattern per position.
    """
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


@torch.no_grad()
def init_sinusoidal_positions(model) -> None:
    """Overwrite the learned position table with sinusoids of the same scale as its random init.

    RoBERTa numbers positions from padding_idx + 1, so its rows are shifted; a shift does not
    matter, since only differences between positions carry the structure.
    """
    base = model.base_model
    embedding = base.embeddings.position_embeddings if hasattr(base, "embeddings") else base.wpe  # RoBERTa / GPT-2
    weight = embedding.weight  # (P, H)
    table = sinusoids(weight.shape[0], weight.shape[1])
    # Sinusoid entries have std 1/sqrt(2); rescale to the std of the random init (initializer_range).
    scale = model.config.initializer_range / table.std()
    weight.copy_((table * scale).to(weight.dtype))
    if embedding.padding_idx is not None:  # RoBERTa's padding position stays zero, as in its own init
        weight[embedding.padding_idx].zero_()


# Offsets of the heads that init_local_attention points at the neighbours (head 0 -> p-1, ...).
LOCAL_ATTENTION_OFFSETS = (-1, 1, -2, 2)


@torch.no_grad()
def init_local_attention(model, offsets=LOCAL_ATTENTION_OFFSETS, peak_score: float = 8.0, layers: int = 1) -> None:
    """Start the first layer's heads as "previous/next token" heads. Masked LMs only.

    Why: a masked position holds only ``<mask>``, so everything a masked LM can say about it comes
    through attention. From a random init its heads attend nearly uniformly, and on 2 CPU cores a
    4M encoder then spends thousands of steps predicting word frequencies and drifts into heads
    that stare at one punctuation token (docs/BENCHMARKS.md, "Pretraining a masked base").
    Trained BERTs grow heads that look at the previous or next token (Clark et al. 2019, "What
    does BERT look at?"); starting from such heads is the idea of mimetic initialisation
    (Trockman & Kolter 2023). The model is an ordinary RoBERTa afterwards: every weight still
    trains, nothing is frozen, and it loads with ``AutoModelForMaskedLM``.

    How, with d the head size and F = d / 2:
    * a "position channel": dims [0, d) of the position table hold F sin/cos pairs at the
      frequencies w_k = pi (k + 1/2) / F, and the word (and token-type) embeddings start at zero
      there. These codes are orthogonal for any two positions less than 2d apart
      (sum_k cos(w_k * delta) = 0), so the channel says exactly where a token is;
    * head h of layer 0 reads only that channel: its key is the channel itself and its query is
      the channel rotated pair by pair by the angle w_k * o_h, which is the code of position
      p + o_h. The score q.k therefore peaks at key position p + o_h and is ~0 elsewhere.
    * ``peak_score`` scales the query so that a head puts ~3/4 of its weight on its neighbour
      in a 20-token document (measured): sharp enough to carry the neighbour's token, soft enough
      to keep a gradient towards other positions.
    """
    base = model.base_model
    embeddings = base.embeddings
    hidden = embeddings.word_embeddings.weight.shape[1]
    n_heads = model.config.num_attention_heads
    head_dim = hidden // n_heads
    pairs = head_dim // 2
    std = model.config.initializer_range

    # Position channel, (P, 2F): amplitude std*sqrt(2) gives each dim the std of the random init.
    positions = embeddings.position_embeddings.weight  # (P, H)
    table, omega = position_channel(positions.shape[0], hidden, pairs, std * math.sqrt(2))
    positions.copy_(table.to(positions.dtype))
    embeddings.word_embeddings.weight[:, :2 * pairs] = 0.0
    embeddings.token_type_embeddings.weight[:, :2 * pairs] = 0.0

    for layer in base.encoder.layer[:layers]:
        attention = layer.attention.self
        point_heads_at_offsets(attention.query.weight, attention.query.bias, attention.key.weight, attention.key.bias,
                               omega, offsets[:n_heads], head_dim, hidden, peak_score)


def position_channel(n_positions: int, hidden: int, pairs: int, amplitude: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, H) float64 table, zero but for F = ``pairs`` sin/cos pairs in dims [0, 2F), and their (F,) frequencies.

    Pair k of position p is amplitude * (sin w_k p, cos w_k p) with w_k = pi (k + 1/2) / F: codes that
    are orthogonal for any two positions less than 2F apart (init_local_attention's docstring).
    """
    where = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    omega = math.pi * (torch.arange(pairs, dtype=torch.float64) + 0.5) / pairs  # (F,)
    table = torch.zeros(n_positions, hidden, dtype=torch.float64)
    table[:, 0:2 * pairs:2] = amplitude * torch.sin(where * omega)
    table[:, 1:2 * pairs:2] = amplitude * torch.cos(where * omega)
    return table, omega


def point_heads_at_offsets(query_weight, query_bias, key_weight, key_bias, omega, offsets, head_dim, hidden,
                           peak_score) -> None:
    """Head h's query reads the position channel rotated by its offset o_h, its key the channel itself.

    query_weight, key_weight (H, H) and their biases (H,): the projections (or views of a fused one),
    written in place under no_grad by the caller.
    """
    pairs = head_dim // 2
    for head, offset in enumerate(offsets):
        angle = omega * offset  # (F,)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # Rotation taking (sin wp, cos wp) to (sin w(p+o), cos w(p+o)), one 2x2 block per pair.
        rotate = torch.zeros(head_dim, hidden, dtype=torch.float64)  # (d, H)
        select = torch.zeros(head_dim, hidden, dtype=torch.float64)  # (d, H)
        k = torch.arange(pairs)
        rotate[2 * k, 2 * k], rotate[2 * k, 2 * k + 1] = cos, sin
        rotate[2 * k + 1, 2 * k], rotate[2 * k + 1, 2 * k + 1] = -sin, cos
        select[2 * k, 2 * k] = select[2 * k + 1, 2 * k + 1] = 1.0
        rows = slice(head * head_dim, (head + 1) * head_dim)
        # After the LayerNorms each channel pair has amplitude ~sqrt(2), so q.k at the peak ~ 2F
        # and the score (q.k / sqrt(d)) ~ scale * 2F / sqrt(d).
        scale = peak_score * math.sqrt(head_dim) / (2 * pairs)
        query_weight[rows] = (scale * rotate).to(query_weight.dtype)
        key_weight[rows] = select.to(key_weight.dtype)
        query_bias[rows] = 0.0
        key_bias[rows] = 0.0


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
