"""generate.py and the decoder behind it: invariants of iterative unmasking, CLI, bad input."""

from __future__ import annotations

import json
import os
import re
from types import SimpleNamespace

import pytest
import torch

import generate
from diffusion.checkpoint import DEFAULT_MODELS
from diffusion.masked.unmasking import DecodeOptions, build_prompt, decode
from diffusion.paths import BUNDLED_MASKED_MODEL
from diffusion.text.models import build_model
from diffusion.text.sampling import sample_tokens
from diffusion.text.tokens import decode_text


@pytest.fixture(scope="session")
def model(checkpoint):
    from transformers import AutoModelForMaskedLM

    return AutoModelForMaskedLM.from_pretrained(checkpoint).eval()


def run(model, tokenizer, prefix=None, text=None, max_length=24, num_samples=3, **options):
    """Decode with greedy sampling and no --threshold unless asked: the invariants below are about the
    schedule and the remasking rule, which the defaults (nucleus, threshold 0.9) would blur."""
    prompt = build_prompt(tokenizer, prefix=prefix, text=text, max_length=max_length, num_samples=num_samples)
    options = {"sampling": "greedy", "threshold": 0, **options}
    return prompt, decode(model, tokenizer, prompt, DecodeOptions(**options))


ALL_MODES = [
    dict(steps=5),
    dict(steps=7, schedule="cosine", sampling="topk", k=5),
    dict(steps=4, schedule="exponential", sampling="nucleus", p=0.8, temperature=0.7),
    dict(steps=6, remasking="random", sampling="topk", k=20),
    dict(steps=6, refine=True),
    dict(steps=8, threshold=0.5),
    dict(steps=6, block_length=5),
]


@pytest.mark.parametrize("options", ALL_MODES)
def test_prefix_kept_and_nothing_left_masked(model, tokenizer, options):
    prompt, result = run(model, tokenizer, prefix="dog: a domestic", **options)
    fixed = ~prompt.generate
    for step in result.trace:
        assert torch.equal(step.ids[fixed], prompt.input_ids[fixed])  # prefix, <s>, </s> never change
    assert not (result.ids == tokenizer.mask_token_id).any()
    assert all(text.startswith("dog: a domestic") for text in result.texts)
    assert result.forward_passes <= options["steps"]
    banned = torch.tensor([i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id])
    assert not torch.isin(result.ids[prompt.generate], banned).any()  # no <s>, <pad>, <unk>, <mask> drawn


@pytest.mark.parametrize("options", ALL_MODES)
def test_infill_text_never_changes(model, tokenizer, options):
    template = "dog: a [MASK] [MASK] of the genus Canis that has been [MASK] by man."
    prompt, result = run(model, tokenizer, text=template, **options)
    assert int(prompt.generate[0].sum()) == 3
    fixed = ~prompt.generate
    assert torch.equal(result.ids[fixed], prompt.input_ids[fixed])
    assert not (result.ids == tokenizer.mask_token_id).any()
    for text in result.texts:
        assert text.startswith("dog: a") and "of the genus Canis that has been" in text


def test_trace_follows_the_schedule(model, tokenizer):
    prompt, result = run(model, tokenizer, max_length=22, steps=5, num_samples=2)  # 20 generated positions
    assert len(result.trace) == 6 and result.forward_passes == 5
    still_masked = [int(step.masked[0].sum()) for step in result.trace]
    assert still_masked == [20, 16, 12, 8, 4, 0]  # linear: 4 per step
    for before, after in zip(result.trace, result.trace[1:], strict=False):
        assert torch.equal(after.revealed, before.masked & ~after.masked)
        assert torch.all(after.probs[after.revealed] > 0) and torch.all(after.probs[~after.revealed] == 0)
        # committed tokens stay (no --refine)
        kept = ~before.masked
        assert torch.equal(after.ids[kept], before.ids[kept])


