"""The variable-rate masking collator: what turns a masked LM into a diffusion model.

Standard BERT/RoBERTa pre-training masks 15% of the tokens.  Masked (absorbing-state)
diffusion instead draws a noise level for every example and masks that fraction of it, from
10% up to 100%, so that one network learns to denoise at *every* corruption level
(D3PM, Austin et al. 2021; MDLM, Sahoo et al. 2024; the RoBERTa-diffusion recipe).
Generation then runs the levels backwards: 100% masked -> ... -> 0% (see generate.py).

    from transformers import AutoTokenizer
    from data_collator import VariableMaskingCollator
    tok = AutoTokenizer.from_pretrained("data/tokenizer")
    collate = VariableMaskingCollator(tok)
    batch = collate([tok("word: a unit of language.")])
    # batch["input_ids"]   (B, L) with <mask> at the chosen positions
    # batch["labels"]      (B, L) original ids where masked, -100 elsewhere
    # batch["mask_rate"]   (B,)   the rate drawn for each example
    # batch["elbo_weight"] (B,)   -alpha'(t) / (1 - alpha(t)) for that draw (1 / rate when linear)
    # batch["num_maskable"] (B,)  tokens that could have been masked (not special, not prefix)

Differences from ``DataCollatorForLanguageModeling``: the rate varies per example (or per
batch), masked tokens become ``<mask>`` only (no 80/10/10 replacement, since the diffusion
forward process has a single absorbing state), and the first ``prefix_len`` text tokens are
never masked so that the model learns to continue a fixed prompt.

With ``eos_padding_length=N`` every example is padded to N tokens with ``</s>`` instead of
``<pad>``; those ``</s>`` are attended and maskable like text, so the model learns to predict
where a text ends and that everything after the end is ``</s>`` (the padding of LLaDA's SFT,
Nie et al. 2025, Sec. 2.3). Generation fills a fixed window, so a model trained this way ends
its texts, and it is sure of the ``</s>`` tail early: confidence-threshold decoding then commits
the tail in a few passes (Fast-dLLM).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from diffusion import schedules
from diffusion.masked.levels import DEFAULT_MASK_LEVELS, level_index


def pad_input_ids(examples: Sequence[dict[str, Any]], pad_token_id: int, pad_to_multiple_of: int | None = None):
    """Right-pad ``examples[i]["input_ids"]`` to one length.

    Returns ``input_ids`` (B, L) long and ``attention_mask`` (B, L) long (1 = real token).
    """
    lengths = [len(example["input_ids"]) for example in examples]
    width = max(lengths)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (example, n) in enumerate(zip(examples, lengths, strict=True)):
        input_ids[row, :n] = torch.as_tensor(example["input_ids"], dtype=torch.long)
        attention_mask[row, :n] = 1
    return input_ids, attention_mask


def maskable_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: Sequence[int], prefix_len: int):
    """(B, L) bool: real, non-special tokens that come after the first ``prefix_len`` text tokens."""
    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=input_ids.dtype))
    content = attention_mask.bool() & ~special
    # Position of each content token among the content tokens of its row: 1, 2, 3, ...
    content_rank = content.long().cumsum(dim=1)
    return content & (content_rank > prefix_len)


def choose_masked(maskable: torch.Tensor, rates: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pick ``rate * n`` of each row's ``n`` maskable positions uniformly at random.

    maskable: (B, L) bool, rates: (B,) float in (0, 1].  Returns (B, L) bool.

    The count is ``floor(rate * n + u)`` with ``u ~ U[0, 1)``: stochastic rounding, so the
    expected count is exactly ``rate * n`` even for short rows (a 5-token row at rate 0.1
    gets one mask half of the time, none otherwise).  Forcing at least one mask instead
    would bias short documents towards higher rates (measured: 0.118 instead of 0.1 at
    level 0.1 on short texts); a row that draws none simply adds nothing to the loss.
    """
    n_maskable = maskable.sum(dim=1)  # (B,)
    u = torch.rand(rates.shape, generator=generator, dtype=torch.float64)
    n_mask = torch.floor(rates.double() * n_maskable + u).long()
    n_mask = torch.minimum(n_mask, n_maskable)
    # A random score per position; non-maskable ones sort last.  rank = position in sorted order.
    scores = torch.rand(maskable.shape, generator=generator)
    scores = scores.masked_fill(~maskable, 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)  # (B, L)
    return rank < n_mask[:, None]


