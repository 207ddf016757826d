"""The variable-rate masking collator: rates, what is never masked, labels, determinism."""

import pytest
import torch

from data_collator import DEFAULT_MASK_LEVELS, VariableMaskingCollator
from diffusion.masked.levels import format_level

TEXTS = [
    "dog: a member of the genus Canis that has been domesticated by man since prehistoric times.",
    "the dog barked all night",
    "run: move fast by using one's feet, with one foot off the ground at any given time.",
    "a short one.",
] * 8


def encode(tokenizer, texts=TEXTS):
    return [{"input_ids": tokenizer(t)["input_ids"]} for t in texts]


def test_empirical_mask_rate_per_level(tokenizer):
    """Over many draws the masked fraction of maskable tokens matches each level."""
    examples = encode(tokenizer)
    for level in (0.1, 0.3, 0.5, 0.9, 1.0):
        collate = VariableMaskingCollator(tokenizer, mask_levels=(level,), seed=1)
        masked = maskable = 0
        for _ in range(60):
            batch = collate(examples)
            masked += int((batch["labels"] != -100).sum())
            maskable += int(batch["num_maskable"].sum())
            assert torch.all(batch["mask_rate"] == level)
        assert masked / maskable == pytest.approx(level, abs=0.015), level


def test_rates_are_drawn_from_the_levels_uniformly(tokenizer):
    collate = VariableMaskingCollator(tokenizer, seed=0)
    rates = torch.cat([collate(encode(tokenizer))["mask_rate"] for _ in range(100)])
    values, counts = rates.unique(return_counts=True)
    assert torch.allclose(values, torch.tensor(DEFAULT_MASK_LEVELS, dtype=torch.float32))
    assert counts.min() > 0.7 * counts.float().mean()


def test_special_tokens_and_padding_never_masked(tokenizer):
    collate = VariableMaskingCollator(tokenizer, mask_levels=(1.0,), seed=0)
    batch = collate(encode(tokenizer))
    masked = batch["labels"] != -100
    original = torch.where(masked, batch["labels"], batch["input_ids"])
    special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    assert not torch.any(masked & special)
    assert not torch.any(masked & (batch["attention_mask"] == 0))
    # at level 1.0 every non-special real token is masked
    assert torch.equal(masked, (batch["attention_mask"] == 1) & ~special)


def test_prefix_never_masked(tokenizer):
    prefix_len = 4
    collate = VariableMaskingCollator(tokenizer, mask_levels=(1.0,), prefix_len=prefix_len, seed=0)
    examples = encode(tokenizer)
    batch = collate(examples)
    for row, example in enumerate(examples):
        ids = example["input_ids"]
        # position 0 is <s>; the next prefix_len text tokens must be intact
        assert batch["input_ids"][row, : 1 + prefix_len].tolist() == ids[: 1 + prefix_len]
        assert torch.all(batch["labels"][row, : 1 + prefix_len] == -100)
        assert batch["num_maskable"][row] == len(ids) - 2 - prefix_len


def test_labels_exactly_where_masked(tokenizer):
    collate = VariableMaskingCollator(tokenizer, seed=3)
    examples = encode(tokenizer)
    batch = collate(examples)
    is_mask = batch["input_ids"] == tokenizer.mask_token_id
    has_label = batch["labels"] != -100
    assert torch.equal(is_mask, has_label)
    # labels hold the original ids
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        original = torch.tensor(example["input_ids"])
        assert torch.equal(batch["labels"][row, :n][has_label[row, :n]], original[has_label[row, :n]])


def test_one_rate_per_batch(tokenizer):
    collate = VariableMaskingCollator(tokenizer, per_example=False, seed=0)
    for _ in range(5):
        rates = collate(encode(tokenizer))["mask_rate"]
        assert torch.all(rates == rates[0])


def test_continuous_rates_and_elbo_weights(tokenizer):
    collate = VariableMaskingCollator(tokenizer, rate_sampling="continuous", schedule="linear", eps=1e-3, seed=0)
    batch = collate(encode(tokenizer))
    rates, weights = batch["mask_rate"], batch["elbo_weight"]
    assert torch.all((rates >= 1e-3) & (rates <= 1.0))
    assert len(rates.unique()) > 20  # continuous, not levels
    assert torch.allclose(weights, 1 / rates, rtol=1e-5)  # linear schedule: w = 1/t = 1/rate
    cosine = VariableMaskingCollator(tokenizer, rate_sampling="continuous", schedule="cosine", seed=0)
    assert torch.all(cosine(encode(tokenizer))["elbo_weight"] > 0)