def test_low_confidence_commits_the_most_probable(model, tokenizer):
    _, result = run(model, tokenizer, max_length=22, steps=5, num_samples=1)
    first = result.trace[1]
    assert first.revealed.sum() == 4
    # every committed probability is at least as high as the model's best guess elsewhere at step 1:
    # re-run step 1 and compare against the uncommitted positions' top probabilities
    prompt = build_prompt(tokenizer, max_length=22)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=prompt.input_ids).logits.float(), -1)
    banned = [i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id]
    probs[..., banned] = 0
    top = probs.max(-1).values[0]
    committed = first.revealed[0]
    assert top[committed].min() >= top[prompt.generate[0] & ~committed].max() - 1e-6


def test_same_seed_same_output_other_seed_differs(model, tokenizer):
    a = run(model, tokenizer, steps=5, sampling="topk", k=50, seed=1)[1]
    b = run(model, tokenizer, steps=5, sampling="topk", k=50, seed=1)[1]
    c = run(model, tokenizer, steps=5, sampling="topk", k=50, seed=2)[1]
    assert torch.equal(a.ids, b.ids) and a.texts == b.texts
    assert not torch.equal(a.ids, c.ids)


def test_topk_with_k1_equals_greedy(model, tokenizer):
    greedy = run(model, tokenizer, steps=5, sampling="greedy")[1]
    top1 = run(model, tokenizer, steps=5, sampling="topk", k=1, seed=123)[1]
    assert torch.equal(greedy.ids, top1.ids)


@pytest.mark.parametrize("threshold", [1e-6, 0.3, 0.9, 0.999])
def test_threshold_never_uses_more_passes_than_steps(model, tokenizer, threshold):
    _, result = run(model, tokenizer, steps=10, threshold=threshold, max_length=30)
    assert 1 <= result.forward_passes <= 10
    # one entry per pass after the start, plus one if the </s> tail was filled without a pass
    assert result.forward_passes + 1 <= len(result.trace) <= result.forward_passes + 2
    assert not (result.ids == tokenizer.mask_token_id).any()
    if threshold == 1e-6:
        assert result.forward_passes == 1  # everything clears the bar at once


class SureModel(torch.nn.Module):
    """A stand-in masked LM that is sure of everything: ``word`` before column ``end``, ``</s>`` from it on."""

    def __init__(self, vocab_size: int, word: int, eos: int, end: int):
        super().__init__()
        self.vocab_size, self.word, self.eos, self.end = vocab_size, word, eos, end
        self.unused = torch.nn.Parameter(torch.zeros(1))  # decode() reads the device from the parameters

    def get_output_embeddings(self):
        return None  # masked_logits then selects from the full (B, L, V) logits

    def forward(self, input_ids, attention_mask=None):
        logits = torch.full((*input_ids.shape, self.vocab_size), -20.0)
        logits[:, :self.end, self.word] = 20.0
        logits[:, self.end:, self.eos] = 20.0
        return SimpleNamespace(logits=logits)


def test_blank_samples_are_explained(tokenizer):
    """A code model on the WordNet tokenizer was surest of spaces and printed blank samples: say why,
    and name the flag that writes text; a text that ends at once is another cause, said as such."""
    from diffusion.masked.unmasking import blank_notes

    space = tokenizer.convert_tokens_to_ids("\u0120")  # byte-level BPE's lone space
    prompt = build_prompt(tokenizer, max_length=12, num_samples=2)
    spaces = decode(SureModel(len(tokenizer), space, tokenizer.eos_token_id, end=12), tokenizer, prompt, DecodeOptions())
    assert spaces.texts == ["", ""]
    (note,) = blank_notes(tokenizer, spaces, DecodeOptions())
    assert note.startswith("note: 2 of 2 samples are only whitespace") and "--remasking random" in note
    ended = decode(SureModel(len(tokenizer), space, tokenizer.eos_token_id, end=1), tokenizer, prompt, DecodeOptions())
    assert "ended the text at once" in blank_notes(tokenizer, ended, DecodeOptions())[0]
    word = tokenizer.convert_tokens_to_ids("\u0120dog")
    words = decode(SureModel(len(tokenizer), word, tokenizer.eos_token_id, end=12), tokenizer, prompt, DecodeOptions())
    assert blank_notes(tokenizer, words, DecodeOptions()) == []


