"""A run's output folder: never lose an earlier run, never resume from a half-written checkpoint.

The rules every objective's training follows (README, "When something goes wrong"):

* **An earlier run is replaced only once the new one has proven it can run.** With
  ``--overwrite-output-dir`` the old run's files are moved aside into ``OUTPUT/.replaced-run/``
  (a rename: instant, nothing copied) and deleted only after the new run's first training step.
  If the new run fails before that (a bad learning rate, an out-of-memory, Ctrl-C), they are put
  back; if it is killed, the next ``train.py`` in that folder puts them back before anything else.
* **``--resume`` takes the newest complete checkpoint.** Transformers writes a checkpoint file by
  file, ``trainer_state.json`` last; a kill in the middle leaves a folder that looks like a
  checkpoint. :func:`checkpoint_problem` opens every file a resume reads (JSON parsed, safetensors
  header and size, the zip directory of every ``.pt``/``.pth``); an incomplete folder is renamed
  ``incomplete-checkpoint-N`` (kept, but out of the Trainer's way) and said in one line.
* **Final models are written atomically** (``final-model.tmp`` renamed at the end).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile

# What a folder holds once a run has written to it; their presence means "a run is here".
RUN_ARTIFACTS = ("final-model", "metrics.json", "initial_metrics.json", "trainer_state.json", "loss_curves.png", "runs")
ASIDE = ".replaced-run"  # where --overwrite-output-dir keeps the earlier run until the new one has trained a step
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
PROGRESS_FILE = "run_progress.json"  # written into every checkpoint by diffusion/training.py


class RunError(Exception):
    """A problem with the requested run or its folder; printed as one line."""


def existing_run(output_dir: str) -> list[str]:
    """Names of the run artifacts (checkpoints included) already in output_dir."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(n for n in os.listdir(output_dir)
                  if n in RUN_ARTIFACTS or n.startswith(("checkpoint-", "incomplete-checkpoint-")))


# -------------------------------------------------------------------------------- checkpoints
def _zip_problem(path: str) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:  # torch.save writes a zip; its directory is at the very end
            archive.namelist()
    except (OSError, zipfile.BadZipFile) as err:
        return f"{os.path.basename(path)} is unreadable ({err})"
    return None


def checkpoint_problem(folder: str) -> str | None:
    """Why ``folder`` (a checkpoint-N) cannot be resumed from, or None when every file a resume reads is whole."""
    name = os.path.basename(folder.rstrip("/"))
    match = CHECKPOINT.match(name)
    state_path = os.path.join(folder, "trainer_state.json")
    if not os.path.isfile(state_path):
        return "trainer_state.json is missing (the save was interrupted)"
    try:
        with open(state_path) as f:
            state = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        return f"trainer_state.json is unreadable ({err})"
    if match and state.get("global_step") != int(match.group(1)):
        return f"trainer_state.json is for step {state.get('global_step')}, not {match.group(1)}"
    for json_name in ("config.json", PROGRESS_FILE):
        path = os.path.join(folder, json_name)
        if json_name == "config.json" and not os.path.isfile(path):
            return "config.json is missing"
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    json.load(f)
            except (OSError, json.JSONDecodeError) as err:
                return f"{json_name} is unreadable ({err})"
    if not os.path.isfile(os.path.join(folder, "model.safetensors")) and \
            not os.path.isfile(os.path.join(folder, "pytorch_model.bin")):
        return "the weights (model.safetensors) are missing"
    # The weights, and whatever else a resume reads in that format (ema.safetensors of --use-ema).
    for file in sorted(f for f in os.listdir(folder) if f.endswith(".safetensors")):
        from safetensors import safe_open

        try:
            with safe_open(os.path.join(folder, file), "pt") as f:  # checks the header against the file's size
                f.keys()
        except Exception as err:  # SafetensorError
            return f"{file} is unreadable ({str(err).splitlines()[0][:120]})"
    for required in ("optimizer.pt", "scheduler.pt"):
        if not os.path.isfile(os.path.join(folder, required)):
            return f"{required} is missing"
    for file in sorted(os.listdir(folder)):
        if file.endswith((".pt", ".pth", ".bin")):
            problem = _zip_problem(os.path.join(folder, file))
            if problem:
                return problem
    return None