def test_level_weights_are_one_over_rate(tokenizer):
    batch = VariableMaskingCollator(tokenizer, seed=0)(encode(tokenizer))
    assert torch.allclose(batch["elbo_weight"], 1 / batch["mask_rate"])


def test_same_seed_same_masks_and_state_restores(tokenizer):
    examples = encode(tokenizer)
    a = VariableMaskingCollator(tokenizer, seed=7)
    b = VariableMaskingCollator(tokenizer, seed=7)
    assert torch.equal(a(examples)["input_ids"], b(examples)["input_ids"])
    state = a.generator.get_state()
    first = a(examples)["input_ids"]
    a.generator.set_state(state)
    assert torch.equal(a(examples)["input_ids"], first)
    c = VariableMaskingCollator(tokenizer, seed=8)
    assert not torch.equal(c(examples)["input_ids"], first)


def test_level_of_bins_rates():
    class Tok:
        mask_token_id, pad_token_id, all_special_ids = 4, 1, [0, 1, 2, 3, 4]

    collate = VariableMaskingCollator(Tok(), mask_levels=(0.25, 0.5, 1.0))
    idx = collate.level_of(torch.tensor([0.01, 0.25, 0.3, 0.5, 0.75, 1.0], dtype=torch.float64))
    assert idx.tolist() == [0, 0, 1, 1, 2, 2]


def test_format_level():
    assert [format_level(x) for x in (0.1, 0.5, 1.0, 0.15)] == ["0.1", "0.5", "1.0", "0.15"]


def test_bad_inputs(tokenizer):
    class NoMask:
        mask_token_id, pad_token_id, all_special_ids = None, 1, [1]

    with pytest.raises(ValueError, match="no mask token"):
        VariableMaskingCollator(NoMask())
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        VariableMaskingCollator(tokenizer, mask_levels=(0.0, 0.5))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        VariableMaskingCollator(tokenizer, mask_levels=(1.5,))
    with pytest.raises(ValueError, match="known schedules"):
        VariableMaskingCollator(tokenizer, rate_sampling="continuous", schedule="nope")


def test_consumed_state_lags_prefetched_batches(tokenizer):
    """A loader collates ahead; the state to checkpoint is the one after the last *trained* batch."""
    examples = encode(tokenizer)
    collate = VariableMaskingCollator(tokenizer, seed=5)
    collate(examples)  # batch 1, trained on
    collate.mark_consumed()
    collate(examples)  # batch 2, only prefetched
    saved = collate.consumed_state
    resumed = VariableMaskingCollator(tokenizer, seed=999)
    resumed.restore_state(saved)
    reference = VariableMaskingCollator(tokenizer, seed=5)
    reference(examples)
    assert torch.equal(resumed(examples)["input_ids"], reference(examples)["input_ids"])


def test_eos_padding_pads_with_maskable_end_tokens(tokenizer):
    """--eos-padding: rows are </s>-padded to the length, attended, and </s> becomes a target."""
    examples = encode(tokenizer, ["the dog barked all night", "a short one."])
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    collate = VariableMaskingCollator(tokenizer, mask_levels=(1.0,), eos_padding_length=16, seed=0)
    batch = collate(examples)
    assert batch["input_ids"].shape == (2, 16)
    assert torch.all(batch["attention_mask"] == 1)  # the </s> tail is attended
    labels = batch["labels"]
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        expected = example["input_ids"][:-1] + [eos] * (16 - n + 1)  # text, then </s> to the end
        # At 100% everything but <s> is masked and is a target, the </s> tail included.
        assert labels[row, 0] == -100 and batch["input_ids"][row, 0] == bos
        assert labels[row, 1:].tolist() == expected[1:]
        assert int(batch["num_maskable"][row]) == 15
    # Without it, <pad> fills the tail, unattended, and </s> is never a target.
    plain = VariableMaskingCollator(tokenizer, mask_levels=(1.0,), seed=0)(examples)
    assert not (plain["labels"] == eos).any()
    assert plain["attention_mask"][1].sum() == len(examples[1]["input_ids"])


def test_eos_padding_leaves_long_rows_whole(tokenizer):
    examples = encode(tokenizer, [TEXTS[0], "a short one."])
    n_long = len(examples[0]["input_ids"])
    batch = VariableMaskingCollator(tokenizer, eos_padding_length=8, seed=0)(examples)
    assert batch["input_ids"].shape == (2, n_long)  # never truncates: --max-length does that
    with pytest.raises(ValueError, match="at least 3"):
        VariableMaskingCollator(tokenizer, eos_padding_length=2)