def test_defaults_nucleus_one_step_per_position_and_threshold():
    """The defaults chosen by docs/BENCHMARKS.md's judged table, and what turns each off."""
    options = DecodeOptions()
    assert (options.sampling, options.p, options.steps, options.commit_threshold) == ("nucleus", 0.9, None, 0.9)
    assert options.total_steps(62) == 62 and DecodeOptions(steps=10).total_steps(62) == 10
    assert DecodeOptions(threshold=0).commit_threshold is None
    assert DecodeOptions(refine=True).commit_threshold is None  # refine may change tokens: no threshold
    assert DecodeOptions(remasking="random").commit_threshold is None
    assert DecodeOptions(threshold=0.5, remasking="random").commit_threshold == 0.5
    assert options.describe() == "nucleus p=0.9, linear schedule, one step per position, threshold 0.9"
    with pytest.raises(ValueError, match="cannot be combined with --refine"):
        DecodeOptions(refine=True, threshold=0.9)


def test_default_steps_give_every_block_one_step_per_position(model, tokenizer):
    # 22 generated positions in blocks of 8, 8, 6: 22 passes, one position each, whatever the schedule
    prompt = build_prompt(tokenizer, max_length=24, num_samples=2)
    result = decode(model, tokenizer, prompt, DecodeOptions(threshold=0, block_length=8, schedule="cosine", seed=1))
    assert result.forward_passes == 22
    assert all(int(step.revealed[0].sum()) == 1 for step in result.trace[1:])
    assert result.texts[0] != result.texts[1]  # nucleus: the two samples differ


def test_threshold_stops_once_every_text_has_ended(tokenizer):
    """Columns 1-5 are text, the model is sure of </s> from column 6: with --threshold the decoder
    stops after the block holding the end and fills the tail with </s>, without more passes."""
    word = tokenizer.convert_tokens_to_ids("Ġdog")
    sure = SureModel(len(tokenizer), word, tokenizer.eos_token_id, end=6)
    prompt = build_prompt(tokenizer, max_length=30, num_samples=2)  # 28 generated positions, columns 1-28
    fast = decode(sure, tokenizer, prompt, DecodeOptions(steps=28, threshold=0.9, block_length=4))
    slow = decode(sure, tokenizer, prompt, DecodeOptions(steps=28, threshold=0, block_length=4))
    assert fast.forward_passes == 2 and slow.forward_passes == 28  # blocks 1-4 and 5-8, then done
    assert fast.texts == slow.texts == ["dog dog dog dog dog"] * 2
    assert torch.equal(fast.ids, slow.ids)
    filled = fast.trace[-1]
    assert filled.revealed[0].sum() == 20 and torch.all(filled.ids[0, 9:29] == tokenizer.eos_token_id)
    assert torch.all(filled.probs == 0)  # filled, not predicted
    assert len(fast.trace) == fast.forward_passes + 2


def test_blocks_unmask_left_to_right(model, tokenizer):
    prompt, result = run(model, tokenizer, max_length=22, steps=4, block_length=10, num_samples=1)
    gen_cols = prompt.generate[0].nonzero().flatten()
    first_block, second_block = gen_cols[:10], gen_cols[10:]
    for step in result.trace[1:3]:  # the first block's two steps
        assert step.masked[0, second_block].all()
    assert not result.trace[2].masked[0, first_block].any()
    assert not result.trace[-1].masked.any()


def test_refine_can_change_committed_tokens_and_follows_counts(model, tokenizer):
    _, result = run(model, tokenizer, max_length=22, steps=5, refine=True, sampling="topk", k=50, num_samples=4)
    assert [int(s.masked[0].sum()) for s in result.trace] == [20, 16, 12, 8, 4, 0]
    changed = any(
        bool(((~before.masked) & (~after.masked) & (before.ids != after.ids)).any())
        for before, after in zip(result.trace[1:], result.trace[2:], strict=False)
    )
    assert changed  # with sampling, re-predicted tokens differ somewhere


