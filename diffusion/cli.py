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

import sys
from collections.abc import Callable

from transformers import HfArgumentParser

from diffusion.checkpoint import ModelLoadError


def parse_args(dataclass_types, argv: list[str]) -> tuple:
    """One instance of each dataclass in ``dataclass_types``, filled from ``argv``."""
    return tuple(HfArgumentParser(tuple(dataclass_types)).parse_args_into_dataclasses(args=list(argv)))


def run_main(run: Callable[[list[str]], int], argv: list[str] | None = None,
             errors: tuple[type[Exception], ...] = (ValueError, ModelLoadError)) -> int:
    """A script's ``main``: ``run(argv)`` (default: the command line), with an expected error as one line.

    ``errors`` are the exceptions whose message is meant for the person at the terminal (bad flags,
    a missing model): printed as ``error: ...`` with exit code 2, never a traceback.
    """
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def flag_names(argv: list[str]) -> set[str]:
    """{'--max-length', ...} for the flags in argv, normalised to dashes."""
    return {a.split("=", 1)[0].replace("_", "-") for a in argv if a.startswith("--")}


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
