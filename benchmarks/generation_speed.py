"""Generation speed of iterative unmasking: tokens/s and forward passes against the number of steps.

    python benchmarks/generation_speed.py                                  # default model (see generate.py)
    python benchmarks/generation_speed.py --checkpoint results/final-model --samples 16 --output /tmp/gen.json

For 64 generated tokens (after a 3-token prompt from the held-out split) it decodes at 1, 8, 16, 32
and 64 steps uncached, then at 64 steps and with ``--threshold 0.9`` (at most 64 steps) with each
of ``--caches`` (none prefix dual, when decoding in blocks: diffusion/masked/cache.py), greedy and
low-confidence remasking.  The threshold settings also run one prompt at a time (mean passes per
prompt), since in a batch the slowest row sets the passes for all. It reports wall time, tokens/s,
forward passes, positions computed per generated position (row x position pairs through the
layers, over samples x generated positions), and a quality
proxy: the model's own masked-LM loss on what it generated (15% of the generated tokens masked, 4
seeded draws, mean cross-entropy; lower = the text agrees more with the model; the judge-scored
comparison is benchmarks/quality.py). Every setting sees the same prompts.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from diffusion.checkpoint import quiet_loading, usable_length  # noqa: E402
from diffusion.cli import parse_args, run_main  # noqa: E402
from diffusion.masked.cache import resolve_cache  # noqa: E402
from diffusion.masked.generation import load_generator  # noqa: E402
from diffusion.masked.unmasking import DecodeOptions, Prompt, decode, prompt_from_ids  # noqa: E402
from diffusion.text.data import held_out_documents  # noqa: E402

STEPS = (1, 8, 16, 32, 64)


@dataclass
class SpeedArguments:
    checkpoint: str | None = field(default=None, metadata={"help": "Masked model (default: as generate.py)."})
    samples: int = field(default=8, metadata={"help": "Prompts decoded as one batch."})
    generated: int = field(default=64, metadata={"help": "Tokens to generate per sample."})
    prompt_tokens: int = field(default=3, metadata={"help": "Tokens of each held-out text used as the prompt."})
    threshold: float = field(default=0.9, metadata={"help": "The --threshold of the parallel-decoding setting."})
    block_length: int | None = field(
        default=None,
        metadata={"help": "Semi-autoregressive blocks for every setting (default: the model's, as in generate.py: "
                  "8 after --eos-padding, else none; 0: none)."},
    )
    caches: list[str] = field(
        default_factory=lambda: ["none", "prefix", "dual"],
        metadata={"help": "--cache settings to time at the most steps and with --threshold (with blocks only)."},
    )
    repeats: int = field(default=2, metadata={"help": "Timed repeats per setting (best is kept)."})
    output: str | None = field(default=None, metadata={"help": "Also write the results as JSON."})

    def __post_init__(self) -> None:
        for name in ("samples", "generated", "prompt_tokens", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for cache in self.caches:
            DecodeOptions(threshold=self.threshold, cache=cache, block_length=self.block_length)  # the one check


def held_out_prompts(tokenizer, n: int, prompt_tokens: int, generated: int) -> Prompt:
    """<s> + the first ``prompt_tokens`` tokens of n held-out documents + masks + </s>, one row each."""
    rows = [prompt_from_ids(tokenizer, ids[:prompt_tokens], generated)
            for ids in held_out_documents(tokenizer, n, prompt_tokens)]
    return Prompt(input_ids=torch.cat([r.input_ids for r in rows]), generate=torch.cat([r.generate for r in rows]))


@torch.no_grad()
def self_mlm_loss(model, tokenizer, ids: torch.Tensor, generate: torch.Tensor, draws: int = 4) -> float:
    """Mean CE of the model re-predicting 15% of the generated tokens (seeded masks)."""
    total, count = 0.0, 0
    g = torch.Generator().manual_seed(1234)
    for _ in range(draws):
        pick = generate & (torch.rand(ids.shape, generator=g) < 0.15)
        noisy = ids.masked_fill(pick, tokenizer.mask_token_id)
        logits = model(input_ids=noisy, attention_mask=torch.ones_like(noisy)).logits
        total += float(F.cross_entropy(logits[pick].float(), ids[pick], reduction="sum"))
        count += int(pick.sum())
    return total / max(count, 1)


def run(argv: list[str]) -> int:
    (args,) = parse_args((SpeedArguments,), argv)
    quiet_loading()
    generator = load_generator(args.checkpoint, block_length=args.block_length)
    model, tokenizer, checkpoint, why = generator.model.eval(), generator.tokenizer, generator.checkpoint, generator.why
    positions = usable_length(model)
    if args.prompt_tokens + args.generated + 2 > positions:
        fitted = positions - args.prompt_tokens - 2
        print(f"note: {checkpoint} has {positions} positions; generating {fitted} tokens instead of {args.generated}")
        args.generated = fitted
    prompt = held_out_prompts(tokenizer, args.samples, args.prompt_tokens, args.generated)
    steps = [s for s in STEPS if s <= args.generated] + ([args.generated] if args.generated < max(STEPS) else [])
    blocks = generator.block_length  # as in generate.py; with B-position blocks every block takes at least one pass
    caches = [resolve_cache(c, blocks, model) for c in args.caches] if blocks else ["none"]
    if not blocks and args.caches != ["none"]:
        print("note: no blocks (this model's default), so only --cache none applies; give --block-length 8 to time "
              "the caches")
    plain = dict(sampling="greedy", block_length=blocks)  # the same settings as before the defaults changed
    settings = [(f"{s} step{'s' if s > 1 else ''}", DecodeOptions(steps=s, threshold=0, cache="none", **plain))
                for s in steps]
    for cache in caches:
        if cache != "none":
            settings.append((f"{max(steps)} steps, {cache} cache",
                             DecodeOptions(steps=max(steps), threshold=0, cache=cache, **plain)))
    for cache in caches:
        settings.append((f"threshold {args.threshold}, {cache} cache",
                         DecodeOptions(steps=max(steps), threshold=args.threshold, cache=cache, **plain)))

    for cache in caches:  # warm-up: every kind of pass once
        decode(model, tokenizer, prompt, DecodeOptions(steps=2, block_length=blocks, cache=cache))
    n_positions = args.samples * args.generated
    rows = []
    for name, options in settings:
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = decode(model, tokenizer, prompt, options)
            best = min(best, time.perf_counter() - started)
        rows.append({"setting": name, "forward_passes": result.forward_passes, "seconds": round(best, 3),
                     "tokens_per_s": round(n_positions / best, 1),
                     "positions_per_position": round(result.positions_computed / n_positions, 1),
                     "self_mlm_loss": round(self_mlm_loss(model, tokenizer, result.ids, prompt.generate), 3),
                     "example": result.texts[0]})
    # In a batch the row that takes longest sets the number of passes for all; decoded one prompt at a
    # time, each stops when it is done (how Fast-dLLM reports it). Passes: the mean over the prompts.
    for name, options in [(n, o) for n, o in settings if o.threshold]:
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            results = [decode(model, tokenizer, Prompt(prompt.input_ids[i:i + 1], prompt.generate[i:i + 1]), options)
                       for i in range(args.samples)]
            best = min(best, time.perf_counter() - started)
        passes = [r.forward_passes for r in results]
        ids = torch.cat([r.ids for r in results])
        rows.append({"setting": f"{name}, one prompt at a time",
                     "forward_passes": round(sum(passes) / len(passes), 1), "seconds": round(best, 3),
                     "tokens_per_s": round(n_positions / best, 1),
                     "positions_per_position": round(sum(r.positions_computed for r in results) / n_positions, 1),
                     "self_mlm_loss": round(self_mlm_loss(model, tokenizer, ids, prompt.generate), 3),
                     "example": results[0].texts[0]})

    print(f"model: {checkpoint} ({why})")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); {args.samples} samples x {args.generated} tokens, greedy, low-confidence"
          + (f", blocks of {blocks}" if blocks else ""))
    print(f"\n| setting | forward passes | positions computed / generated | wall s (best of {args.repeats}) | tokens/s "
          "| self MLM loss |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['setting']} | {r['forward_passes']} | {r['positions_per_position']} | {r['seconds']:.3f} "
              f"| {r['tokens_per_s']:,.0f} | {r['self_mlm_loss']:.3f} |")
    print("\nfirst sample of each setting:")
    for r in rows:
        print(f"  {r['setting']:>48}: {r['example'][:100]}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"checkpoint": checkpoint, "rows": rows}, f, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
