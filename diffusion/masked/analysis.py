"""Looking inside a masked model: what each layer predicts, where each head looks, what it would write.

    batch = collator.fixed_level(0.5)(examples)              # data_collator.py, one masking level
    lens, heads = layer_statistics(model, [batch])           # one pass per batch for both:
    # lens: per layer accuracy, agreement, KL to the final layer; heads: per layer and head entropy, distance, neighbours
    top = top_predictions(model, batch["input_ids"], batch["attention_mask"], k=5)
    pll = pseudo_log_likelihood(model, tokenizer, ids)       # a text scored by the masked model itself

Used by experiments/layer_analysis.py, experiments/predictions_by_level.py,
experiments/schedule_comparison.py and benchmarks/attention_entropy.py (whose Gaussian mode sums its
denoiser's attention with ``attention_sums``).  The model is any
BERT-family masked LM with ``base_model.encoder.layer`` (RoBERTa, RoBERTa-PreLayerNorm, BERT,
XLM-R, CamemBERT): the bundled models and ``roberta-base`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffusion.masked.logits import _unwrap


@dataclass
class AttentionStats:
    """Per layer and head, averaged over real (not padding) query positions. Each tensor (layers, heads)."""

    entropy: torch.Tensor  # nats; log(L) is uniform attention, 0 is one key
    distance: torch.Tensor  # mean |i - j| of the keys j a query i attends to, weighted by attention
    neighbour: torch.Tensor  # share of the weight on the keys i-1 and i+1
    log_length: float  # mean log(L) over the queries: the entropy of attending uniformly
    uniform_distance: float  # the distance attending uniformly would give, over the same queries


def attention_sums(attentions, attention_mask: torch.Tensor) -> tuple[torch.Tensor, int, float, float]:
    """One batch's summed (entropy, distance, neighbour) (3, layers, heads), query count, summed log L and uniform distance."""
    probs = torch.stack(attentions, dim=1).float()  # (B, layers, heads, L, L)
    real = attention_mask.bool()  # (B, L)
    pos = torch.arange(probs.shape[-1])
    gap = (pos[:, None] - pos[None, :]).abs().float()  # (L, L): |i - j|
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)  # (B, layers, heads, L)
    distance = (probs * gap).sum(-1)
    neighbour = (probs * (gap == 1).float()).sum(-1)
    weight = real[:, None, None, :].float()  # average over real query positions only
    sums = torch.stack([(x * weight).sum((0, 3)) for x in (entropy, distance, neighbour)])
    # What uniform attention over a row's n real keys (positions 0..n-1) gives, at each query i < n.
    log_len = uniform = 0.0
    for n in real.sum(-1).tolist():
        i = torch.arange(n, dtype=torch.float64)
        log_len += n * float(torch.log(torch.tensor(float(n))))
        uniform += float(((i * (i + 1) / 2 + (n - 1 - i) * (n - i) / 2) / n).sum())
    return sums, int(real.sum()), log_len, uniform


def attention_stats(model, batches) -> AttentionStats:
    """Attention entropy, mean distance and neighbour share of every head over ``batches``.

    Each batch is a dict with ``input_ids`` and ``attention_mask`` (B, L).  The model must return
    its attention weights: load it with ``attn_implementation="eager"`` (SDPA does not).
    """
    return layer_statistics(model, batches, lens=False)[1]


def _lens_parts(model):
    """(layers, final_norm, head) of a BERT-family masked LM, for reading its hidden states through the head.

    ``final_norm`` is the layer norm a pre-LN model applies once after its last layer (RoBERTa-
    PreLayerNorm's ``LayerNorm``), else None: the logit lens reads every hidden state through it,
    as nostalgebraist's logit lens reads GPT-2's through ``ln_f``.
    """
    model = _unwrap(model)
    base = model.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    head = getattr(model, "lm_head", None)
    if head is None:
        head = getattr(model, "cls", None)  # BERT's head
    if layers is None or head is None:
        raise ValueError(f"{type(model).__name__} is not a BERT-family masked LM (no encoder.layer or lm_head); "
                         "the layer analysis reads RoBERTa, BERT and their kin")
    final_norm = getattr(base, "LayerNorm", None)
    return layers, final_norm, head


@torch.no_grad()
def hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, attentions: bool = False):
    """([embeddings, after layer 1, ..., after layer n], the model's output): every state (B, L, H).

    Read with forward hooks on the embedding module and each layer, so the states are exactly
    what flows into the next layer whatever a model's ``output_hidden_states`` convention is.
    ``attentions``: the output also carries the attention weights (an eager-attention model).
    """
    layers, _, _ = _lens_parts(model)
    base = _unwrap(model).base_model
    states: list[torch.Tensor] = []

    def keep(module, args, output):
        states.append(output[0] if isinstance(output, tuple) else output)

    handles = [base.embeddings.register_forward_hook(keep)] + [layer.register_forward_hook(keep) for layer in layers]
    try:
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=attentions)
    finally:
        for handle in handles:
            handle.remove()
    return states, out


