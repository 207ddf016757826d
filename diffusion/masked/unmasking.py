"""Iterative unmasking: generation for masked diffusion models.

Start with every generated position masked; at each of N steps, predict all masked positions at
once, commit some of the predictions, and leave the rest masked for the next step.  How many stay
masked after step k comes from the schedule core (``schedules.masked_counts``: L * (1 - alpha(t_k))
at t_k = 1 - k/N); *which* ones are committed is the remasking rule:

* ``low-confidence`` (default): commit the predictions the model is surest of, re-mask the others
  (MaskGIT, Chang et al. 2022; LLaDA, Nie et al. 2025);
* ``random``: commit a random subset (the reverse process of absorbing-state D3PM / MDLM);
* ``refine``: the original RoBERTa-diffusion recipe: every step re-predicts *all* generated
  positions and re-masks the least confident ones, so committed tokens can still change;
* ``threshold=P`` (default 0.9 with low-confidence remasking, ``0`` for none): also commit every
  prediction whose probability exceeds P, so confident stretches are decoded in parallel and the
  loop may end in fewer forward passes than steps (Fast-dLLM, Wu et al. 2025); at least one
  position is committed per step.  It also stops as soon as every text is complete (a committed
  ``</s>`` with nothing masked before it): what follows the first ``</s>`` is dropped anyway, so
  the rest is filled with ``</s>`` unseen;
* ``block_length=B``: semi-autoregressive decoding, blocks of B positions left to right, each
  unmasked with its share of the steps (LLaDA's semi-autoregressive remasking).  A model trained
  with ``--eos-padding`` needs it: it is surest of the ``</s>`` tail, so low-confidence remasking
  over the whole window commits ``</s>`` from the right until the text is one or two words long
  (measured in docs/BENCHMARKS.md); blocks keep the end of the text where the text has got to.

    prompt = build_prompt(tokenizer, prefix="A dog is", max_length=32, num_samples=4)
    result = decode(model, tokenizer, prompt, DecodeOptions(steps=10, sampling="topk", k=50, seed=0))
    result.texts            # 4 strings
    result.trace[k]         # the state after step k (trace[0] is the start): ids, masked, revealed, probs
    result.forward_passes   # model calls used

:class:`DecodeOptions` is also the decoding flags of every script that unmasks (generate.py,
visualize_generation.py, compare_models.py, the benchmarks), checked here and nowhere else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from diffusion import schedules
from diffusion.checkpoint import DiffusionConfig
from diffusion.masked.cache import CACHE_MODES, DEFAULT_CACHE, BlockCache, needs_blocks, resolve_cache
from diffusion.masked.logits import masked_logits
from diffusion.text.sampling import SamplingOptions, sample_tokens
from diffusion.text.tokens import banned_ids, cut_at_end, decode_text

MASK_PLACEHOLDER = "[MASK]"
REMASKING_RULES = ("low-confidence", "random")
# Block length used when none is asked for and the model was trained with --eos-padding: of 8, 16
# and 32 on the bundled model, only 8 kept texts at the corpus's length (docs/BENCHMARKS.md).
EOS_PADDED_BLOCK_LENGTH = 8
# The default --threshold (with low-confidence remasking): on the bundled model it gave the judge
# perplexity of one step per position (56.5 against 62.7) with a quarter of the forward passes
# (16.2 against 64 per prompt), docs/BENCHMARKS.md "Diffusion against GPT-2".
DEFAULT_THRESHOLD = 0.9


def check_block_length(block_length: int | None) -> None:
    """``--block-length``: None (the model's default), 0 (no blocks) or a positive length."""
    if block_length is not None and block_length < 0:
        raise ValueError(f"--block-length must be at least 1 (or 0 for none), got {block_length}")


def resolve_block_length(requested: int | None, diffusion_config: DiffusionConfig | None) -> int | None:
    """``--block-length`` as given (0: no blocks, returned as None), or, when not given, what the
    model's training asks for: EOS_PADDED_BLOCK_LENGTH after --eos-padding, else no blocks."""
    if requested is None:
        return EOS_PADDED_BLOCK_LENGTH if diffusion_config is not None and diffusion_config.eos_padding else None
    return requested or None


@dataclass
class DecodeOptions(SamplingOptions):
    """How the decoder unmasks; the decoding flags of every script (token sampling: SamplingOptions)."""

    steps: int | None = field(
        default=None,
        metadata={"help": "Denoising steps in all, shared among the blocks (forward passes; fewer with --threshold). "
                  "Default: one per generated position, the best text measured (docs/BENCHMARKS.md); fewer steps "
                  "commit several positions per pass and write worse text."},
    )
    schedule: str = field(
        default="linear",
        metadata={"help": f"How many positions stay masked after each step: {', '.join(schedules.available_schedules())}."},
    )
    remasking: str = field(
        default="low-confidence",
        metadata={"help": "Which masked positions are committed each step: low-confidence (surest first) | random."},
    )
    refine: bool = field(
        default=False,
        metadata={"help": "Re-predict every generated position at every step and re-mask the least confident "
                  "(the original recipe: committed tokens may still change)."},
    )
    threshold: float | None = field(
        default=None,
        metadata={"help": "Also commit every prediction with probability above this, and stop once every text has "
                  f"ended (parallel decoding, Fast-dLLM). Default: {DEFAULT_THRESHOLD} with low-confidence remasking "
                  "(the same quality as one step per position at a quarter of the passes, docs/BENCHMARKS.md), "
                  "none with --remasking random or --refine; 0 turns it off."},
    )
    block_length: int | None = field(
        default=None,
        metadata={"help": "Semi-autoregressive: unmask blocks of this many positions, left to right. Default: "
                  f"{EOS_PADDED_BLOCK_LENGTH} for a model trained with --eos-padding, else none; 0 turns blocks off."},
    )
    cache: str | None = field(
        default=None,
        metadata={"help": "Keep the keys and values outside the block from one full pass per block (Fast-dLLM): "
                  "none | prefix (the left part) | dual (both sides; each step computes only the block). "
                  f"Default: {DEFAULT_CACHE} when decoding in blocks (on the bundled model the judge perplexity of no "
                  "cache, 53.6 against 53.1, in 0.62x the time: docs/BENCHMARKS.md), else none."},
    )
    cache_refresh: int = field(
        default=0,
        metadata={"help": "With --cache: also recompute the cache every N steps inside a block (1: every step, the "
                  "same tokens as --cache none). Default 0: only at the start of each block."},
    )
    seed: int = field(default=0, metadata={"help": "Random seed: the same seed gives the same output."})

    def __post_init__(self) -> None:
        super().__post_init__()  # --sampling, --k, --p, --temperature
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.steps}")
        schedules.get_schedule(self.schedule)
        if self.remasking not in REMASKING_RULES:
            raise ValueError(f"--remasking must be one of {', '.join(REMASKING_RULES)}, got {self.remasking!r}")
        if self.threshold is not None:
            if not 0.0 <= self.threshold < 1.0:
                raise ValueError(f"--threshold must lie in (0, 1), or be 0 for none, got {self.threshold}")
            if self.refine and self.threshold:
                raise ValueError("--threshold commits tokens for good; it cannot be combined with --refine")
        check_block_length(self.block_length)
        if self.cache is not None and self.cache not in CACHE_MODES:
            raise ValueError(f"--cache must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        if self.block_length == 0 and self.cache not in (None, "none"):
            raise ValueError(needs_blocks(self.cache, 0))
        if self.cache_refresh < 0:
            raise ValueError(f"--cache-refresh must be 0 (only at each block's start) or a number of steps, "
                             f"got {self.cache_refresh}")

    @property
    def commit_threshold(self) -> float | None:
        """The --threshold in effect: as given (0: none), else DEFAULT_THRESHOLD for low-confidence remasking."""
        if self.threshold is None:
            return DEFAULT_THRESHOLD if self.remasking == "low-confidence" and not self.refine else None
        return self.threshold or None

    def total_steps(self, n_positions: int) -> int:
        """--steps, or one step per generated position (n_positions per sequence) when not given."""
        return self.steps or max(1, n_positions)

    def describe(self) -> str:
        """'top-k 50, linear schedule, 32 steps, blocks of 8': the settings as one line (frames, viewer, logs)."""
        extra = "".join([f", {self.remasking} remasking" if self.remasking != "low-confidence" else "",
                         ", refine" if self.refine else "",
                         f", threshold {self.commit_threshold}" if self.commit_threshold else "",
                         f", blocks of {self.block_length}" if self.block_length else "",
                         f", {self.cache} cache" if self.cache not in (None, "none") else "",
                         f" refreshed every {self.cache_refresh} steps" if self.cache not in (None, "none")
                         and self.cache_refresh else ""])
        steps = f"{self.steps} steps" if self.steps else "one step per position"
        return f"{super().describe()}, {self.schedule} schedule, {steps}{extra}"


def decoding_notes(options: DecodeOptions, n_positions: int, num_samples: int = 1) -> list[str]:
    """Flags that cannot change anything with the others, as one 'note: ...' line each (said once per run).

    n_positions: the positions to generate per sequence.
    """
    defaults = DecodeOptions()
    greedy = options.sampling == "greedy" or options.temperature == 0
    notes = []
    if options.sampling == "greedy" and options.temperature != defaults.temperature:
        notes.append(f"note: --temperature {options.temperature} has no effect with --sampling greedy "
                     f"(use --sampling topk or nucleus)")
    if options.sampling != "topk" and options.k != defaults.k:
        notes.append(f"note: --k {options.k} has no effect without --sampling topk")
    if options.sampling != "nucleus" and options.p != defaults.p:
        notes.append(f"note: --p {options.p} has no effect without --sampling nucleus")
    if options.cache_refresh and options.cache in (None, "none"):
        notes.append(f"note: --cache-refresh {options.cache_refresh} has no effect without a cache "
                     "(--cache prefix or dual, with --block-length)")
    if greedy and num_samples > 1 and options.remasking == "low-confidence":
        notes.append("note: greedy decoding gives every sample the same text; --sampling topk or nucleus gives "
                     "different ones")
    if options.schedule != defaults.schedule and n_positions > 0:
        # The same masked counts per step as the default schedule in every block: nothing changes.
        width = options.block_length or n_positions
        widths = [min(width, n_positions - start) for start in range(0, n_positions, width)]
        total = options.total_steps(n_positions)
        per_block = _steps_per_block(options.steps, widths)

        def counts(schedule: str) -> list[list[int]]:
            return [schedules.masked_counts(schedule, min(steps, w), w) for steps, w in zip(per_block, widths, strict=True)]

        if counts(options.schedule) == counts(defaults.schedule):
            one_each = all(steps >= w for steps, w in zip(per_block, widths, strict=True))
            larger = " or a larger --block-length" if options.block_length else ""
            fix = (f"every step reveals one position: fewer --steps{larger} let it differ" if one_each
                   else "give more --steps to see it differ")
            notes.append(f"note: --schedule {options.schedule} reveals the same number of positions per step as "
                         f"{defaults.schedule} here ({total} steps over {len(widths)} block(s) of up to "
                         f"{width} positions); {fix}")
    return notes


def blank_notes(tokenizer, result: DecodeResult, options: DecodeOptions) -> list[str]:
    """One 'note: ...' line when some samples came out empty or only whitespace, naming the cause.

    Two causes are known: the text ended at once (a committed </s> first), or the model was surest
    of whitespace everywhere. The second is a code folder on a tokenizer without whitespace runs
    (the bundled WordNet BPE: every indentation space is one token): spaces are the surest
    predictions, low-confidence remasking commits them first, and more spaces then fit best.
    """
    blank = [b for b, text in enumerate(result.texts) if not text.strip()]
    if not blank:
        return []
    eos = tokenizer.eos_token_id
    first = [result.ids[b][result.generate[b]].tolist()[:1] for b in blank]
    ended = sum(1 for ids in first if ids == [eos])
    which = f"{len(blank)} of {len(result.texts)} samples are"
    if ended == len(blank):
        return [f"note: {which} empty: the model ended the text at once (</s> first); give a --prefix, or "
                "--block-length 8 for a model trained with --eos-padding"]
    fix = ("--remasking random commits positions in random order and writes text instead"
           if options.remasking == "low-confidence" else "a tokenizer trained on this data would help")
    return [f"note: {which} only whitespace: the model is surest of spaces (code on a tokenizer without "
            f"whitespace runs spends one token per space), so low-confidence remasking commits them first; {fix}"]


@dataclass
class Prompt:
    input_ids: torch.Tensor  # (B, L) long; positions to generate hold the mask id
    generate: torch.Tensor  # (B, L) bool; True where the decoder fills in a token


@dataclass
class Step:
    """The state after one step (step 0: the start). All (B, L), on the CPU."""

    ids: torch.Tensor  # token ids, mask id where still masked
    masked: torch.Tensor  # bool
    revealed: torch.Tensor  # bool: committed in this step
    probs: torch.Tensor  # float: the committed token's probability where revealed, else 0
    seconds: float = 0.0  # wall time from the start of decode() until this state was ready


@dataclass
class DecodeResult:
    ids: torch.Tensor  # (B, L) final ids
    texts: list[str]
    trace: list[Step] = field(default_factory=list)
    forward_passes: int = 0
    generate: torch.Tensor | None = None  # (B, L) bool, the generated positions
    positions_computed: int = 0  # (row, position) pairs sent through the layers, over all passes
    cache: str = "none"  # the --cache decoded with


def prompt_from_ids(tokenizer, prompt_ids: list[int], n_new: int, num_samples: int = 1) -> Prompt:
    """``<s> prompt <mask> x n_new </s>`` from token ids (no specials), ``num_samples`` rows."""
    row = [tokenizer.bos_token_id] + list(prompt_ids) + [tokenizer.mask_token_id] * n_new + [tokenizer.eos_token_id]
    input_ids = torch.tensor([row] * num_samples, dtype=torch.long)
    return Prompt(input_ids=input_ids, generate=input_ids == tokenizer.mask_token_id)


def build_prompt(tokenizer, prefix: str | None = None, text: str | None = None, max_length: int = 64,
                 num_samples: int = 1) -> Prompt:
    """``<s> prefix <mask> ... <mask> </s>`` of ``max_length`` tokens, or an infill template.

    ``text`` is a template where each ``[MASK]`` stands for one token to generate; everything
    else in it is kept.  ``prefix`` and ``text`` exclude each other.
    """
    if num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {num_samples}")
    mask_id = tokenizer.mask_token_id
    if text is not None:
        if prefix:
            raise ValueError("give either --prefix (continue a prompt) or --text (fill a template), not both")
        if MASK_PLACEHOLDER not in text and tokenizer.mask_token not in text:
            raise ValueError(f"the --text template has no {MASK_PLACEHOLDER} to fill in")
        ids = tokenizer(text.replace(MASK_PLACEHOLDER, tokenizer.mask_token))["input_ids"]
        input_ids = torch.tensor([ids] * num_samples, dtype=torch.long)
        return Prompt(input_ids=input_ids, generate=input_ids == mask_id)
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    room = max_length - 2 - len(prefix_ids)  # minus <s> and </s>
    if room < 1:
        raise ValueError(f"the prefix is {len(prefix_ids)} tokens long; with <s> and </s> it leaves nothing "
                         f"to generate in --max-length {max_length}: use at least {len(prefix_ids) + 3}")
    return prompt_from_ids(tokenizer, prefix_ids, room, num_samples)


def _blocks(generate: torch.Tensor, block_length: int | None) -> list[tuple[int, int]]:
    """Column ranges [start, end) that hold the generated positions, left to right."""
    columns = generate.any(dim=0).nonzero().flatten().tolist()
    if not columns:
        return []
    first, last = columns[0], columns[-1] + 1
    if not block_length:  # None or 0: one block
        return [(first, last)]
    return [(s, min(s + block_length, last)) for s in range(first, last, block_length)]


def _split_steps(total: int, n_blocks: int) -> list[int]:
    """Share ``total`` steps among blocks (at least one each)."""
    base, extra = divmod(total, n_blocks)
    return [max(1, base + (1 if b < extra else 0)) for b in range(n_blocks)]


def _steps_per_block(steps: int | None, widths: list[int]) -> list[int]:
    """The steps of each block: --steps shared among them, or (not given) one per position of each."""
    return list(widths) if steps is None else _split_steps(steps, max(1, len(widths)))


def _masked_counts(schedule: str, n_steps: int, n_positions: list[int]) -> torch.Tensor:
    """(B, n_steps) long: how many of row b's positions are still masked after step k.

    From the schedule core; a row with fewer positions than steps reveals one per step and is
    done early (its remaining entries are 0).
    """
    rows = []
    for n in n_positions:
        row = schedules.masked_counts(schedule, min(n_steps, n), n) if n > 0 else []
        rows.append(row + [0] * (n_steps - len(row)))
    return torch.tensor(rows, dtype=torch.long).reshape(len(n_positions), n_steps)


def _top_n(scores: torch.Tensor, allowed: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the ``n[b]`` highest ``scores`` among ``allowed`` positions of each row."""
    scores = scores.masked_fill(~allowed, float("-inf"))
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)
    return allowed & (rank < n[:, None])


@torch.no_grad()
def decode(model, tokenizer, prompt: Prompt, options: DecodeOptions) -> DecodeResult:
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(options.seed)
    mask_id = tokenizer.mask_token_id
    banned = banned_ids(tokenizer)  # never <s>, <pad>, <unk>, <mask>; </s> ends the text early

    x = prompt.input_ids.clone().to(device)  # (B, L)
    generate = prompt.generate.to(device)
    x[generate] = mask_id
    attention = torch.ones_like(x)
    zeros_b = torch.zeros_like(x, dtype=torch.bool).cpu()
    started = time.perf_counter()  # each Step's .seconds; its .cpu() copies wait for the device
    trace = [Step(x.cpu().clone(), (x == mask_id).cpu(), zeros_b, torch.zeros(x.shape))]
    passes = 0

    threshold = options.commit_threshold
    # --cache: a full pass at the start of each block keeps every layer's keys and values; the other
    # steps send only the block (dual) or the block and what follows it (prefix) through the layers.
    cache = resolve_cache(options.cache, options.block_length, model)
    kv = BlockCache(model) if cache != "none" else None
    computed = 0  # (row, position) pairs through the layers
    blocks = _blocks(generate, options.block_length)
    per_block = _steps_per_block(options.steps, [end - start for start, end in blocks])
    for (start, end), block_steps in zip(blocks, per_block, strict=False):
        in_block = generate.clone()
        in_block[:, :start] = False
        in_block[:, end:] = False
        n_positions = in_block.sum(dim=1)  # (B,)
        n_steps = min(block_steps, int(n_positions.max()))
        counts = _masked_counts(options.schedule, n_steps, n_positions.tolist()).to(device)  # (B, n_steps)

        for k in range(n_steps):
            masked_now = x == mask_id
            # Refinement re-predicts every generated position of the block, the others only masked ones.
            predict_at = in_block if options.refine else in_block & masked_now  # (B, L)
            if not predict_at.any():
                break
            if kv is None or k == 0 or (options.cache_refresh and k % options.cache_refresh == 0):
                # the whole window (with a cache: the same pass, keeping every layer's keys and values)
                logits = kv.full_pass(x, predict_at) if kv else masked_logits(model, x, attention, predict_at)  # (N, V)
                first, last = 0, x.shape[1]
            else:
                first, last = start, (end if cache == "dual" else x.shape[1])
                logits = kv.block_pass(x, first, last, predict_at)
            passes += 1
            computed += x.shape[0] * (last - first)
            tokens, probs = sample_tokens(logits, options.sampling, options.k, options.p, options.temperature,
                                          generator, banned)
            prediction = x.clone()
            prediction[predict_at] = tokens
            confidence = torch.zeros(x.shape, device=device)
            confidence[predict_at] = probs
            # The order in which positions get committed: surest first, or random.
            if options.remasking == "low-confidence":
                order = confidence
            else:
                order = torch.rand(x.shape, generator=generator, device=device)

            if options.refine:
                # Keep counts[k] of the block's positions masked: the least preferred ones.
                n_keep = in_block.sum(dim=1) - counts[:, k]
                keep = _top_n(order, in_block, n_keep)
                new_x = torch.where(keep, prediction, torch.where(in_block, torch.full_like(x, mask_id), x))
            else:
                n_commit = (masked_now & in_block).sum(dim=1) - counts[:, k]
                commit = _top_n(order, predict_at, n_commit.clamp_min(0))
                if threshold is not None:
                    commit |= predict_at & (confidence > threshold)
                    # at least one position per step for every row that still has masks
                    best = _top_n(confidence, predict_at, torch.ones_like(n_commit))
                    none = ~commit.any(dim=1, keepdim=True)
                    commit |= best & none
                new_x = torch.where(commit, prediction, x)

            revealed = masked_now & (new_x != mask_id)
            x = new_x
            trace.append(Step(x.cpu().clone(), (x == mask_id).cpu(), revealed.cpu(),
                              torch.where(revealed, confidence, torch.zeros_like(confidence)).cpu(),
                              time.perf_counter() - started))
            if threshold is not None and (not (in_block & (x == mask_id)).any()
                                                  or _texts_complete(x, generate, mask_id, tokenizer.eos_token_id)):
                break  # this block (or every text) is done early: the saving of parallel decoding
        if threshold is not None and _texts_complete(x, generate, mask_id, tokenizer.eos_token_id):
            # Every text has ended: fill what is left with </s> (it is dropped) and skip the passes.
            tail = generate & (x == mask_id)
            x = x.masked_fill(tail, tokenizer.eos_token_id)
            # probs 0: filled, not predicted
            trace.append(Step(x.cpu().clone(), (x == mask_id).cpu(), tail.cpu(), torch.zeros(x.shape),
                              time.perf_counter() - started))
            break

    assert not (generate & (x == mask_id)).any(), "decoding left masks behind"
    texts = [decode_text(tokenizer, row) for row in x.cpu().tolist()]
    return DecodeResult(ids=x.cpu(), texts=texts, trace=trace, forward_passes=passes, generate=prompt.generate,
                        positions_computed=computed, cache=cache)


def _texts_complete(x: torch.Tensor, generate: torch.Tensor, mask_id: int, eos_id: int) -> bool:
    """True when every row has a committed </s> among its generated positions with no mask before it.

    x, generate: (B, L).  Positions after that </s> cannot change the text (decode_text drops them).
    """
    ended = generate & (x == eos_id)  # (B, L)
    if not (x == mask_id).any() or not ended.any(dim=1).all():
        return False  # nothing left to save, or a text still open
    first_end = ended.float().argmax(dim=1)  # (B,) column of each row's first generated </s>
    before = torch.arange(x.shape[1], device=x.device)[None, :] < first_end[:, None]  # (B, L)
    return not (before & (x == mask_id)).any()


def continuations(tokenizer, prompt: Prompt, ids: torch.Tensor) -> tuple[list[str], list[str], list[int]]:
    """Per row of a decoded batch: (left context, continuation, continuation tokens).

    The left context is the fixed text before the first generated position (the prefix, or in
    infilling the text before the first [MASK]); the continuation is everything after it up to
    the first ``</s>`` (as decode_text cuts), so in infilling it also holds the template's fixed
    text after the first gap.  The continuation keeps its leading space, so context +
    continuation reads as one text: what the quality metrics and the judge see.
    """
    lefts, texts, lengths = [], [], []
    for row, generate in zip(ids.tolist(), prompt.generate.tolist(), strict=True):
        first = generate.index(True) if True in generate else len(row)
        start = 1 if row and row[0] == tokenizer.bos_token_id else 0
        rest = cut_at_end(row[first:], tokenizer.eos_token_id)
        lefts.append(tokenizer.decode(row[start:first], skip_special_tokens=True))
        texts.append(tokenizer.decode(rest, skip_special_tokens=True))
        lengths.append(len(rest))
    return lefts, texts, lengths
