"""An experiment's outputs, written all or nothing into one folder: its figures, the table it printed, its numbers.

    args, report = parse_args((LayerArguments, ReportArguments), argv)   # diffusion/cli.py
    folder = report.checked_folder("layer_analysis")          # before any model loads
    ...
    write_report(folder, {"layer_analysis.png": fig}, table_text, data)

The folder is filled under a temporary name and swapped in at the end, so a failure half-way
leaves an earlier report as it was, and ``--overwrite`` replaces it only once the new one is
complete.  Used by every script in experiments/.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

TABLE_NAME = "table.md"  # the printed table, as written to the terminal
DATA_NAME = "data.json"  # every number the figures show
EXPERIMENTS_DIR = os.path.join("results", "experiments")  # relative to where the script is run, like results/


@dataclass
class ReportArguments:
    """The output flags every experiment shares."""

    output_dir: str | None = field(default=None, metadata={
        "help": "Where the figure, table.md and data.json go. Default: results/experiments/<experiment>, "
                "with the model's folder appended for an experiment on a model (layer_analysis-results-checkpoint-500)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an earlier report in --output-dir."})

    def checked_folder(self, experiment: str, model: str | None = None) -> str:
        """The report folder, checked by check_report_dir: --output-dir, else results/experiments/EXPERIMENT,
        suffixed with the last two parts of ``model``'s path so that two checkpoints get two reports."""
        folder = self.output_dir
        if not folder:
            name = experiment
            if model:
                parts = [p for p in os.path.normpath(os.path.expanduser(model)).split(os.sep) if p not in ("", ".")]
                name += "-" + "-".join(parts[-2:])
            folder = os.path.join(EXPERIMENTS_DIR, name)
        check_report_dir(folder, self.overwrite)
        return folder


def matplotlib_pyplot():
    """pyplot on the file-only Agg backend (no display needed), with one readable style for every figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.grid": False, "figure.dpi": 100})
    return plt


def check_report_dir(folder: str, overwrite: bool) -> None:
    """One line when ``folder`` holds an earlier report and ``overwrite`` is off, or cannot be written."""
    if os.path.isfile(folder):
        raise ValueError(f"--output-dir {folder!r} is a file; give a folder")
    if os.path.isdir(folder) and os.listdir(folder) and not overwrite:
        raise ValueError(f"{folder} holds an earlier report: pass --overwrite to replace it, or another --output-dir")
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK):
        raise ValueError(f"cannot write into {folder!r} (--output-dir): {existing!r} is not writable")


def write_report(folder: str, figures: dict, table: str, data: dict) -> list[str]:
    """Save ``figures`` (file name -> matplotlib Figure), ``table`` and ``data`` into ``folder``; the paths written."""
    plt = matplotlib_pyplot()
    folder = folder.rstrip("/") or "."
    staging, old = folder + ".tmp", folder + ".old"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        for name, figure in figures.items():
            figure.savefig(os.path.join(staging, name))
            plt.close(figure)
        with open(os.path.join(staging, TABLE_NAME), "w") as f:
            f.write(table.rstrip("\n") + "\n")
        with open(os.path.join(staging, DATA_NAME), "w") as f:
            json.dump(data, f, indent=1)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(folder):
        os.rename(folder, old)
    os.rename(staging, folder)
    shutil.rmtree(old, ignore_errors=True)
    return [os.path.join(folder, name) for name in (*figures, TABLE_NAME, DATA_NAME)]
