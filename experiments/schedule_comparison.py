"""Try different schedules and compare: the same prompts decoded with every schedule at several step counts.

    python experiments/schedule_comparison.py
    python experiments/schedule_comparison.py --checkpoint results/final-model --steps 4 8 16 24
    python experiments/schedule_comparison.py --judge JUDGE          # a causal LM scores the texts too

The first ``--prompt-tokens`` (3) tokens of ``--num-prompts`` held-out documents (the rule of
benchmarks/quality.py) are continued by ``--max-new-tokens`` (24) tokens, ``--samples-per-prompt``
samples each, with every schedule of diffusion/schedules.py (``--schedules``) at each of
``--steps``, the same seeds for every setting.  Decoding follows the schedule exactly
(``--threshold 0``: a step commits as many positions as the schedule says, no more).  A model
trained with ``--eos-padding`` decodes in its blocks of 8, as generate.py does, and the schedule
then runs within each block.  Per setting it reports:

* **pseudo-perplexity** of the continuations under the model itself (each token masked alone,
  given the prompt and the rest: Salazar et al. 2020), no judge needed; lower is more like the
  training text. A model can like its own mistakes, so compare settings, not models;
* **judge perplexity** with ``--judge`` (a causal LM that is not the generator);
* distinct-2 (diversity) and the mean length in tokens (up to the first ``</s>``);
* how many positions each step revealed (from the decoder's own trace).

It prints the table and writes ``schedule_comparison.png`` (tokens revealed per step at
``--show-steps`` steps; quality and diversity against steps), ``table.md`` and ``data.json``
into ``--output-dir`` (results/experiments/schedule_comparison-<model folder>).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from diffusion import schedules  # noqa: E402
from diffusion.checkpoint import quiet_loading, resolve_model  # noqa: E402
from diffusion.cli import parse_args, run_main  # noqa: E402
from diffusion.masked.analysis import pseudo_log_likelihood  # noqa: E402
from diffusion.masked.generation import load_generator  # noqa: E402
from diffusion.masked.unmasking import DecodeOptions, continuations, decode, prompt_from_ids  # noqa: E402
from diffusion.paths import TRAINED_MODEL  # noqa: E402
from diffusion.text.causal import load_causal  # noqa: E402
from diffusion.text.data import held_out_documents  # noqa: E402
from diffusion.text.metrics import check_judge, distinct_n, judge_perplexity  # noqa: E402
from diffusion.text.sampling import SamplingOptions  # noqa: E402
from diffusion.text.tokens import cut_at_end  # noqa: E402
from diffusion.viz.report import ReportArguments, matplotlib_pyplot, write_report  # noqa: E402


@dataclass
class ScheduleArguments:
    checkpoint: str | None = field(
        default=None, metadata={"help": f"Masked model folder or hub id. Default: {TRAINED_MODEL} if it exists, "
                                        "else the bundled models/masked-base."})
    schedules: list[str] = field(default_factory=schedules.available_schedules,
                                 metadata={"help": "Schedules to compare (default: every registered one)."})
    steps: list[int] = field(default_factory=lambda: [4, 8, 16, 24], metadata={"help": "Step counts to compare."})
    show_steps: int = field(default=8, metadata={"help": "The step count whose tokens-revealed-per-step is drawn."})
    num_prompts: int = field(default=8, metadata={"help": "Held-out prompts."})
    prompt_tokens: int = field(default=3, metadata={"help": "Tokens of each held-out document used as its prompt."})
    max_new_tokens: int = field(default=24, metadata={"help": "Positions to generate after each prompt."})
    samples_per_prompt: int = field(default=2, metadata={"help": "Samples per prompt (seed: --seed + prompt index)."})
    block_length: int | None = field(default=None, metadata={"help": "Blocks as generate.py (default: the model's; "
                                                                     "0: none)."})
    judge: str | None = field(default=None, metadata={"help": "A causal LM (not the generator) for judge perplexity."})
    seed: int = field(default=0, metadata={"help": "Seed of the first prompt's samples."})

    def __post_init__(self) -> None:
        for name in self.schedules:
            schedules.get_schedule(name)  # an unknown name lists the known ones
        if self.max_new_tokens < 1 or self.num_prompts < 1 or self.samples_per_prompt < 1 or self.prompt_tokens < 1:
            raise ValueError("--max-new-tokens, --num-prompts, --samples-per-prompt and --prompt-tokens must be >= 1")
        bad = [s for s in self.steps if not 1 <= s <= self.max_new_tokens]
        if bad or not self.steps:
            raise ValueError(f"--steps must lie in 1..--max-new-tokens ({self.max_new_tokens}): each step reveals "
                             f"at least one position, got {self.steps}")
        self.steps = sorted(set(self.steps))
        if self.show_steps not in self.steps:
            raise ValueError(f"--show-steps {self.show_steps} is not one of --steps {self.steps}")


def _shown(value: float | None, width: int) -> str:
    """A perplexity in the table, or '-' where there was nothing to score (every text empty)."""
    return f"{value:{width}.1f}" if value is not None else "-".rjust(width)


def figure(rows: list[dict], reference: dict, args: ScheduleArguments, judged: bool, blocks: int | None):
    plt = matplotlib_pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    shown = [r for r in rows if r["steps"] == args.show_steps]
    width = 0.8 / max(1, len(shown))
    for i, r in enumerate(shown):
        ks = [k + 1 + (i - (len(shown) - 1) / 2) * width for k in range(len(r["revealed_per_step"]))]
        axes[0].bar(ks, r["revealed_per_step"], width=width, label=r["schedule"])
    axes[0].set_xlabel(f"step (of {args.show_steps})")
    axes[0].set_ylabel("positions revealed (mean per sample)")
    within = f", blocks of {blocks}" if blocks else ""
    axes[0].set_title(f"(a) Tokens revealed per step: {args.max_new_tokens} positions{within}")
    axes[0].legend(fontsize=8)
    key, label = ("judge_perplexity", "judge perplexity") if judged else ("pseudo_perplexity", "pseudo-perplexity (own model)")
    for ax, (k, lab, title) in zip(axes[1:], ((key, label, f"(b) Quality: {label} (lower is better)"),
                                             ("distinct_2", "distinct-2", "(c) Diversity: distinct-2 (higher: more varied)")),
                                   strict=True):
        for name in args.schedules:
            points = [r for r in rows if r["schedule"] == name]
            ax.plot([r["steps"] for r in points], [math.nan if r[k] is None else r[k] for r in points],
                    marker="o", label=name)
        if reference[k] is not None:
            ax.axhline(reference[k], color="gray", linestyle=":", label="held-out text")
        ax.set_xscale("log", base=2)
        ax.set_xticks(args.steps, labels=[str(s) for s in args.steps])
        ax.set_xlabel("diffusion steps (forward passes)")
        ax.set_ylabel(lab)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    fig.tight_layout()
    return fig


def run(argv: list[str]) -> int:
    args, sampling, report = parse_args((ScheduleArguments, SamplingOptions, ReportArguments), argv)
    name, _ = resolve_model(args.checkpoint, "--checkpoint", "masked")
    folder = report.checked_folder("schedule_comparison", name)
    if args.judge:
        check_judge(args.judge, {"diffusion": name})
    quiet_loading()
    generator = load_generator(args.checkpoint, args.prompt_tokens + args.max_new_tokens + 2, args.block_length)
    model, tokenizer = generator.model.eval(), generator.tokenizer
    base = generator.resolve(DecodeOptions(threshold=0, **vars(sampling)))
    judge = load_causal(args.judge, "--judge") if args.judge else None
    docs = held_out_documents(tokenizer, args.num_prompts, args.prompt_tokens)
    prompt_ids = [d[:args.prompt_tokens] for d in docs]
    print(f"model: {generator.checkpoint} ({generator.why})")
    print(f"{len(docs)} held-out prompts x {args.samples_per_prompt} samples x {args.max_new_tokens} new tokens, "
          f"{sampling.describe()}, threshold 0 (the schedule exactly)"
          + (f", blocks of {base.block_length} ({base.cache} cache)" if base.block_length else ""))

    # The yardstick: the held-out documents' own next tokens, scored the same way.
    refs = [d[:args.prompt_tokens + args.max_new_tokens] for d in docs]
    total, n = pseudo_log_likelihood(model, tokenizer, refs, [args.prompt_tokens] * len(refs))
    ref_texts = [tokenizer.decode(d[args.prompt_tokens:]) for d in refs]
    reference = {"pseudo_perplexity": math.exp(-total / n),
                 "judge_perplexity": judge_perplexity(judge[0], judge[1], [tokenizer.decode(p) for p in prompt_ids],
                                                      ref_texts) if judge else None,
                 "distinct_2": distinct_n(ref_texts, 2), "length_tokens": n / len(refs)}
    print(f"held-out text: pseudo-perplexity {reference['pseudo_perplexity']:.1f}"
          + (f"  judge perplexity {reference['judge_perplexity']:.1f}" if judge else "")
          + f"  distinct-2 {reference['distinct_2']:.3f}")

    rows = []
    for steps in args.steps:
        for schedule in args.schedules:
            texts, contexts, scored, starts, revealed, passes = [], [], [], [], [0.0] * steps, 0
            for i, ids in enumerate(prompt_ids):
                prompt = prompt_from_ids(tokenizer, ids, args.max_new_tokens, args.samples_per_prompt)
                result = decode(model, tokenizer, prompt,
                                dataclasses.replace(base, steps=steps, schedule=schedule, seed=args.seed + i))
                lefts, conts, _ = continuations(tokenizer, prompt, result.ids)
                contexts += lefts
                texts += conts
                passes += result.forward_passes
                for row in result.ids.tolist():
                    new = cut_at_end(row[1 + len(ids):], tokenizer.eos_token_id)
                    scored.append(list(ids) + new)
                    starts.append(len(ids))
                for k, step in enumerate(result.trace[1:]):  # trace[0] is the start
                    revealed[k] += float(step.revealed.sum()) / len(result.texts)
            total, n = pseudo_log_likelihood(model, tokenizer, scored, starts)
            row = {"steps": steps, "schedule": schedule,
                   "pseudo_perplexity": math.exp(-total / n) if n else None,
                   "judge_perplexity": judge_perplexity(judge[0], judge[1], contexts, texts) if judge else None,
                   "distinct_2": distinct_n(texts, 2),
                   "length_tokens": sum(len(s) - st for s, st in zip(scored, starts, strict=True)) / len(scored),
                   "forward_passes_per_prompt": passes / len(prompt_ids),
                   "revealed_per_step": [round(v / len(prompt_ids), 3) for v in revealed],
                   "example": contexts[0] + texts[0]}
            rows.append(row)
            print(f"{steps:>3} steps, {schedule:<11} pseudo-perplexity {_shown(row['pseudo_perplexity'], 8)}"
                  + (f"  judge perplexity {_shown(row['judge_perplexity'], 8)}" if judge else "")
                  + f"  distinct-2 {row['distinct_2']:.3f}  e.g. {row['example']!r}")

    lines = ["steps | schedule    | pseudo-ppl | " + ("judge ppl | " if judge else "")
             + "distinct-2 | tokens | revealed per step", "----- | ----------- | ---------- | "
             + ("--------- | " if judge else "") + "---------- | ------ | -----------------"]
    for r in rows:
        lines.append(f"{r['steps']:>5} | {r['schedule']:<11} | {_shown(r['pseudo_perplexity'], 10)} | "
                     + (f"{_shown(r['judge_perplexity'], 9)} | " if judge else "")
                     + f"{r['distinct_2']:10.3f} | {r['length_tokens']:6.1f} | "
                     + " ".join(f"{v:g}" for v in r["revealed_per_step"]))
    lines.append("    - | held-out    | " + f"{reference['pseudo_perplexity']:10.1f} | "
                 + (f"{reference['judge_perplexity']:9.1f} | " if judge else "")
                 + f"{reference['distinct_2']:10.3f} | {reference['length_tokens']:6.1f} | (the documents' own text)")
    table = "\n".join(lines)
    print("\n" + table)
    fig = figure(rows, reference, args, judge is not None, base.block_length)
    data = {"checkpoint": generator.checkpoint, "sampling": sampling.describe(), "block_length": base.block_length,
            "prompts": [tokenizer.decode(p) for p in prompt_ids], "rows": rows, "held_out": reference}
    paths = write_report(folder, {"schedule_comparison.png": fig}, table, data)
    print(f"\nwrote {', '.join(paths)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
