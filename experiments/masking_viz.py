"""What the forward process does to a text: the collator's masks at every level, and the schedules' curves.

    python experiments/masking_viz.py
    python experiments/masking_viz.py --example 3 --steps 8 --length 32 --output-dir results/experiments/masking

No checkpoint needed; it runs in seconds.  Three things, printed and drawn in one PNG:

1. One held-out text (data/wordnet/validation.jsonl.gz) through data_collator.py's
   ``VariableMaskingCollator`` at each training level (10% ... 100%): the text a model is asked
   to repair at that level.  Special tokens are never masked; ``--prefix-len N`` keeps the first
   N text tokens, as ``train.py --prefix-len`` does.
2. The collator's measured mask rate over ``--rate-docs`` held-out documents against the level it
   was asked for (stochastic rounding makes the mean exact even for short texts).
3. The schedules of diffusion/schedules.py: ``alpha(t)``, the fraction of tokens kept at time t,
   for every registered schedule; and for generation, how many of ``--length`` positions are
   still masked after each of ``--steps`` steps (``masked_counts``, what generate.py follows).

It writes ``masking_viz.png``, ``table.md`` (the printed tables) and ``data.json`` into
``--output-dir`` (results/experiments/masking_viz).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from data_collator import VariableMaskingCollator  # noqa: E402
from diffusion import schedules  # noqa: E402
from diffusion.checkpoint import load_tokenizer  # noqa: E402
from diffusion.cli import parse_args, run_main  # noqa: E402
from diffusion.masked.levels import DEFAULT_MASK_LEVELS, format_level  # noqa: E402
from diffusion.paths import BUNDLED_TOKENIZER  # noqa: E402
from diffusion.text.data import held_out_documents  # noqa: E402
from diffusion.text.tokens import token_strings  # noqa: E402
from diffusion.viz.report import ReportArguments, matplotlib_pyplot, write_report  # noqa: E402

TIMES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)  # where the alpha(t) table is read


@dataclass
class MaskingVizArguments:
    levels: list[float] = field(default_factory=lambda: list(DEFAULT_MASK_LEVELS),
                                metadata={"help": "Masking levels to show (fractions in (0, 1])."})
    example: int = field(default=0, metadata={"help": "Which held-out document to mask (0: the first with at "
                                                      "least --min-tokens tokens)."})
    min_tokens: int = field(default=12, metadata={"help": "Shortest document to pick as the example."})
    prefix_len: int = field(default=0, metadata={"help": "Text tokens never masked, as train.py --prefix-len."})
    rate_docs: int = field(default=300, metadata={"help": "Held-out documents the measured mask rate averages over."})
    steps: int = field(default=16, metadata={"help": "Generation steps for the positions-still-masked curves."})
    length: int = field(default=64, metadata={"help": "Positions to generate for those curves."})
    tokenizer: str = field(default=BUNDLED_TOKENIZER, metadata={"help": "Tokenizer folder (default: the bundled one)."})
    seed: int = field(default=0, metadata={"help": "Seed of the collator's masks."})

    def __post_init__(self) -> None:
        bad = [level for level in self.levels if not 0.0 < level <= 1.0]
        if bad or not self.levels:
            raise ValueError(f"--levels must be fractions in (0, 1], got {self.levels}")
        self.levels = sorted(set(self.levels))
        if self.example < 0 or self.prefix_len < 0 or self.rate_docs < 1 or self.min_tokens < 1:
            raise ValueError("--example and --prefix-len must be >= 0, --rate-docs and --min-tokens >= 1")
        if not 1 <= self.steps <= self.length:
            raise ValueError(f"--steps must lie in 1..--length ({self.length}): each step reveals at least one "
                             f"position, got {self.steps}")


def masked_rows(tokenizer, ids: list[int], levels: list[float], prefix_len: int, seed: int) -> list[dict]:
    """The example masked at each level by the training collator: its tokens and which are masked."""
    rows = []
    for i, level in enumerate(levels):
        collate = VariableMaskingCollator(tokenizer, mask_levels=(level,), prefix_len=prefix_len, seed=seed + i)
        batch = collate([{"input_ids": [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]}])
        masked = (batch["labels"][0] != -100)[1:-1].tolist()  # without <s> and </s>, never masked
        rows.append({"level": level, "masked": masked, "n_masked": sum(masked), "n_maskable": int(batch["num_maskable"][0])})
    return rows


def measured_rates(tokenizer, docs: list[list[int]], levels: list[float], prefix_len: int, seed: int) -> list[float]:
    """Masked / maskable tokens over ``docs`` at each level: the collator's empirical rate."""
    out = []
    for level in levels:
        collate = VariableMaskingCollator(tokenizer, mask_levels=(level,), prefix_len=prefix_len, seed=seed)
        batch = collate([{"input_ids": [tokenizer.bos_token_id, *d, tokenizer.eos_token_id]} for d in docs])
        out.append(float((batch["labels"] != -100).sum()) / max(1, int(batch["num_maskable"].sum())))
    return out


