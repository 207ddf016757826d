"""What the model predicts at each masking level: its top-5 guesses, with probabilities, for one text.

    python experiments/predictions_by_level.py
    python experiments/predictions_by_level.py --checkpoint results/final-model --text "dog: a domestic animal."
    python experiments/predictions_by_level.py --levels 0.1 0.3 0.5 0.7 1.0 --example 4

The text (a held-out document, or ``--text``) is masked at each of ``--levels`` (10%, 50% and
100% by default) and sent through the model once per level; for every masked position it
prints the original token and the model's ``--top-k`` likeliest tokens with their
probabilities.  The masks are nested: the positions masked at 10% are also masked at 50%, so
one position can be followed as its context disappears.  At 10% the model reads almost the
whole text and is often right; at 100% it sees only the length and guesses what is frequent
(the, of, a, ".") where it cannot know.  That gap is what generation climbs, one level at a time.

Without ``--checkpoint`` it uses results/final-model if present, else the bundled
models/masked-base.  It writes ``predictions_by_level.png`` (one column per level: the top
guess at each masked position, green where right), ``table.md`` and ``data.json`` into
``--output-dir`` (results/experiments/predictions_by_level-<model folder>).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from diffusion.checkpoint import load_checkpoint, quiet_loading, resolve_model, usable_length  # noqa: E402
from diffusion.cli import check_text, parse_args, run_main  # noqa: E402
from diffusion.masked.analysis import top_predictions  # noqa: E402
from diffusion.masked.levels import format_level  # noqa: E402
from diffusion.paths import TRAINED_MODEL  # noqa: E402
from diffusion.text.data import held_out_documents  # noqa: E402
from diffusion.text.tokens import token_strings  # noqa: E402
from diffusion.viz.report import ReportArguments, matplotlib_pyplot, write_report  # noqa: E402


@dataclass
class PredictionArguments:
    checkpoint: str | None = field(
        default=None, metadata={"help": f"Masked model folder or hub id. Default: {TRAINED_MODEL} if it exists, "
                                        "else the bundled models/masked-base."})
    text: str | None = field(default=None, metadata={"help": "The text to mask. Default: a held-out document."})
    example: int = field(default=0, metadata={"help": "Which held-out document to use (of those with at least 12 "
                                                      "tokens, as masking_viz.py)."})
    levels: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0],
                                metadata={"help": "Masking levels (fractions in (0, 1])."})
    top_k: int = field(default=5, metadata={"help": "Guesses shown per masked position."})
    seed: int = field(default=0, metadata={"help": "Seed of the (nested) masks."})

    def __post_init__(self) -> None:
        check_text("--text", self.text)
        if self.text is not None and not self.text.strip():
            raise ValueError("--text is empty; give a sentence to mask")
        bad = [level for level in self.levels if not 0.0 < level <= 1.0]
        if bad or not self.levels:
            raise ValueError(f"--levels must be fractions in (0, 1], got {self.levels}")
        self.levels = sorted(set(self.levels))
        if self.top_k < 1 or self.example < 0:
            raise ValueError("--top-k must be >= 1 and --example >= 0")


def nested_masks(n: int, levels: list[float], seed: int) -> list[torch.Tensor]:
    """(n,) bool masks, one per level: the first round(level * n) positions of one random order (at least one)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    masks = []
    for level in levels:
        m = torch.zeros(n, dtype=torch.bool)
        m[order[:max(1, round(level * n))]] = True
        masks.append(m)
    return masks