def latest_complete_checkpoint(output_dir: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(the newest checkpoint-N that is complete, [(incomplete newer one, why), ...])."""
    if not os.path.isdir(output_dir):
        return None, []
    steps = sorted((int(m.group(1)), n) for n in os.listdir(output_dir) if (m := CHECKPOINT.match(n))
                   and os.path.isdir(os.path.join(output_dir, n)))
    skipped = []
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((name, problem))
    return None, skipped


def set_incomplete_aside(output_dir: str, skipped: list[tuple[str, str]]) -> list[str]:
    """Rename each incomplete checkpoint-N to incomplete-checkpoint-N, out of the Trainer's way; one line each."""
    lines = []
    for name, problem in skipped:
        target = os.path.join(output_dir, "incomplete-" + name)
        if os.path.exists(target):
            shutil.rmtree(target)  # an older incomplete copy of the same step
        os.replace(os.path.join(output_dir, name), target)
        lines.append(f"note: skipped {name}: {problem}; kept as {os.path.basename(target)}")
    return lines


# ------------------------------------------------------------------------------- the output folder
def check_output_dir(output_dir: str, overwrite: bool, resume: bool, main_process: bool = True) -> tuple[str | None, list[str]]:
    """Refuse to write over an earlier run; (the checkpoint to resume from or None, notes to print).

    Call :func:`restore_interrupted_overwrite` first, so that the folder holds what the user had.
    """
    notes: list[str] = []
    if resume:
        last, skipped = latest_complete_checkpoint(output_dir)
        if last is None:
            why = f"; incomplete: {'; '.join(f'{n}: {p}' for n, p in skipped)}" if skipped else ""
            raise RunError(f"--resume: no checkpoint in {output_dir!r} to resume from{why}")
        # Only one process renames (the others of a DDP run resume from the same complete checkpoint).
        return last, notes + (set_incomplete_aside(output_dir, skipped) if main_process else [])
    found = existing_run(output_dir)
    if found and not overwrite:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise RunError(
            f"{output_dir!r} already holds a run ({shown}); use --resume to continue it, "
            f"--overwrite-output-dir to replace it, or another --output_dir"
        )
    return None, notes


def set_aside_run(output_dir: str) -> str | None:
    """Move the earlier run's files into OUTPUT/.replaced-run (renames only); its path, or None if there was none."""
    found = existing_run(output_dir)
    if not found:
        return None
    aside = os.path.join(output_dir, ASIDE)
    os.makedirs(aside, exist_ok=False)
    for name in found:
        os.replace(os.path.join(output_dir, name), os.path.join(aside, name))
    return aside


def restore_aside_run(output_dir: str) -> bool:
    """Put an earlier run set aside back, dropping what the failed new run wrote. True if there was one."""
    aside = os.path.join(output_dir, ASIDE)
    if not os.path.isdir(aside):
        return False
    for name in existing_run(output_dir):  # the new run's files: it never trained a step
        path = os.path.join(output_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    for name in os.listdir(aside):
        os.replace(os.path.join(aside, name), os.path.join(output_dir, name))
    os.rmdir(aside)
    return True


def release_aside_run(output_dir: str) -> None:
    """The new run has trained: the earlier one set aside may go."""
    shutil.rmtree(os.path.join(output_dir, ASIDE), ignore_errors=True)


def restore_interrupted_overwrite(output_dir: str) -> list[str]:
    """A run killed before its first step leaves the run it was replacing aside: put it back first."""
    if restore_aside_run(output_dir):
        return [f"note: restored the earlier run in {output_dir!r} that an interrupted --overwrite-output-dir "
                f"had set aside (the new run never trained a step)"]
    return []


# -------------------------------------------------------------------------------- stages
def checkpoint_stages(checkpoint: str | None, output_dir: str) -> list[dict]:
    """The train.py calls that led to ``checkpoint``: [{global_step, train_runtime_s, steps, loss_sum}, ...].

    A long schedule may be trained in several calls in one folder, each resuming the last one's
    checkpoint (the bundled models were), and a call may be killed after a checkpoint. Every
    checkpoint carries the stages up to itself (diffusion/training.py writes them), so the time
    and the loss of a killed call count up to its last checkpoint. Runs from before that file
    existed fall back to metrics.json's stages (which cannot know about killed calls).
    """
    if checkpoint is None:
        return []
    finished = []  # the calls that completed, as metrics.json recorded them (Trainer's own train_runtime)
    metrics_path = os.path.join(output_dir, "metrics.json")
    if os.path.isfile(metrics_path):
        with open(metrics_path) as f:
            previous = json.load(f)
        finished = previous.get("stages") or [{"global_step": previous.get("global_step", 0),
                                               "train_runtime_s": previous.get("train_runtime_s", 0.0)}]
    path = os.path.join(checkpoint, PROGRESS_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            stages = json.load(f)["stages"]
        # A call that finished at a checkpoint's step: its full measured time, not the time up to the save.
        runtime = {st["global_step"]: st["train_runtime_s"] for st in finished}
        return [{**st, "train_runtime_s": runtime.get(st["global_step"], st["train_runtime_s"])} for st in stages]
    match = CHECKPOINT.match(os.path.basename(checkpoint.rstrip("/")))
    resumed_step = int(match.group(1)) if match else 0
    return [stage for stage in finished if stage["global_step"] <= resumed_step]
