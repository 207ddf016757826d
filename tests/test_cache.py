"""Cached block decoding (diffusion/masked/cache.py): where it is exact, what it computes, bad input."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    DistilBertConfig,
    DistilBertForMaskedLM,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaPreLayerNormConfig,
    RobertaPreLayerNormForMaskedLM,
)

import generate
from diffusion.masked.cache import BlockCache, cache_support, resolve_cache
from diffusion.masked.unmasking import DecodeOptions, build_prompt, decode

ARCHITECTURES = {
    "bert": (BertConfig, BertForMaskedLM),
    "roberta": (RobertaConfig, RobertaForMaskedLM),
    "roberta-prelayernorm": (RobertaPreLayerNormConfig, RobertaPreLayerNormForMaskedLM),
}


def micro(tokenizer, kind: str = "roberta-prelayernorm", layers: int = 2, positions: int = 40, seed: int = 0):
    """A seeded, untrained masked LM of ``kind`` with the bundled tokenizer's vocabulary."""
    config_class, model_class = ARCHITECTURES[kind]
    torch.manual_seed(seed)
    config = config_class(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=positions + 2, pad_token_id=tokenizer.pad_token_id,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return model_class(config).eval()


def decode_with(model, tokenizer, cache, prefix="dog: a", text=None, max_length=26, num_samples=3, **options):
    prompt = build_prompt(tokenizer, prefix=None if text else prefix, text=text, max_length=max_length,
                          num_samples=num_samples)
    options = {"sampling": "greedy", "threshold": 0, "block_length": 4, **options}
    return prompt, decode(model, tokenizer, prompt, DecodeOptions(cache=cache, **options))


@pytest.mark.parametrize("kind", list(ARCHITECTURES))
def test_block_pass_on_a_fresh_cache_equals_the_full_pass(tokenizer, kind):
    """The hand-written block pass is the model's forward restricted to the block: with the cache taken
    from the same window, both give the same logits (post- and pre-LayerNorm layers)."""
    model = micro(tokenizer, kind, layers=3)
    x = torch.randint(5, len(tokenizer), (2, 20))
    x[:, 12:] = tokenizer.mask_token_id
    at = torch.zeros_like(x, dtype=torch.bool)
    at[:, 8:12] = True
    with torch.no_grad():
        cache = BlockCache(model)
        full = cache.full_pass(x, at)  # (8, V)
        assert len(cache.keys) == len(cache.values) == 3  # one per layer
        assert all(k.shape == v.shape == (2, 20, 32) for k, v in zip(cache.keys, cache.values, strict=True))
        block = cache.block_pass(x, 8, 12, at)
        suffix = cache.block_pass(x, 8, 20, at)  # the prefix cache's pass
    assert full.shape == block.shape == (8, len(tokenizer))
    torch.testing.assert_close(block, full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(suffix, full, atol=1e-5, rtol=1e-4)


OPTIONS = [
    dict(),
    dict(sampling="topk", k=5, steps=9),
    dict(sampling="nucleus", p=0.8, temperature=0.7, schedule="cosine"),
    dict(remasking="random", sampling="topk", k=20),
    dict(refine=True, steps=12),
    dict(threshold=0.05),
]


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("options", OPTIONS)
def test_a_one_layer_model_decodes_exactly_with_the_cache(tokenizer, cache, options):
    """With one layer a position's keys depend only on its token, and tokens outside the block do not
    change inside it: the cache is exact, so the tokens must equal uncached decoding's."""
    model = micro(tokenizer, layers=1)
    _, plain = decode_with(model, tokenizer, "none", **options)
    _, cached = decode_with(model, tokenizer, cache, **options)
    assert torch.equal(cached.ids, plain.ids)
    assert cached.cache == cache and cached.positions_computed < plain.positions_computed


def test_infill_decodes_exactly_with_the_cache_on_one_layer(tokenizer):
    model = micro(tokenizer, layers=1)
    text = "dog: a [MASK] [MASK] [MASK] animal that [MASK] [MASK] and [MASK] [MASK]."
    prompt, plain = decode_with(model, tokenizer, "none", text=text)
    _, cached = decode_with(model, tokenizer, "dual", text=text)
    assert torch.equal(cached.ids, plain.ids)
    assert torch.equal(cached.ids[~prompt.generate], prompt.input_ids[~prompt.generate])  # fixed text kept


def test_refreshed_every_step_the_cache_gives_todays_tokens(tokenizer):
    """On a deeper model the cache is approximate; refreshed at every step it must not be."""
    model = micro(tokenizer, layers=3, seed=1)
    options = dict(sampling="topk", k=10, block_length=5)
    _, plain = decode_with(model, tokenizer, "none", **options)
    for cache in ("prefix", "dual"):
        _, refreshed = decode_with(model, tokenizer, cache, cache_refresh=1, **options)
        assert torch.equal(refreshed.ids, plain.ids)
        assert refreshed.positions_computed == plain.positions_computed  # every step a full pass
    _, cached = decode_with(model, tokenizer, "dual", **options)
    assert cached.positions_computed < plain.positions_computed
    assert not (cached.ids == tokenizer.mask_token_id).any()


def test_a_block_of_one_position_equals_full_decoding(tokenizer):
    model = micro(tokenizer, layers=3, seed=2)
    _, plain = decode_with(model, tokenizer, "none", block_length=1, sampling="nucleus")
    _, cached = decode_with(model, tokenizer, "dual", block_length=1, sampling="nucleus")
    assert torch.equal(cached.ids, plain.ids)


def test_positions_computed_per_pass(tokenizer):
    """Uncached, every pass computes the window; dual, a block's first pass does and the others only
    the block; prefix, the block and everything after it (one step per position, no threshold)."""
    model = micro(tokenizer, layers=2)
    prompt, plain = decode_with(model, tokenizer, "none", block_length=8)
    n_rows, window = prompt.input_ids.shape
    first = int(prompt.generate[0].nonzero()[0])  # the first generated column
    n_new = int(prompt.generate[0].sum())
    starts = list(range(first, first + n_new, 8))
    widths = [min(8, first + n_new - s) for s in starts]  # 8, 8, the rest
    assert len(widths) == 3 and plain.forward_passes == n_new
    assert plain.positions_computed == n_rows * n_new * window
    _, dual = decode_with(model, tokenizer, "dual", block_length=8)
    assert dual.positions_computed == n_rows * sum(window + (w - 1) * w for w in widths)
    _, prefix = decode_with(model, tokenizer, "prefix", block_length=8)
    assert prefix.positions_computed == n_rows * sum(window + (w - 1) * (window - s)
                                                     for s, w in zip(starts, widths, strict=True))
    # Blocks of 8 in a 64-position window (66 with <s> and </s>), one step per position: dual computes
    # over 4x fewer positions than uncached decoding (the formula above).
    assert (64 * 66) / (8 * (66 + 7 * 8)) > 4


@pytest.mark.parametrize("options", [dict(steps=5), dict(threshold=0.5), dict(refine=True), dict(remasking="random"),
                                     dict(schedule="exponential", steps=7, sampling="topk", k=3)])
def test_every_decoding_option_runs_with_the_cache(tokenizer, options):
    model = micro(tokenizer, layers=2, seed=3)
    for cache in ("prefix", "dual"):
        prompt, result = decode_with(model, tokenizer, cache, **{"sampling": "nucleus", **options})
        assert not (result.ids == tokenizer.mask_token_id).any()
        assert all(text.startswith("dog: a") for text in result.texts)
        assert torch.equal(result.ids[~prompt.generate], prompt.input_ids[~prompt.generate])


def test_the_default_cache(tokenizer):
    model = micro(tokenizer)
    assert resolve_cache(None, 8, model) == "dual"  # decoding in blocks
    assert resolve_cache(None, None, model) == "none"  # one block: nothing outside it to keep
    distil = DistilBertForMaskedLM(DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=1, n_heads=2,
                                                    hidden_dim=64))
    assert resolve_cache(None, 8, distil) == "none"  # a layout the block pass does not know
    assert "distilbert" in cache_support(distil)
    with pytest.raises(ValueError, match="--cache works on bert"):
        resolve_cache("dual", 8, distil)
    with pytest.raises(ValueError, match="needs blocks"):
        resolve_cache("prefix", None, model)


def test_cache_bad_input_is_one_line(checkpoint, capsys):
    c = ["--checkpoint", checkpoint, "--num-samples", "1"]
    for argv, needle in ((["--cache", "dual", "--block-length", "0"], "not --block-length 0"),
                         (["--cache", "dual"], "needs blocks (--block-length 8"),  # a model without --eos-padding
                         (["--cache", "full", "--block-length", "4"], "--cache must be one of none, prefix, dual"),
                         (["--cache-refresh", "-1", "--block-length", "4"], "--cache-refresh must be 0")):
        code = generate.main(c + argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and "\n" not in err and needle in err, (argv, err)
    assert generate.main(c + ["--cache", "dual", "--block-length", "4", "--steps", "8"]) == 0
    assert "blocks of 4, dual cache: 8 forward passes" in capsys.readouterr().out
