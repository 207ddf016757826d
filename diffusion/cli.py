"""Command-line parsing shared by every script.

Each script declares its flags as dataclasses whose fields carry ``metadata={"help": ...}``
and parses them with :func:`parse_args` (transformers' ``HfArgumentParser``).  Flags may be
written with dashes or underscores (``--max-length`` = ``--max_length``).  Cross-field checks
live in each dataclass's ``__post_init__`` and raise ``ValueError`` with a message a person can
act on; the scripts print it as one line.

The small helpers below read flags out of an argv list *before* parsing, which the training
presets need (``--quick-test`` picks its preset from the other flags given).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable

from transformers import HfArgumentParser

from diffusion.checkpoint import ModelLoadError

# Names people bring from other tools, and the flag that means the same here.
COMMON_NAMES = {"--lr": "--learning-rate", "--epochs": "--num-train-epochs", "--batch-size": "--per-device-train-batch-size",
                "--steps": "--max-steps", "--out": "--output-dir", "--output": "--output-dir"}


class _OneLineParser(HfArgumentParser):
    """HfArgumentParser whose errors are a ValueError of one line, not a usage dump and exit."""

    def error(self, message: str):
        raise ValueError(f"{message} (see --help)")

    def unknown_flags(self, remaining: list[str]) -> str:
        """'unknown flag --lr (did you mean --lr_scheduler_type?)' for the arguments no dataclass took."""
        known = sorted({o.replace("_", "-") for action in self._actions for o in action.option_strings
                        if o.startswith("--") and o != "--help"})
        parts = []
        for arg in remaining:
            if not arg.startswith("-"):
                continue  # the value of an unknown flag
            flag = arg.split("=", 1)[0].replace("_", "-")
            close = [COMMON_NAMES[flag]] if COMMON_NAMES.get(flag) in known else []
            close += [k for k in difflib.get_close_matches(flag, known, n=3, cutoff=0.6) if k not in close]
            parts.append(f"unknown flag {arg}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        return "; ".join(parts) or f"unexpected argument(s) {' '.join(remaining)}"


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--learning_rate -1e-3`` -> ``--learning_rate=-1e-3``: argparse takes "-1e-3" for a flag."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and arg.startswith("-") and _is_number(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_args(dataclass_types, argv: list[str]) -> tuple:
    """One instance of each dataclass in ``dataclass_types``, filled from ``argv``.

    Flags must be written in full (no abbreviations: ``--lr`` is not ``--lr_scheduler_type``); an
    unknown flag is one line naming the closest known ones; a negative number is a value.
    """
    parser = _OneLineParser(tuple(dataclass_types), allow_abbrev=False)
    *parsed, remaining = parser.parse_args_into_dataclasses(args=_join_negative_values(list(argv)),
                                                            return_remaining_strings=True)
    if remaining:
        raise ValueError(f"{parser.unknown_flags(remaining)} (see --help)")
    return tuple(parsed)


def check_text(flag: str, value: str | None) -> None:
    """A text flag must be valid UTF-8: undecodable bytes reach Python as lone surrogates."""
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raw = value.encode("utf-8", "surrogateescape")[err.start:err.start + 1]
        raise ValueError(f"{flag} is not valid UTF-8 (byte 0x{raw.hex() if raw else '??'} at character {err.start}); "
                         f"write the text in UTF-8") from None


def run_main(run: Callable[[list[str]], int], argv: list[str] | None = None,
             errors: tuple[type[Exception], ...] = (ValueError, ModelLoadError), interrupted: str = "") -> int:
    """A script's ``main``: ``run(argv)`` (default: the command line), with an expected error as one line.

    ``errors`` are the exceptions whose message is meant for the person at the terminal (bad flags,
    a missing model): printed as ``error: ...`` with exit code 2, never a traceback. Ctrl-C is one
    line too (``interrupted``: what is kept, e.g. the checkpoints), exit code 130 as shells use.
    """
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted (Ctrl-C){': ' + interrupted if interrupted else ''}", file=sys.stderr)
        return 130


def flag_names(argv: list[str]) -> set[str]:
    """{'--max-length', ...} for the flags in argv, normalised to dashes."""
    return {a.split("=", 1)[0].replace("_", "-") for a in argv if a.startswith("--")}


def dataclass_flags(dataclass_type) -> set[str]:
    """{'--ddim-steps', ...}: the flags a dataclass of arguments declares."""
    import dataclasses

    return {"--" + f.name.replace("_", "-") for f in dataclasses.fields(dataclass_type)}


def foreign_flags(given: set[str], owner, other, keep: set[str] = frozenset()) -> list[str]:
    """The flags in ``given`` that ``owner`` declares and ``other`` does not (less ``keep``), sorted."""
    return sorted((given & dataclass_flags(owner)) - dataclass_flags(other) - set(keep))


def drop_flags(argv: list[str], names: set[str]) -> list[str]:
    """argv without the named flags and their values."""
    out, skip = [], False
    for arg in argv:
        if skip and not arg.startswith("--"):
            continue
        skip = arg.startswith("--") and arg.split("=", 1)[0].replace("_", "-") in names
        if not skip:
            out.append(arg)
    return out


def flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in argv (the last one wins), else None."""
    value = None
    for i, arg in enumerate(argv):
        flag, sep, inline = arg.partition("=")
        if flag.replace("_", "-") == name:
            value = inline if sep else (argv[i + 1] if i + 1 < len(argv) else None)
    return value
