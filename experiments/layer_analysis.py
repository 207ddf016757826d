"""Which layers learn what? Each layer's prediction and each head's attention, per masking level.

    python experiments/layer_analysis.py --checkpoint results/checkpoint-1000
    python experiments/layer_analysis.py --checkpoint models/masked-base --samples 256
    python experiments/layer_analysis.py --checkpoint models/mlm-base --output-dir results/experiments/layers-mlm

Held-out documents are masked at every level (10% ... 100%, data_collator.py, fixed seeds) and
sent through the model (any checkpoint folder: final-model, a Trainer checkpoint-N, a bundled
model, a Hub id).  Per masking level and layer (diffusion/masked/analysis.py):

* **logit-lens accuracy**: the hidden state after each layer read through the model's own output
  head (nostalgebraist 2020, "interpreting GPT: the logit lens"), scored like the final layer,
  at the masked positions. Where it jumps, that layer does the work;
* **KL to the final prediction** (nats) and **agreement** (same top token): how far each layer's
  guess still is from what the model finally says;
* per layer and head, at every level: **attention entropy** (nats; log L is uniform attention,
  0 is one key), **mean attention distance** (positions between a query and the keys it reads)
  and the **share on the neighbours** i-1, i+1. benchmarks/attention_entropy.py prints the same
  statistics at 15% masking as a plateau check.

It prints the tables and writes ``layer_analysis.png`` (heat maps), ``table.md`` and ``data.json``
into ``--output-dir`` (default results/experiments/layer_analysis-<model folder>, e.g.
layer_analysis-results-checkpoint-1000: one report per checkpoint).  A folder that does not exist
is one line naming the checkpoints that do.
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
from diffusion.checkpoint import check_length, load_checkpoint, quiet_loading, resolve_model, usable_length  # noqa: E402
from diffusion.cli import parse_args, run_main  # noqa: E402
from diffusion.masked.analysis import layer_statistics  # noqa: E402
from diffusion.masked.levels import DEFAULT_MASK_LEVELS, format_level  # noqa: E402
from diffusion.paths import TRAINED_MODEL  # noqa: E402
from diffusion.text.data import held_out_documents  # noqa: E402
from diffusion.viz.report import ReportArguments, matplotlib_pyplot, write_report  # noqa: E402


@dataclass
class LayerArguments:
    checkpoint: str | None = field(
        default=None, metadata={"help": f"Masked model folder (final-model, checkpoint-N) or hub id. Default: "
                                        f"{TRAINED_MODEL} if it exists, else the bundled models/masked-base."})
    levels: list[float] = field(default_factory=lambda: list(DEFAULT_MASK_LEVELS),
                                metadata={"help": "Masking levels to analyse (fractions in (0, 1])."})
    samples: int = field(default=128, metadata={"help": "Held-out documents per level."})
    max_length: int = field(default=64, metadata={"help": "Tokens per document (longer ones are cut)."})
    batch_size: int = field(default=32, metadata={"help": "Documents per forward pass."})
    heads_level: float = field(default=0.5, metadata={"help": "The masking level whose per-head attention is drawn."})
    seed: int = field(default=0, metadata={"help": "Seed of the masks."})

    def __post_init__(self) -> None:
        bad = [level for level in self.levels if not 0.0 < level <= 1.0]
        if bad or not self.levels:
            raise ValueError(f"--levels must be fractions in (0, 1], got {self.levels}")
        self.levels = sorted(set(self.levels))
        if self.heads_level not in self.levels:
            raise ValueError(f"--heads-level {self.heads_level} is not one of --levels {self.levels}")
        if self.samples < 1 or self.batch_size < 1 or self.max_length < 3:
            raise ValueError("--samples and --batch-size must be >= 1, --max-length >= 3")


def heat_map(ax, values: torch.Tensor, rows: list[str], cols: list[str], title: str, label: str, fmt: str,
             cmap: str, vmin: float | None = None, vmax: float | None = None) -> None:
    """values (rows, cols) as a labelled heat map with the number written in each cell."""
    image = ax.imshow(values.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=cols)
    ax.set_yticks(range(len(rows)), labels=rows)
    for r in range(values.shape[0]):
        for c in range(values.shape[1]):
            v = float(values[r, c])
            red, green, blue, _ = image.cmap(image.norm(v))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # white text on dark cells, black on light
            ax.text(c, r, format(v, fmt), ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label=label)


def figure(name: str, levels: list[float], lens: list, heads, heads_level: float):
    plt = matplotlib_pyplot()
    n_states = lens[0].accuracy.numel()
    states = ["embeddings"] + [f"layer {i}" for i in range(1, n_states)]
    cols = [format_level(level) for level in levels]
    accuracy = torch.stack([s.accuracy for s in lens], dim=1)  # (states, levels)
    kl = torch.stack([s.kl_to_final for s in lens], dim=1)
    fig, axes = plt.subplots(2, 2, figsize=(14, 9.5))
    heat_map(axes[0, 0], accuracy, states, cols, "(a) Logit lens: accuracy of each layer's guess at masked positions",
             "accuracy", ".2f", "viridis", 0.0, max(0.05, float(accuracy.max())))
    axes[0, 0].set_xlabel("masking level")
    axes[0, 0].set_ylabel("hidden state read through the output head")
    heat_map(axes[0, 1], kl, states, cols, "(b) KL(final || layer): how far each layer is from the final guess",
             "nats", ".2f", "magma_r", 0.0)
    axes[0, 1].set_xlabel("masking level")
    n_layers, n_heads = heads.entropy.shape
    layer_names = [f"layer {i}" for i in range(1, n_layers + 1)]
    head_names = [f"head {h}" for h in range(1, n_heads + 1)]
    heat_map(axes[1, 0], heads.entropy, layer_names, head_names,
             f"(c) Attention entropy at {format_level(heads_level)} masked (uniform = {heads.log_length:.2f})",
             "nats", ".2f", "cividis", 0.0, heads.log_length)
    heat_map(axes[1, 1], heads.distance, layer_names, head_names,
             f"(d) Mean attention distance at {format_level(heads_level)} masked (uniform = {heads.uniform_distance:.1f})",
             "positions", ".1f", "cividis", 0.0, max(heads.uniform_distance, float(heads.distance.max())))
    fig.suptitle(f"Which layers learn what: {name}")
    fig.tight_layout()
    return fig


def run(argv: list[str]) -> int:
    args, report = parse_args((LayerArguments, ReportArguments), argv)
    name, why = resolve_model(args.checkpoint, "--checkpoint", "masked")
    folder = report.checked_folder("layer_analysis", name)
    quiet_loading()
    model, tokenizer, config = load_checkpoint(name, "masked")
    model.set_attn_implementation("eager")  # SDPA does not return the attention weights
    model.eval()
    length = min(args.max_length, usable_length(model) or args.max_length)
    check_length(length, model, name)
    texts = held_out_documents(tokenizer, args.samples, 1)
    rows = sorted(([tokenizer.bos_token_id, *ids[:length - 2], tokenizer.eos_token_id] for ids in texts), key=len)
    # A model trained with --eos-padding saw rows padded to full width with maskable </s>: give it
    # the same rows, and score its text positions only (the </s> tail is easy and would flatter it).
    eos_padding = length if config is not None and config.eos_padding else None
    print(f"model: {name} ({why}); {len(rows)} held-out documents per level, up to {length} tokens"
          + ("; rows padded with maskable </s> as in its training, text positions scored" if eos_padding else ""))

    lens, heads = [], {}
    for i, level in enumerate(args.levels):
        collate = VariableMaskingCollator(tokenizer, mask_levels=(level,), seed=args.seed + i,
                                          eos_padding_length=eos_padding)
        batches = [collate([{"input_ids": r} for r in rows[s:s + args.batch_size]])
                   for s in range(0, len(rows), args.batch_size)]
        for batch in batches:
            batch["labels"][batch["labels"] == tokenizer.eos_token_id] = -100
        lens_stats, heads[level] = layer_statistics(model, batches)
        lens.append(lens_stats)

    n_states = lens[0].accuracy.numel()
    states = ["embeddings"] + [f"layer {i}" for i in range(1, n_states)]
    cols = " | ".join(f"{format_level(level):>5}" for level in args.levels)
    lines = ["Logit lens: accuracy of each layer's top guess at the masked positions, per masking level",
             f"state      | {cols}", "---------- | " + " | ".join("-----" for _ in args.levels)]
    lines += [f"{s:<10} | " + " | ".join(f"{float(x.accuracy[r]):5.3f}" for x in lens) for r, s in enumerate(states)]
    lines += ["", "KL(final || layer) in nats (0: the layer already gives the final prediction)",
              f"state      | {cols}", "---------- | " + " | ".join("-----" for _ in args.levels)]
    lines += [f"{s:<10} | " + " | ".join(f"{float(x.kl_to_final[r]):5.2f}" for x in lens) for r, s in enumerate(states)]
    lines += ["", "Agreement with the final top guess",
              f"state      | {cols}", "---------- | " + " | ".join("-----" for _ in args.levels)]
    lines += [f"{s:<10} | " + " | ".join(f"{float(x.agreement[r]):5.3f}" for x in lens) for r, s in enumerate(states)]
    h = heads[args.heads_level]
    lines += ["", f"Attention at {format_level(args.heads_level)} masked, per head: entropy (nats; uniform "
              f"{h.log_length:.2f}) / mean distance (positions; uniform {h.uniform_distance:.1f}) / neighbour share",
              "layer | " + " | ".join(f"head {k + 1:<12}" for k in range(h.entropy.shape[1]))]
    for layer in range(h.entropy.shape[0]):
        lines.append(f"{layer + 1:>5} | " + " | ".join(
            f"{float(h.entropy[layer, k]):4.2f} / {float(h.distance[layer, k]):4.1f} / {float(h.neighbour[layer, k]):4.2f}"
            for k in range(h.entropy.shape[1])))
    lines += ["", "Mean attention entropy per layer (nats), per masking level",
              f"layer | {cols}", "----- | " + " | ".join("-----" for _ in args.levels)]
    for layer in range(h.entropy.shape[0]):
        lines.append(f"{layer + 1:>5} | " + " | ".join(f"{float(heads[lv].entropy[layer].mean()):5.2f}" for lv in args.levels))
    table = "\n".join(lines)
    print(table)

    fig = figure(name, args.levels, lens, h, args.heads_level)
    data = {"checkpoint": name, "levels": args.levels, "states": states, "documents": len(rows),
            "logit_lens": {format_level(lv): {"accuracy": x.accuracy.tolist(), "agreement": x.agreement.tolist(),
                                              "kl_to_final": x.kl_to_final.tolist(), "masked_positions": x.masked}
                           for lv, x in zip(args.levels, lens, strict=True)},
            "attention": {format_level(lv): {"entropy": s.entropy.tolist(), "distance": s.distance.tolist(),
                                             "neighbour_share": s.neighbour.tolist(), "uniform_entropy": s.log_length,
                                             "uniform_distance": s.uniform_distance} for lv, s in heads.items()}}
    paths = write_report(folder, {"layer_analysis.png": fig}, table, data)
    print(f"\nwrote {', '.join(paths)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
