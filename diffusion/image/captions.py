"""Captions for text-conditioned images (``--condition text``), and the frozen encoder that reads them.

    bank = CaptionBank(load_text_encoder("models/masked-base"))
    states, mask = bank.encode(["a handwritten seven", ""])      # (2, L, D), (2, L): "" is the null caption
    captions = training_captions([7, 3], rng)                    # a random training template per label

The digits have labels, not captions, so captions are made from the labels with templates (seed
004 does the same for its digits). Two templates are held out of training: sampling from them
measures whether the conditioning learned the *digit* or only the exact training phrases.

The encoder is frozen: a masked LM's encoder body (default the bundled ``models/masked-base``,
offline; ``--text-encoder HUB_ID``, e.g. a CLIP text model, with internet), its last hidden states
fed to the UNet's cross-attention. Captions repeat (ten digits x a handful of templates), so each
distinct caption is encoded once and kept.
"""

from __future__ import annotations

import os
import random

import torch

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_TEMPLATES = [
    "a handwritten {word}",
    "the digit {digit}",
    "a picture of the number {word}",
    "the number {digit}, written by hand",
    "{word}",
    "a {word} drawn in grey pixels",
]
HELD_OUT_TEMPLATES = [  # never seen in training
    "an image of the digit {word}",
    "handwritten number {digit}",
]
NULL_CAPTION = ""  # the unconditional branch of classifier-free guidance


def caption(template: str, label: int) -> str:
    return template.format(word=DIGIT_WORDS[label], digit=label)


def training_captions(labels, rng: random.Random) -> list[str]:
    return [caption(rng.choice(TRAIN_TEMPLATES), int(label)) for label in labels]


class CaptionBank:
    """Encodes captions with a frozen text encoder, each distinct caption once: (B, L, D) states and (B, L) masks."""

    def __init__(self, encoder, tokenizer, max_length: int = 24):
        self.encoder = encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def dim(self) -> int:
        return self.encoder.config.hidden_size

    @torch.no_grad()
    def _encode_new(self, texts: list[str]) -> None:
        batch = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        device = next(self.encoder.parameters()).device
        states = self.encoder(input_ids=batch["input_ids"].to(device),
                              attention_mask=batch["attention_mask"].to(device)).last_hidden_state
        for text, s, m in zip(texts, states.cpu(), batch["attention_mask"], strict=True):
            self._cache[text] = (s.float(), m.bool())

    def encode(self, texts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        new = sorted({t for t in texts if t not in self._cache})
        if new:
            self._encode_new(new)
        states = torch.stack([self._cache[t][0] for t in texts])
        mask = torch.stack([self._cache[t][1] for t in texts])
        return (states, mask) if device is None else (states.to(device), mask.to(device))


def load_text_encoder(name: str):
    """(encoder body, tokenizer) of a masked LM folder or hub id: ``AutoModel`` drops the LM head."""
    from transformers import AutoModel

    from diffusion.checkpoint import load_tokenizer
    from diffusion.hub import go_offline_if_unreachable
    from diffusion.paths import REPO_DIR

    if not os.path.isdir(name) and os.path.isdir(os.path.join(REPO_DIR, name)):
        name = os.path.join(REPO_DIR, name)  # a bundled model named relative to the repository (models/masked-base)
    if not os.path.isdir(name):
        go_offline_if_unreachable()
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the LM head it drops is expected, not worth a load report
    try:
        encoder = AutoModel.from_pretrained(name, add_pooling_layer=False)
    except TypeError:  # an encoder class without a pooler flag (CLIP's text model)
        encoder = AutoModel.from_pretrained(name)
    except Exception as err:  # OSError, ValueError, hub errors: one line for the terminal
        from diffusion.checkpoint import ModelLoadError

        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ModelLoadError(f"cannot load the text encoder {name!r} ({first}); offline, use the bundled "
                             f"models/masked-base") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return encoder, load_tokenizer(name)