@dataclass
class LensStats:
    """The logit lens at masked positions: one value per state (embeddings, layer 1, ..., layer n)."""

    accuracy: torch.Tensor  # (n+1,) argmax of the state's logits == the original token
    agreement: torch.Tensor  # (n+1,) argmax == the final layer's argmax
    kl_to_final: torch.Tensor  # (n+1,) KL(final || state) in nats: how far from the final prediction
    masked: int  # positions averaged over


def _lens_sums(states: list[torch.Tensor], batch: dict, final_norm, head) -> tuple[torch.Tensor, int]:
    """One batch's summed (accuracy, agreement, KL) per state (n+1, 3) at its masked positions, and their count."""
    masked = batch["labels"] != -100  # (B, L)
    target = batch["labels"][masked]  # (N,)
    per_state = []
    for state in states:
        h = state[masked]  # (N, H)
        # The last state of a pre-LN model goes through its final norm like every other; the head
        # then gives exactly the model's own logits for it.
        if final_norm is not None:
            h = final_norm(h)
        per_state.append(head(h).float().log_softmax(-1))  # (N, V)
    final = per_state[-1]
    final_top = final.argmax(-1)
    rows = []
    for logp in per_state:
        top = logp.argmax(-1)
        rows.append(torch.stack([(top == target).float().sum(), (top == final_top).float().sum(),
                                 (final.exp() * (final - logp)).sum(-1).sum()]))
    return torch.stack(rows), int(masked.sum())


@torch.no_grad()
def layer_statistics(model, batches, lens: bool = True, attention: bool = True
                     ) -> tuple[LensStats | None, AttentionStats | None]:
    """The logit lens and the attention statistics of ``batches``, from one forward pass per batch.

    Each batch is a collator output: ``input_ids`` with ``<mask>``, ``attention_mask``, ``labels``
    (the original id where masked, -100 elsewhere).  The lens reads each layer's hidden state
    through the output head at the masked positions: a layer whose state already gives the final
    prediction has agreement 1 and KL 0, and the layers after it refine nothing (at that level).
    Averages are over all masked positions (lens) and real query positions (attention) of all
    batches.  ``attention`` needs a model that returns its weights (eager attention).
    """
    _, final_norm, head = _lens_parts(model)
    lens_sums, masked = None, 0
    att_sums, queries, log_len, uniform = None, 0, 0.0, 0.0
    for batch in batches:
        states, out = hidden_states(model, batch["input_ids"], batch["attention_mask"], attentions=attention)
        if lens:
            sums, n = _lens_sums(states, batch, final_norm, head)
            lens_sums, masked = (sums if lens_sums is None else lens_sums + sums), masked + n
        if attention:
            sums, q, ll, u = attention_sums(out.attentions, batch["attention_mask"])
            att_sums = sums if att_sums is None else att_sums + sums
            queries, log_len, uniform = queries + q, log_len + ll, uniform + u
    lens_stats = att_stats = None
    if lens:
        if not masked:
            raise ValueError("no masked positions to read: the texts are empty or the level masks nothing")
        mean = lens_sums / masked
        lens_stats = LensStats(mean[:, 0], mean[:, 1], mean[:, 2], masked)
    if attention:
        entropy, distance, neighbour = att_sums / queries
        att_stats = AttentionStats(entropy, distance, neighbour, log_len / queries, uniform / queries)
    return lens_stats, att_stats


@torch.no_grad()
def top_predictions(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int = 5
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, ids), each (B, L, k): the model's k likeliest tokens at every position."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, L, V)
    return logits.float().softmax(-1).topk(k, dim=-1)


@torch.no_grad()
def pseudo_log_likelihood(model, tokenizer, texts_ids: list[list[int]], starts: list[int] | None = None,
                          batch_size: int = 64) -> tuple[float, int]:
    """(summed log-probability, tokens scored) of texts under the masked model itself.

    Each token is masked alone and scored given all the others: the pseudo-log-likelihood of
    Salazar et al. 2020, "Masked Language Model Scoring".  ``texts_ids`` are token ids without
    special tokens, each scored as ``<s> text </s>``; ``starts[i]`` skips the first tokens of
    text i (a prompt: only the continuation is scored, given the prompt).  exp(-sum / tokens)
    is the pseudo-perplexity (lower: the model finds the text more like its training data).  It
    needs no judge, but a model can like its own output: compare settings of one model, not models.
    """
    rows, targets = [], []
    for t, ids in enumerate(texts_ids):
        full = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
        for i in range(1 + (starts[t] if starts else 0), len(full) - 1):
            row = list(full)
            targets.append((len(rows), i, row[i]))
            row[i] = tokenizer.mask_token_id
            rows.append(row)
    total, device = 0.0, next(model.parameters()).device
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(r) for r in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for r, row in enumerate(chunk):
            ids[r, :len(row)] = torch.tensor(row)
            attention[r, :len(row)] = 1
        logp = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float().log_softmax(-1)
        for row, pos, token in targets[start:start + batch_size]:
            total += float(logp[row - start, pos, token])
    return total, len(targets)
