"""Quality numbers for generated text: diversity, repetition, length, and perplexity under a judge.

Used by compare_models.py and benchmarks/quality.py (the latter through the thin ``evaluate``
module in diffusion/text/text_diversity/, which calls these same functions).

Every word-level number splits text on whitespace (``str.split()``): no tokenizer, so the
numbers do not depend on which model wrote the text, and "dog." and "dog" are different words.

* ``distinct_n(texts, n)``: unique word n-grams / total word n-grams, pooled over all texts of a
  setting (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation
  Models").  1.0 = no n-gram occurs twice anywhere; 0.0 when there are no n-grams at all.
* ``unigram_entropy(texts)``: entropy in nats of the pooled word distribution,
  H = -sum_w p(w) log p(w), p(w) = count(w) / total words.  log(V) when all V words are distinct.
* ``repetition_rate(texts, n=3)``: per text, the share of its word 3-grams that already appeared
  earlier in the *same* text (the degenerate loops of greedy decoding, Holtzman et al. 2020);
  averaged over the texts that have at least one 3-gram.
* ``known_word_rate(texts, vocabulary)``: the share of the texts' words (runs of letters,
  lower-cased) that occur in ``vocabulary``, e.g. every word of the training corpus
  (``corpus_vocabulary``): are the samples words at all, or fragments glued together?  Lenient:
  a fragment that happens to spell a rare corpus word counts as a word.
* ``judge_perplexity``: exp(mean negative log-likelihood per token of the continuations,
  conditioned on their prompts), under a causal LM that is neither generator, using the judge's
  own tokenizer.  Tokens of all samples are pooled (sum of NLL / number of tokens), the usual
  corpus-level perplexity; the end of text is not scored.

    texts = ["the dog ran", "the dog sat"]
    distinct_n(texts, 1)   # 4 unique of 6 words -> 0.667
    text_quality(texts)    # all of the above (without the judge) in one dict
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence

REPETITION_N = 3


def words(text: str) -> list[str]:
    """Word tokens: whitespace split (see the module docstring)."""
    return text.split()


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique / total word n-grams over all ``texts`` pooled (0.0 when there are none)."""
    grams = [g for text in texts for g in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def unigram_entropy(texts: Sequence[str]) -> float:
    """Entropy (nats) of the pooled word distribution of ``texts`` (0.0 when there are no words)."""
    counts = Counter(w for text in texts for w in words(text))
    total = sum(counts.values())
    # max(0, .): a single repeated word gives -0.0, which would print as "-0.00"
    return max(0.0, -sum(c / total * math.log(c / total) for c in counts.values())) if total else 0.0


def repetition_rate(texts: Sequence[str], n: int = REPETITION_N) -> float:
    """Mean over texts of the share of word n-grams already seen earlier in the same text."""
    rates = []
    for text in texts:
        grams = ngrams(words(text), n)
        if not grams:
            continue  # too short to repeat anything: no evidence either way
        seen: set[tuple[str, ...]] = set()
        repeats = 0
        for g in grams:
            repeats += g in seen
            seen.add(g)
        rates.append(repeats / len(grams))
    return sum(rates) / len(rates) if rates else 0.0


def text_quality(texts: Sequence[str], token_lengths: Sequence[int] | None = None) -> dict[str, float]:
    """Every judge-free number for one setting's ``texts`` (mean length in words, and in tokens if given)."""
    out = {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_3": distinct_n(texts, 3),
        "unigram_entropy": unigram_entropy(texts),
        "repetition_rate": repetition_rate(texts),
        "length_words": sum(len(words(t)) for t in texts) / len(texts) if texts else 0.0,
    }
    if token_lengths is not None:
        out["length_tokens"] = sum(token_lengths) / len(token_lengths) if token_lengths else 0.0
    return out


def letter_words(text: str) -> list[str]:
    """Runs of letters, lower-cased: "Dog's bark." -> ["dog", "s", "bark"] (known_word_rate's words)."""
    return re.findall(r"[a-z]+", text.lower())


def corpus_vocabulary(texts: Iterable[str]) -> set[str]:
    """Every letter word of ``texts`` (e.g. a training corpus)."""
    return {w for text in texts for w in letter_words(text)}


def known_word_rate(texts: Sequence[str], vocabulary: set[str]) -> float:
    """Share of the texts' letter words found in ``vocabulary`` (0.0 when there are no words)."""
    found = [w in vocabulary for text in texts for w in letter_words(text)]
    return sum(found) / len(found) if found else 0.0


def judge_token_ids(tokenizer, prompt: str, continuation: str) -> tuple[list[int], int]:
    """The judge's ids for ``prompt + continuation`` and how many of them are the context.

    The judge's start token (``bos``, else ``eos`` as GPT-2 uses ``<|endoftext|>``) opens the
    sequence, so even an empty prompt leaves the first continuation token something to be
    conditioned on.  Prompt and continuation are tokenised separately: the continuation keeps its
    leading space, so the split falls on a word boundary and no token straddles the two.
    """
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    context = ([start] if start is not None else []) + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target = tokenizer(continuation, add_special_tokens=False)["input_ids"] if continuation else []
    return context + target, len(context)


def judge_nll(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str],
              batch_size: int = 16) -> tuple[float, int]:
    """(summed NLL in nats, number of scored tokens) of the continuations given their prompts."""
    import torch
    import torch.nn.functional as F

    from diffusion.checkpoint import usable_length

    device = next(model.parameters()).device
    limit = usable_length(model)
    rows = []
    for prompt, continuation in zip(prompts, continuations, strict=True):
        ids, n_context = judge_token_ids(tokenizer, prompt, continuation)
        if limit:
            ids = ids[:limit]  # what does not fit is not scored
        if len(ids) > max(n_context, 1):
            rows.append((ids, max(n_context, 1)))
    total, count = 0.0, 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = rows[i:i + batch_size]
            width = max(len(ids) for ids, _ in batch)
            # Right padding: real tokens keep positions 0..n-1, so no position ids are needed.
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            scored = torch.zeros((len(batch), width), dtype=torch.bool)  # (B, W): the targets to score
            for b, (ids, n_context) in enumerate(batch):
                input_ids[b, :len(ids)] = torch.tensor(ids)
                scored[b, n_context:len(ids)] = True
            attention = (torch.arange(width)[None, :] < torch.tensor([len(ids) for ids, _ in batch])[:, None]).long()
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float().cpu()
            # logits at t predict the token at t + 1: (B, W-1, V) against (B, W-1)
            nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
            total += float(nll[scored[:, 1:]].sum())
            count += int(scored[:, 1:].sum())
    return total, count


def judge_perplexity(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str]) -> float | None:
    """exp(summed NLL / scored tokens); None when nothing was generated."""
    total, count = judge_nll(model, tokenizer, prompts, continuations)
    return math.exp(total / count) if count else None


def same_model(a: str, b: str) -> bool:
    """Whether two model names point at the same thing: one folder (symlinks resolved), or one hub id."""
    if os.path.isdir(a) or os.path.isdir(b):
        return os.path.realpath(a) == os.path.realpath(b)
    return a.strip("/") == b.strip("/")


def check_judge(judge: str, generators: dict[str, str]) -> None:
    """Refuse a judge that is one of the generators: a model rates its own text too kindly."""
    for side, model in generators.items():
        if same_model(judge, model):
            raise ValueError(f"--judge {judge!r} is the {side} generator itself ({model}); the judge must be neither "
                             f"generator: pass another causal LM")