@dataclass
class VariableMaskingCollator:
    """Pads a list of ``{"input_ids": [...]}`` examples and masks each at a random rate.

    Rates come from ``mask_levels`` (default 0.1, 0.2, ..., 1.0, chosen uniformly) or, with
    ``rate_sampling="continuous"``, from ``t ~ U[eps, 1]`` mapped through ``schedule`` to
    ``1 - alpha(t)``.  ``per_example=False`` draws one rate for the whole batch (the original
    RoBERTa-diffusion recipe); the default draws one per example, which gives every batch a
    spread of levels and a smoother loss.

    Randomness comes from this collator's own ``generator`` (seeded by ``seed``), not from
    torch's global state: the trainer saves its state in every checkpoint, so a resumed run
    draws exactly the masks the uninterrupted run would have drawn.  Data loaders collate
    ahead of the training step (accelerate prefetches one batch to spot the last one), so the
    state to save is not the current one but the one after the last batch the model actually
    consumed: ``mark_consumed()`` (called by the trainer once per batch) tracks it.
    """

    tokenizer: PreTrainedTokenizerBase
    mask_levels: Sequence[float] = DEFAULT_MASK_LEVELS
    rate_sampling: str = "levels"  # "levels" | "continuous"
    schedule: str = "linear"  # used by rate_sampling="continuous" only
    eps: float = 1e-3
    per_example: bool = True
    prefix_len: int = 0
    seed: int = 0
    pad_to_multiple_of: int | None = None
    eos_padding_length: int | None = None  # pad with maskable </s> to this length (see the module docstring)
    generator: torch.Generator = field(init=False, repr=False)
    consumed_state: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token; masked diffusion needs one (e.g. RoBERTa's <mask>)")
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no padding token; set tokenizer.pad_token first")
        if not self.mask_levels:
            raise ValueError("mask_levels is empty")
        bad = [level for level in self.mask_levels if not 0.0 < level <= 1.0]
        if bad:
            raise ValueError(f"mask levels must lie in (0, 1], got {bad}")
        if self.rate_sampling not in ("levels", "continuous"):
            raise ValueError(f"rate_sampling must be 'levels' or 'continuous', got {self.rate_sampling!r}")
        if not 0.0 < self.eps < 1.0:
            raise ValueError(f"eps must lie in (0, 1), got {self.eps}")
        if self.prefix_len < 0:
            raise ValueError(f"prefix_len must be >= 0, got {self.prefix_len}")
        if self.eos_padding_length is not None:
            if self.tokenizer.eos_token_id is None:
                raise ValueError("eos_padding_length needs a tokenizer with an end-of-text token (</s>)")
            if self.eos_padding_length < 3:
                raise ValueError(f"eos_padding_length must be at least 3, got {self.eos_padding_length}")
        schedules.get_schedule(self.schedule)  # unknown names fail here, listing the known ones
        self.mask_levels = tuple(sorted(float(level) for level in self.mask_levels))
        self.generator = torch.Generator().manual_seed(self.seed)
        self.consumed_state = self.generator.get_state()
        self._states_after_call: deque[torch.Tensor] = deque(maxlen=1024)  # collated, not yet consumed
        # Ids that are never masked. With EOS padding </s> is a target like any text token.
        never_masked = set(self.tokenizer.all_special_ids)
        if self.eos_padding_length is not None:
            never_masked.discard(self.tokenizer.eos_token_id)
        self._special_ids = sorted(never_masked)

    def sample_rates(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(mask_rate, elbo_weight)``, each (B,) float32."""
        n_draws = batch_size if self.per_example else 1
        if self.rate_sampling == "levels":
            levels = torch.tensor(self.mask_levels, dtype=torch.float64)
            idx = torch.randint(len(levels), (n_draws,), generator=self.generator)
            rates = levels[idx]
            # A fixed level r is the time t = r of the linear schedule, whose weight is 1 / r.
            weights = schedules.elbo_weight("linear", rates)
        else:
            u = torch.rand(n_draws, generator=self.generator, dtype=torch.float64)
            t = schedules.training_time(u, self.eps)  # t ~ U[eps, 1]
            rates = schedules.mask_probability(self.schedule, t)
            weights = schedules.elbo_weight(self.schedule, t)
        rates, weights = rates.float(), weights.float()
        if not self.per_example:
            rates, weights = rates.expand(batch_size), weights.expand(batch_size)
        return rates.contiguous(), weights.contiguous()

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        self._reseed_in_worker()
        if self.eos_padding_length is None:
            input_ids, attention_mask = pad_input_ids(examples, self.tokenizer.pad_token_id, self.pad_to_multiple_of)
        else:
            # <s> text </s> </s> ... </s>, at least eos_padding_length wide, every position attended.
            padded = [{"input_ids": list(e["input_ids"])
                       + [self.tokenizer.eos_token_id] * (self.eos_padding_length - len(e["input_ids"]))}
                      for e in examples]
            input_ids, attention_mask = pad_input_ids(padded, self.tokenizer.eos_token_id, self.pad_to_multiple_of)
            attention_mask.fill_(1)
        maskable = maskable_positions(input_ids, attention_mask, self._special_ids, self.prefix_len)
        rates, weights = self.sample_rates(len(examples))
        masked = choose_masked(maskable, rates, self.generator)  # (B, L) bool
        labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
        noisy_ids = input_ids.masked_fill(masked, self.tokenizer.mask_token_id)
        self._states_after_call.append(self.generator.get_state())
        return {
            "input_ids": noisy_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "mask_rate": rates,
            "elbo_weight": weights,
            "num_maskable": maskable.sum(dim=1),
        }

    def mark_consumed(self) -> None:
        """The oldest collated batch has been trained on: its generator state becomes the one to save."""
        if self._states_after_call:
            self.consumed_state = self._states_after_call.popleft()

    def restore_state(self, state: torch.Tensor) -> None:
        """Continue from a saved ``consumed_state`` (a resumed run)."""
        self.generator.set_state(state)
        self.consumed_state = state
        self._states_after_call.clear()

    def _reseed_in_worker(self) -> None:
        """DataLoader workers each get a copy of this collator; without a distinct seed they
        would all draw the same random numbers. (Exact resume needs num_workers=0.)"""
        info = torch.utils.data.get_worker_info()
        if info is not None and getattr(self, "_worker_id", None) != info.id:
            self._worker_id = info.id
            self.generator.manual_seed(self.seed + 7919 * (info.id + 1))

    def level_of(self, rates: torch.Tensor) -> torch.Tensor:
        """Index into ``mask_levels`` of the level each rate is logged under (diffusion/masked/levels.py). (B,) long."""
        return level_index(rates, self.mask_levels)

    def fixed_level(self, level: float, eos_padding: bool = False) -> VariableMaskingCollator:
        """A collator that masks every example at exactly ``level``: evaluation, one level at a time.

        Same tokenizer and prefix; rows padded with ``<pad>``, or with maskable ``</s>`` as this
        collator does when ``eos_padding``.  The trainer reseeds its generator for every batch.
        """
        return VariableMaskingCollator(self.tokenizer, mask_levels=(level,), prefix_len=self.prefix_len,
                                       eos_padding_length=self.eos_padding_length if eos_padding else None)