def test_text_after_first_eos_is_dropped(tokenizer):
    ids = [tokenizer.bos_token_id] + tokenizer("a dog", add_special_tokens=False)["input_ids"]
    ids += [tokenizer.eos_token_id] + tokenizer(" barks", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert decode_text(tokenizer, ids) == "a dog"


def test_sample_tokens_rules():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 5.0, 4.0, 1.0, -1.0]] * 200)
    greedy, probs = sample_tokens(logits, "greedy")
    assert greedy.eq(1).all() and torch.allclose(probs, torch.softmax(logits, -1)[:, 1])
    top2, _ = sample_tokens(logits, "topk", k=2, generator=g)
    assert set(top2.tolist()) == {1, 2}
    nucleus, _ = sample_tokens(logits, "nucleus", p=0.5, generator=g)
    assert nucleus.eq(1).all()  # token 1 alone holds > 50% of the mass
    banned, _ = sample_tokens(logits, "topk", k=2, generator=g, banned_ids=[1])
    assert set(banned.tolist()) == {2, 3}
    cold, _ = sample_tokens(logits, "nucleus", p=1.0, temperature=0.0, generator=g)
    assert cold.eq(1).all()
    for bad in (dict(k=0), dict(p=0.0), dict(p=1.5), dict(temperature=-1.0), dict(method="beam")):
        with pytest.raises(ValueError):
            sample_tokens(logits, **{"method": "topk", **bad})


# ------------------------------------------------------------------------------- the CLI
def test_cli_prints_samples_and_json(checkpoint, capsys):
    assert generate.main(["--checkpoint", checkpoint, "--num-samples", "2", "--steps", "4", "--show-steps"]) == 0
    out = capsys.readouterr().out
    assert f"model: {checkpoint} (from --checkpoint)" in out
    assert "[1] " in out and "[2] " in out and "[3] " not in out
    assert "step   0: [MASK] [MASK]" in out
    assert "4 forward passes" in out
    assert generate.main(["--checkpoint", checkpoint, "--json", "--steps", "4", "--num-samples", "2",
                          "--prefix", "dog:", "--threshold", "0.9"]) == 0
    data = json.loads(capsys.readouterr().out)  # --json: stdout is the JSON and nothing else
    assert len(data["samples"]) == 2 and data["forward_passes"] <= 4
    steps = data["samples"][0]["steps"]
    assert len(steps) == data["forward_passes"] + 1
    masked0 = steps[0]["masked"]
    assert steps[0]["tokens"][0] == "<s>" and steps[0]["tokens"][-1] == "</s>"
    assert not masked0[0] and not masked0[1] and masked0[-2] and not masked0[-1]  # <s> prefix ... masks </s>
    assert masked0 == sorted(masked0[:-1]) + [False]  # prefix first, then only masks
    assert not any(steps[-1]["masked"]) and data["samples"][0]["text"].startswith("dog:")
    assert len(steps[-1]["ids"]) == 32  # max length from diffusion_config.json


SEED_COMMANDS = [  # the generate commands of the original README, run from a folder with results/final-model
    ["--checkpoint", "results/final-model"],
    ["--schedule", "linear"], ["--schedule", "cosine"], ["--schedule", "exponential"],
    ["--sampling", "greedy"], ["--sampling", "topk", "--k", "50"], ["--sampling", "nucleus", "--p", "0.9"],
    ["--temperature", "0.7"],
]


