"""Pictures of training: the loss of every masking level over the steps."""

from __future__ import annotations

import re

LEVEL_KEY = re.compile(r"^loss_mask_(\d+(?:\.\d+)?)$")


def plot_loss_curves(log_history: list[dict], path: str) -> str | None:
    """Training loss per masking level (one line each) against the step, saved as a PNG.

    log_history: ``trainer.state.log_history``. Returns the path, or None when there is
    nothing to draw (no training log was written, or the causal objective's single loss).
    """
    series: dict[str, tuple[list[int], list[float]]] = {}
    for entry in log_history:
        for key, value in entry.items():
            match = LEVEL_KEY.match(key)
            name = f"mask {match.group(1)}" if match else ("loss" if key == "loss" else None)
            if name is not None:
                steps, values = series.setdefault(name, ([], []))
                steps.append(entry["step"])
                values.append(value)
    per_level = {k: v for k, v in series.items() if k != "loss"}
    series = per_level or series
    if not series or all(len(steps) < 1 for steps, _ in series.values()):
        return None

    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    cmap = plt.get_cmap("viridis")
    names = sorted(series, key=lambda n: float(n.split()[-1]) if n.startswith("mask") else 0.0)
    for i, name in enumerate(names):
        steps, values = series[name]
        ax.plot(steps, values, marker="o" if len(steps) < 3 else None, label=name,
                color=cmap(i / max(1, len(names) - 1)))
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy at masked positions (nats)")
    ax.set_title("Training loss per masking level" if per_level else "Training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
