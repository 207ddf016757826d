"""Token ids <-> what a person reads: where a text ends, which tokens are never drawn, tokens one by one.

Every generator of the toolkit (the unmasking decoder, the causal baseline) follows the same two
rules, defined once here:

* a text ends at its first end-of-text token (``</s>``; GPT-2's ``<|endoftext|>``): what follows
  is dropped (:func:`cut_at_end`, :func:`decode_text`);
* special tokens other than the end of text (``<s>``, ``<pad>``, ``<unk>``, ``<mask>``) are never
  drawn (:func:`banned_ids`); the end of text is allowed, since it ends the text.
"""

from __future__ import annotations


def banned_ids(tokenizer) -> list[int]:
    """Special token ids a generator must never draw: every special id except the end of text."""
    return sorted({i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id})


def cut_at_end(ids: list[int], eos_id: int | None) -> list[int]:
    """``ids`` up to (without) the first ``eos_id``; all of them when there is none."""
    return ids[: ids.index(eos_id)] if eos_id is not None and eos_id in ids else ids


def decode_text(tokenizer, ids: list[int]) -> str:
    """Text of one generated sequence: a leading <s> and everything from the first </s> on dropped."""
    body = ids[1:] if ids and ids[0] == tokenizer.bos_token_id else ids
    return tokenizer.decode(cut_at_end(body, tokenizer.eos_token_id), skip_special_tokens=True).strip()


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    """Each id as the text it adds (' word', 'ing', '</s>'), so tokens can be shown one by one."""
    return [tokenizer.decode([i]) for i in ids]


def unknown_words(tokenizer, text: str) -> list[str]:
    """The pieces of ``text`` that ``tokenizer`` encodes as ``<unk>``, in order, once each.

    A byte-level BPE has none; a word-level vocabulary (data/word-tokenizer) has one per rare word,
    which a model is then given as ``<unk>`` and which the decoded text leaves out.
    """
    if tokenizer.unk_token_id is None or not text:
        return []
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    words = [text[start:end].strip() for i, (start, end) in zip(encoding["input_ids"], encoding["offset_mapping"],
                                                                 strict=True) if i == tokenizer.unk_token_id]
    return list(dict.fromkeys(w for w in words if w))