@pytest.mark.parametrize("argv", SEED_COMMANDS, ids=lambda a: " ".join(a))
def test_original_readme_commands(argv, tmp_path, monkeypatch, capsys):
    """Typed verbatim where results/final-model is the bundled base: three different definition-like
    texts (a word, a colon, a gloss), except greedy, which says once that its samples are the same."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "final-model").symlink_to(os.path.abspath(BUNDLED_MASKED_MODEL))
    monkeypatch.chdir(tmp_path)
    assert generate.main(argv) == 0
    captured = capsys.readouterr()
    assert "model: results/final-model" in captured.out
    texts = re.findall(r"^\[\d\] (.*)$", captured.out, flags=re.MULTILINE)
    assert len(texts) == 3 and all(re.match(r"^\S+(?: \S+)*: \S", text) for text in texts), texts
    if "greedy" in argv:
        assert len(set(texts)) == 1 and captured.err.count("every sample the same text") == 1
    else:
        assert len(set(texts)) == 3, texts


def _error(capsys, argv, *needles):
    code = generate.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_bad_inputs(checkpoint, tmp_path, capsys, tokenizer, monkeypatch):
    c = ["--checkpoint", checkpoint]
    _error(capsys, ["--checkpoint", str(tmp_path / "nope")], "does not exist")
    (tmp_path / "empty").mkdir()
    _error(capsys, ["--checkpoint", str(tmp_path / "empty")], "cannot load")
    gpt2 = tmp_path / "gpt2"
    build_model("causal", "tiny", tokenizer, 32, {"n_embd": "32", "n_layer": "1", "n_head": "2"}).save_pretrained(gpt2)
    tokenizer.save_pretrained(gpt2)
    capsys.readouterr()  # drop save_pretrained's progress bar
    _error(capsys, ["--checkpoint", str(gpt2)], "is not a masked LM")
    _error(capsys, c + ["--sampling", "nucleus", "--p", "1.5"], "--p must lie in (0, 1]")
    _error(capsys, c + ["--p", "0"], "--p must lie in (0, 1]")
    _error(capsys, c + ["--k", "0"], "--k must be at least 1")
    _error(capsys, c + ["--temperature", "-0.5"], "--temperature must be >= 0")
    _error(capsys, c + ["--steps", "0"], "--steps must be at least 1")
    _error(capsys, c + ["--block-length", "-1"], "--block-length must be at least 1 (or 0 for none)")
    _error(capsys, c + ["--schedule", "zigzag"], "known schedules: linear")
    _error(capsys, c + ["--prefix", "a b c d e f g h i j", "--max-length", "8"], "leaves nothing to generate")
    _error(capsys, c + ["--text", "no placeholder here"], "has no [MASK]")
    _error(capsys, c + ["--max-length", "500"], "longer than the 32 positions")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(DEFAULT_MODELS, "masked", [("results/final-model", "trained"), (str(tmp_path / "no-bundle"), "bundled")])
    _error(capsys, [], "no --checkpoint given", "python train.py --quick-test")


def test_a_model_trained_with_eos_padding_decodes_in_blocks_by_default(checkpoint, tmp_path, capsys):
    """Such a model is surest of its </s> tail; one block over the window lets that tail eat the
    text, so generate.py uses blocks of 8 unless told otherwise (--block-length 0: none)."""
    import shutil

    eos_model = tmp_path / "eos-model"
    shutil.copytree(checkpoint, eos_model)
    config = json.loads((eos_model / "diffusion_config.json").read_text())
    (eos_model / "diffusion_config.json").write_text(json.dumps({**config, "eos_padding": True}))
    base = ["--checkpoint", str(eos_model), "--steps", "8", "--num-samples", "1"]
    assert generate.main(base) == 0
    out = capsys.readouterr().out
    # and the dual cache, the default with blocks (diffusion/masked/cache.py)
    assert "trained with --eos-padding, so blocks of 8" in out and "blocks of 8, dual cache: 8 forward passes" in out
    assert generate.main(base + ["--block-length", "0"]) == 0
    assert "blocks of" not in capsys.readouterr().out
    assert generate.main(base + ["--block-length", "4"]) == 0
    assert "blocks of 4, dual cache:" in capsys.readouterr().out
    assert generate.main(["--checkpoint", checkpoint, "--steps", "8", "--num-samples", "1"]) == 0
    assert "blocks of" not in capsys.readouterr().out  # trained without it: one block, as before