def figure(pieces: list[str], rows: list[dict], rates: list[float], args: MaskingVizArguments, counts: dict):
    plt = matplotlib_pyplot()
    fig = plt.figure(figsize=(15, 9.5))
    grid = fig.add_gridspec(2, 3, height_ratios=(1.25, 1), hspace=0.3, wspace=0.28, left=0.08, right=0.98, top=0.95,
                            bottom=0.07)

    # (a) the example at every level: one row per level, one cell per token, masked cells dark.
    ax = fig.add_subplot(grid[0, :])
    n = len(pieces)
    for r, row in enumerate(rows):
        for c, (piece, is_masked) in enumerate(zip(pieces, row["masked"], strict=True)):
            ax.add_patch(plt.Rectangle((c, r), 0.96, 0.9, color="#3b4a6b" if is_masked else "#e8eef7"))
            ax.text(c + 0.48, r + 0.45, "[M]" if is_masked else piece.strip() or "␣", ha="center", va="center",
                    fontsize=8, color="white" if is_masked else "black")
    ax.set_xlim(0, n)
    ax.set_ylim(len(rows), 0)
    ax.set_yticks([r + 0.45 for r in range(len(rows))],
                  labels=[f"{format_level(row['level'])}  ({row['n_masked']}/{row['n_maskable']})" for row in rows])
    ax.set_xticks([c + 0.48 for c in range(n)], labels=[str(c + 1) for c in range(n)], fontsize=7)
    ax.set_xlabel("token position in the text ([M] = <mask>, what the model must predict)")
    ax.set_ylabel("masking level (masked / maskable)")
    ax.set_title("(a) One held-out text as the training collator masks it at each level")
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)

    # (b) asked-for level against the measured rate.
    ax = fig.add_subplot(grid[1, 0])
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="measured = level")
    ax.plot(args.levels, rates, marker="o", label=f"measured over {args.rate_docs} held-out texts")
    ax.set_xlabel("masking level asked for")
    ax.set_ylabel("fraction of maskable tokens masked")
    ax.set_title("(b) The collator's mask rate")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    # (c) alpha(t) of every schedule; (d) positions still masked after each generation step.
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    ax_a, ax_c = fig.add_subplot(grid[1, 1]), fig.add_subplot(grid[1, 2])
    for name in schedules.available_schedules():
        ax_a.plot(t, schedules.alpha(name, t), label=name)
        steps = list(range(0, args.steps + 1))
        ax_c.step(steps, [args.length] + counts[name], where="post", marker=".", label=name)
    ax_a.set_xlabel("time t (0 = clean, 1 = all masked)")
    ax_a.set_ylabel("alpha(t): fraction of tokens kept")
    ax_a.set_title("(c) The schedules, alpha(t)")
    ax_a.legend(fontsize=8)
    ax_a.grid(alpha=0.3)
    ax_c.set_xlabel(f"generation step (of {args.steps})")
    ax_c.set_ylabel(f"positions still masked (of {args.length})")
    ax_c.set_title("(d) Generation: L(1 - alpha(1 - k/N)) after step k")
    ax_c.legend(fontsize=8, loc="lower left")  # the curves start high: the corner is empty
    ax_c.grid(alpha=0.3)
    return fig


def run(argv: list[str]) -> int:
    args, report = parse_args((MaskingVizArguments, ReportArguments), argv)
    folder = report.checked_folder("masking_viz")
    tokenizer = load_tokenizer(args.tokenizer)
    docs = held_out_documents(tokenizer, max(args.rate_docs, args.example + 1), 1)
    examples = [d for d in docs if len(d) >= args.min_tokens]
    if args.example >= len(examples):
        raise ValueError(f"--example {args.example}: only {len(examples)} of the first {len(docs)} held-out documents "
                         f"have {args.min_tokens} tokens; lower --example or --min-tokens")
    ids = examples[args.example][:40]  # a long document is cut to 40 tokens: the grid stays readable
    pieces = token_strings(tokenizer, ids)
    rows = masked_rows(tokenizer, ids, args.levels, args.prefix_len, args.seed)
    rates = measured_rates(tokenizer, docs[:args.rate_docs], args.levels, args.prefix_len, args.seed)
    counts = {name: schedules.masked_counts(name, args.steps, args.length) for name in schedules.available_schedules()}

    lines = [f'Held-out example {args.example} ({len(ids)} tokens): "{tokenizer.decode(ids)}"', "",
             f"level | masked | rate over {len(docs[:args.rate_docs])} texts | what the model sees",
             "----- | ------ | ------------------- | -------------------"]
    for row, rate in zip(rows, rates, strict=True):
        seen = "".join(" [MASK]" if m else p for p, m in zip(pieces, row["masked"], strict=True)).strip()
        lines.append(f"{format_level(row['level']):>5} | {row['n_masked']:>2}/{row['n_maskable']:<3} | {rate:19.3f} | {seen}")
    lines += ["", "alpha(t), the fraction of tokens kept at time t (diffusion/schedules.py):",
              "schedule    | " + " | ".join(f"t={t:<4}" for t in TIMES), "----------- | " + " | ".join("------" for _ in TIMES)]
    for name in schedules.available_schedules():
        values = schedules.alpha(name, torch.tensor(TIMES, dtype=torch.float64)).tolist()
        lines.append(f"{name:<11} | " + " | ".join(f"{v:6.3f}" for v in values))
    lines += ["", f"Generation: positions still masked (of {args.length}) after each of {args.steps} steps:",
              "schedule    | " + " ".join(f"{k:>3}" for k in range(1, args.steps + 1))]
    for name, c in counts.items():
        lines.append(f"{name:<11} | " + " ".join(f"{v:>3}" for v in c))
    table = "\n".join(lines)
    print(table)

    fig = figure(pieces, rows, rates, args, counts)
    data = {"example": {"ids": ids, "tokens": pieces, "text": tokenizer.decode(ids)}, "levels": rows,
            "measured_rate": dict(zip(map(format_level, args.levels), rates, strict=True)),
            "alpha": {name: dict(zip(map(str, TIMES), schedules.alpha(name, torch.tensor(TIMES, dtype=torch.float64))
                                     .tolist(), strict=True)) for name in schedules.available_schedules()},
            "still_masked_after_step": counts, "steps": args.steps, "length": args.length}
    paths = write_report(folder, {"masking_viz.png": fig}, table, data)
    print(f"\nwrote {', '.join(paths)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
