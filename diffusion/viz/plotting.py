"""Pictures of training: the loss of every noise level over the steps, training beside held-out.

Masked runs log ``loss_mask_<level>`` (the masking level), Gaussian runs ``loss_noise_<t>`` (the
noise level t, diffusion/gaussian/trainer.py, diffusion/image/trainer.py); the picture is the same.
"""

from __future__ import annotations

import re

TRAIN_KEY = re.compile(r"^loss_(mask|noise)_(\d+(?:\.\d+)?)$")  # a training log: the loss of one level
EVAL_KEY = re.compile(r"^(?:eval|initial)_loss_(mask|noise)_(\d+(?:\.\d+)?)$")  # an evaluation, at step 0 or later
# What the curves are, by the kind of level: (y axis, legend title, the level's name in the legend).
KINDS = {"mask": ("cross-entropy at masked positions (nats)", "masking level", "mask"),
         "noise": ("x0 MSE + rounding cross-entropy", "noise level t", "t")}

Series = dict[str, tuple[list[int], list[float]]]  # "mask 0.5" -> (steps, losses)


def _collect(log_history: list[dict], pattern: re.Pattern, fallback: str | None) -> Series:
    series: Series = {}
    for entry in log_history:
        for key, value in entry.items():
            match = pattern.match(key)
            name = f"{KINDS[match.group(1)][2]} {match.group(2)}" if match else (fallback if key == fallback else None)
            if name is not None:
                steps, values = series.setdefault(name, ([], []))
                steps.append(entry.get("step", 0))
                values.append(value)
    per_level = {name: s for name, s in series.items() if name != fallback}
    return per_level or series


def training_series(log_history: list[dict]) -> Series:
    """The training curves of a log history: one per level, or the plain ``loss`` when no level was logged."""
    return _collect(log_history, TRAIN_KEY, "loss")


def level_colours(names, cmap) -> dict[str, tuple]:
    """One colour per curve, in level order (low -> high along ``cmap``): the same level, the same colour."""
    ordered = sorted(names, key=lambda n: float(n.split()[-1]) if n != "loss" else 0.0)
    return {name: cmap(i / max(1, len(ordered) - 1)) for i, name in enumerate(ordered)}


def plot_loss_curves(log_history: list[dict], path: str, note: str | None = None, y_label: str | None = None,
                     held_out_name: str = "validation texts") -> str | None:
    """Loss per masking level against the step, saved as a PNG: training (left) and held-out (right).

    log_history: ``trainer.state.log_history`` (an ``initial_loss_mask_*`` entry at step 0 is the
    evaluation before training).  The held-out panel appears once there are evaluations; ``note``
    is a line under the plot (why the two panels differ); ``y_label`` replaces the axis label of the
    level kind (images: the noise-prediction MSE).  Returns the path, or None when there
    is nothing to draw (no training log was written).
    """
    train = training_series(log_history)
    held_out = _collect(log_history, EVAL_KEY, None)
    if not train:
        return None

    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    panels = [("Training loss (batches of this run)", train)]
    if held_out:
        panels.append((f"Held-out loss ({held_out_name})", held_out))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels) + 2, 5.2), dpi=100, sharey=True, squeeze=False)
    kind = "noise" if any(name.startswith("t ") for name in {*train, *held_out}) else "mask"
    kind_label, legend_title, _ = KINDS[kind]
    y_label = y_label or kind_label
    names = sorted({*train, *held_out}, key=lambda n: float(n.split()[-1]) if n != "loss" else 0.0)
    colours = level_colours(names, plt.get_cmap("viridis"))
    for ax, (title, series) in zip(axes[0], panels, strict=True):
        for name in names:
            if name in series:
                steps, values = series[name]
                ax.plot(steps, values, marker="o", markersize=3, linewidth=1.4, label=name, color=colours[name])
        ax.set_xlabel("training step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(y_label)
    # One legend for both panels (the same colour is the same level), outside the data, so it hides no line.
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[name], marker="o", markersize=3, label=name) for name in names]
    fig.legend(handles=handles, loc="center right", fontsize=9, title=legend_title, frameon=False)
    if note:
        fig.text(0.01, 0.01, note, fontsize=8.5, wrap=True, va="bottom")
    fig.tight_layout(rect=(0, 0.07 if note else 0, 0.87, 1))
    fig.savefig(path)
    plt.close(fig)
    return path