def figure(pieces: list[str], levels: list[float], results: list[dict], name: str):
    plt = matplotlib_pyplot()
    n = len(pieces)
    fig, ax = plt.subplots(figsize=(2.2 + 2.3 * len(levels), 0.9 + 0.36 * n))
    for c, res in enumerate(results):
        for row, pos in enumerate(res["positions"]):
            if pos is None:  # not masked: the text itself
                ax.add_patch(plt.Rectangle((c, row), 0.97, 0.92, color="#eeeeee"))
                ax.text(c + 0.48, row + 0.46, pieces[row].strip(), ha="center", va="center", fontsize=8, color="#777777")
                continue
            token, p = pos["top"][0]
            right = token == pos["truth"]
            # Colour: green where the top guess is the original token, red where not; darker = surer.
            colour = (0.2, 0.6, 0.3, 0.25 + 0.75 * p) if right else (0.8, 0.25, 0.2, 0.25 + 0.75 * p)
            ax.add_patch(plt.Rectangle((c, row), 0.97, 0.92, color=colour))
            ax.text(c + 0.48, row + 0.46, f"{token.strip() or '␣'}  {p:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xlim(0, len(levels))
    ax.set_ylim(n, 0)
    heads = [f"{format_level(lv)} masked\naccuracy {r['accuracy']:.2f}" for lv, r in zip(levels, results, strict=True)]
    ax.set_xticks([c + 0.48 for c in range(len(levels))], labels=heads)
    ax.xaxis.tick_top()
    ax.set_yticks([r + 0.46 for r in range(n)], labels=[f"{p.strip() or '␣'}" for p in pieces], fontsize=8)
    ax.set_ylabel("the original text, token by token")
    ax.set_title(f"Top guess and its probability at each masked position (green: right, red: wrong; grey: visible)\n{name}",
                 fontsize=9, pad=34)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def run(argv: list[str]) -> int:
    args, report = parse_args((PredictionArguments, ReportArguments), argv)
    name, why = resolve_model(args.checkpoint, "--checkpoint", "masked")
    folder = report.checked_folder("predictions_by_level", name)
    quiet_loading()
    model, tokenizer, _ = load_checkpoint(name, "masked")
    model.eval()
    if args.text is not None:
        ids = tokenizer(args.text, add_special_tokens=False)["input_ids"]
    else:
        docs = held_out_documents(tokenizer, args.example + 1, 12)
        if len(docs) <= args.example:
            raise ValueError(f"--example {args.example}: the held-out split has only {len(docs)} documents of 12 tokens")
        ids = docs[args.example]
    limit = (usable_length(model) or 512) - 2
    keep = min(limit, 40)  # <s> text </s> must fit; 40 tokens keep the picture readable
    cut = len(ids) > keep
    ids_all, ids = len(ids), ids[:keep]
    pieces = token_strings(tokenizer, ids)
    masks = nested_masks(len(ids), args.levels, args.seed)
    print(f"model: {name} ({why})")
    if cut:
        print(f"note: the text has {ids_all} tokens; its first {keep} are used")
    print(f'text ({len(ids)} tokens): "{tokenizer.decode(ids)}"')

    results, lines = [], []
    for level, mask in zip(args.levels, masks, strict=True):
        row = torch.tensor([tokenizer.bos_token_id, *ids, tokenizer.eos_token_id])
        row[1:-1][mask] = tokenizer.mask_token_id
        probs, top = top_predictions(model, row[None], torch.ones_like(row)[None], k=args.top_k)
        positions, right = [], 0
        seen = "".join(" [MASK]" if m else p for p, m in zip(pieces, mask.tolist(), strict=True)).strip()
        lines += ["", f"{format_level(level)} masked ({int(mask.sum())} of {len(ids)}): {seen}",
                  f"position | original | top {args.top_k} guesses (probability)", "-------- | -------- | ---"]
        for i in range(len(ids)):
            if not mask[i]:
                positions.append(None)
                continue
            guesses = list(zip(token_strings(tokenizer, top[0, i + 1].tolist()), probs[0, i + 1].tolist(), strict=True))
            right += int(top[0, i + 1, 0]) == ids[i]
            positions.append({"position": i, "truth": pieces[i], "top": guesses})
            shown = "  ".join(f"{g.strip() or '␣'!s} {p:.2f}" for g, p in guesses)
            mark = "ok" if int(top[0, i + 1, 0]) == ids[i] else "  "
            lines.append(f"{i + 1:>8} | {pieces[i].strip():<8} | {mark} {shown}")
        accuracy = right / int(mask.sum())
        lines.append(f"top-1 accuracy at {format_level(level)}: {accuracy:.2f} ({right} of {int(mask.sum())})")
        results.append({"level": level, "accuracy": accuracy, "positions": positions})
    table = "\n".join(lines).lstrip("\n")
    print(table)
    fig = figure(pieces, args.levels, results, f"{name}: {tokenizer.decode(ids)}")
    data = {"checkpoint": name, "text": tokenizer.decode(ids), "ids": ids, "tokens": pieces, "levels": results}
    paths = write_report(folder, {"predictions_by_level.png": fig}, table, data)
    print(f"\nwrote {', '.join(paths)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
