"""The docs cannot drift from the code: every `python SCRIPT ...` command they show names a script
that exists, with flags its parser accepts.

Commands are read from README.md, docs/*.md and the READMEs of models/ and data/: the lines of
fenced code blocks (a ``$ `` prompt, ``&&`` chains and ``\\`` continuations included) and inline
code spans that start with ``python``.  ``torchrun ... SCRIPT`` and ``accelerate launch ...
SCRIPT`` count too.  Each command is parsed, not run: the script's ``main(argv)`` is called with
argparse's ``parse_known_args`` stopped right after it returns, so nothing loads or trains, and
an unknown flag, a missing value or a bad choice fails the test with the script's own message.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import io
import os
import re
import shlex
import sys

import pytest
from conftest import REPO

DOCS = sorted({os.path.join(REPO, "README.md"), *glob.glob(os.path.join(REPO, "docs", "*.md")),
               *glob.glob(os.path.join(REPO, "models", "**", "README.md"), recursive=True),
               os.path.join(REPO, "data", "README.md")})
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`((?:python3?|torchrun|accelerate launch) [^`]+)`(?!`)")


def _segments(line: str) -> list[str]:
    """The commands of one shell line: split at && ; | and comments, '$ ' prompts dropped."""
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:]
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return []
    out, current = [], []
    for token in tokens:
        if token in ("&&", ";", "|", "||"):
            out.append(current)
            current = []
        else:
            current.append(token)
    out.append(current)
    return [shlex.join(c) for c in out if c]


def _script_command(segment: str) -> tuple[str, list[str]] | None:
    """(script path, argv) when the segment runs a repository script, else None."""
    tokens = shlex.split(segment)
    tokens = [t for t in tokens if not re.fullmatch(r"[A-Z_]+=\S*", t)]  # CI=true python ...
    for i, token in enumerate(tokens):
        rest = tokens[i + 1:]
        if token in ("python", "python3"):  # python SCRIPT ARGS (not python -m MODULE)
            return (rest[0], rest[1:]) if rest and rest[0].endswith(".py") else None
        if token == "torchrun" or (token == "launch" and i and tokens[i - 1] == "accelerate"):
            at = next((j for j, t in enumerate(rest) if t.endswith(".py")), None)  # after the launcher's flags
            return (rest[at], rest[at + 1:]) if at is not None else None
    return None


def doc_commands() -> list[tuple[str, str, list[str]]]:
    """(where, script, argv) of every script command in the docs."""
    found = []
    for path in DOCS:
        if not os.path.exists(path):
            continue
        text = open(path, encoding="utf-8").read()
        where = os.path.relpath(path, REPO)
        lines = []
        for block in FENCE.findall(text):
            lines += block.replace("\\\n", " ").splitlines()
        lines += INLINE.findall(FENCE.sub("", text))
        for line in lines:
            for segment in _segments(line):
                command = _script_command(segment)
                if command:
                    found.append((where, *command))
    return found


COMMANDS = doc_commands()


class _Parsed(BaseException):
    """Raised right after a parser has read the argv: the command parses; nothing else runs."""

    def __init__(self, extras: list[str]):
        self.extras = extras


def _load(script: str):
    spec = importlib.util.spec_from_file_location("docs_" + re.sub(r"\W", "_", script), os.path.join(REPO, script))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_docs_show_commands_of_every_kind():
    """The extraction finds what the docs hold (a check over nothing would pass anything)."""
    scripts = {script for _, script, _ in COMMANDS}
    assert {"train.py", "generate.py", "visualize_generation.py", "compare_models.py", "benchmarks/quality.py",
            "experiments/masking_viz.py", "experiments/layer_analysis.py"} <= scripts
    assert len(COMMANDS) > 60
    assert any(argv[:1] == ["--nproc_per_node"] or "--quick-test" in argv for _, s, argv in COMMANDS if s == "train.py")


def _failures(module, script: str, commands: list[tuple[str, list[str]]], monkeypatch) -> list[str]:
    """One line per (where, argv) in ``commands`` that ``script``'s parser refuses."""
    original = argparse.ArgumentParser.parse_known_args

    def stop_after_parsing(self, args=None, namespace=None):
        namespace, extras = original(self, args, namespace)
        raise _Parsed(extras)

    failures = []
    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_known_args", stop_after_parsing)
        for where, argv in commands:
            shown = f"{where}: {shlex.join([script, *argv])}"
            stderr = io.StringIO()
            try:
                with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                    code = module.main(list(argv))
                failures.append(f"{shown} -> exit {code}: {stderr.getvalue().strip()}")
            except _Parsed as parsed:
                if parsed.extras:
                    failures.append(f"{shown}: not accepted: {parsed.extras}")
            except SystemExit as err:  # --help (exit 0), or a plain argparse error: usage on stderr, exit 2
                if not (err.code in (0, None) and "--help" in argv):
                    failures.append(f"{shown} -> {err.code}: {stderr.getvalue().strip()[-300:]}")
    return failures


@pytest.mark.parametrize("script", sorted({s for _, s, _ in COMMANDS}))
def test_every_documented_command_parses(script, monkeypatch):
    where = sorted({w for w, s, _ in COMMANDS if s == script})
    assert os.path.isfile(os.path.join(REPO, script)), f"{', '.join(where)} name {script}, which does not exist"
    module = _load(script)
    assert hasattr(module, "main"), f"{script} has no main(argv)"
    assert _failures(module, script, [(w, argv) for w, s, argv in COMMANDS if s == script], monkeypatch) == []


def test_the_check_refuses_what_a_parser_refuses(monkeypatch):
    """An unknown flag, a flag without its value, a bad choice of an argparse script: each caught."""
    generate, attention = _load("generate.py"), _load("benchmarks/attention_entropy.py")
    assert len(_failures(generate, "generate.py", [("x", ["--stepz", "4"]), ("x", ["--steps"]),
                                                    ("x", ["--steps", "4"])], monkeypatch)) == 2
    assert len(_failures(attention, "benchmarks/attention_entropy.py", [("x", ["DIR", "--samples", "many"]),
                                                                        ("x", ["DIR"])], monkeypatch)) == 1
    assert _segments("$ pip install -r requirements.txt && python train.py --quick-test  # 4 min") == [
        "pip install -r requirements.txt", "python train.py --quick-test"]
    assert _script_command("torchrun --nproc_per_node 2 train.py --quick-test") == ("train.py", ["--quick-test"])
    assert _script_command("python -m pytest -q") is None
