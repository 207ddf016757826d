"""The autoregressive baseline: a causal LM (GPT-2 architecture) writing left to right with its KV cache.

    gpt2, gpt2_tokenizer = load_causal("models/causal-base")
    result = generate_causal(gpt2, gpt2_tokenizer, causal_context(gpt2_tokenizer, "dog: a"), 30,
                             sampling="topk", k=50, seed=0)
    result.texts, result.token_times, result.forward_passes

One forward pass per token, each fed only the newest token and the cache, drawn by the very same
``sample_tokens`` as the diffusion decoder (diffusion/text/sampling.py) and cut at the first end
of text the same way (diffusion/text/tokens.py), so both sides of a comparison follow one rule.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from dataclasses import dataclass

import torch

from diffusion.checkpoint import ModelLoadError, load_model, load_tokenizer, usable_length
from diffusion.device import synchronize
from diffusion.text.sampling import sample_tokens
from diffusion.text.tokens import banned_ids, cut_at_end


def load_causal(name: str, role: str = "--gpt2-checkpoint"):
    """(model, tokenizer) of a left-to-right LM. AutoModelForCausalLM would also turn a masked
    RoBERTa into a (useless) decoder, so a checkpoint saved as a masked LM is refused rather than
    silently compared."""
    config_file = os.path.join(name, "config.json")
    if os.path.isfile(config_file):  # checked before loading, which would warn about the missing decoder
        with open(config_file) as f:
            architectures = json.load(f).get("architectures") or []
        if any("MaskedLM" in a for a in architectures):
            raise ModelLoadError(f"{role} {name!r} is a masked LM ({architectures[0]}), not a causal LM")
    return load_model("causal", name), load_tokenizer(name)


def causal_context(tokenizer, left_text: str | None) -> list[int]:
    """The causal model's start: its start token (``<s>``; GPT-2's ``<|endoftext|>``) + the left text.

    Our causal models were trained on ``<s> text </s>`` (diffusion/text/data.py), and the hub GPT-2 uses
    ``<|endoftext|>`` as the document separator, so either way generation starts at a document start.
    """
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = tokenizer(left_text, add_special_tokens=False)["input_ids"] if left_text else []
    return ([start] if start is not None else []) + ids


@dataclass
class CausalResult:
    ids: torch.Tensor  # (B, T) the generated tokens; a row that ended early holds eos after its end
    lengths: list[int]  # per row: tokens before its first eos
    texts: list[str]  # per row: the continuation, cut at the first eos (leading space kept)
    token_times: list[float]  # seconds from the start until column t was drawn, len T
    forward_passes: int
    seconds: float


@torch.no_grad()
def generate_causal(model, tokenizer, context: list[int], max_new_tokens: int, sampling: str = "greedy", k: int = 50,
                    p: float = 0.9, temperature: float = 1.0, seed: int = 0, num_samples: int = 1) -> CausalResult:
    """``num_samples`` continuations of ``context`` (ids, start token included), at most ``max_new_tokens`` each.

    A manual loop rather than ``model.generate`` so that every token is timed and drawn by the
    very same ``sample_tokens`` as the diffusion decoder (same banned specials, same seeded
    generator).  With the KV cache each step feeds only the newest token: (B, 1) after the
    first pass over the whole context (B, C).
    """
    if not context:
        raise ValueError("the causal model needs at least one context token (its tokenizer has no bos or eos)")
    limit = usable_length(model)
    if limit and len(context) + max_new_tokens > limit:
        raise ValueError(f"the causal model has {limit} positions: {len(context)} context + {max_new_tokens} new tokens "
                         f"do not fit; use a shorter --max-length or prompt")
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    eos = tokenizer.eos_token_id
    banned = banned_ids(tokenizer)  # never <s>, <pad>, <unk>, <mask>; eos is allowed: it ends the text

    x = torch.tensor([context] * num_samples, dtype=torch.long, device=device)  # (B, C)
    done = torch.zeros(num_samples, dtype=torch.bool, device=device)
    past, columns, times = None, [], []
    # The KV cache is called `cache` (argument and output) from transformers 5.24 on, and
    # `past_key_values` before; the old name still works there but warns.
    cache_name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    synchronize(device)
    started = time.perf_counter()
    for _ in range(max_new_tokens):
        out = model(input_ids=x, use_cache=True, **{cache_name: past})
        past = out[cache_name]
        tokens, _ = sample_tokens(out.logits[:, -1], sampling, k, p, temperature, generator, banned)  # (B,)
        if eos is not None:
            tokens = torch.where(done, torch.full_like(tokens, eos), tokens)  # a finished row stays finished
            done |= tokens == eos
        columns.append(tokens)
        x = tokens[:, None]  # (B, 1): the cache holds everything before it
        synchronize(device)
        times.append(time.perf_counter() - started)
        if bool(done.all()):
            break
    seconds = time.perf_counter() - started

    ids = torch.stack(columns, dim=1).cpu() if columns else torch.zeros((num_samples, 0), dtype=torch.long)  # (B, T)
    lengths, texts = [], []
    for row in ids.tolist():
        kept = cut_at_end(row, eos)
        lengths.append(len(kept))
        texts.append(tokenizer.decode(kept, skip_special_tokens=True))
    return CausalResult(ids=ids, lengths=lengths, texts=texts, token_times=times, forward_passes=len(columns),
                        seconds=seconds)
