"""The repository's shape: import rules read from the code, the versioned checkpoint config, one usable length.

Import rules (DESIGN.md, README "How it works"):
* no script imports another script (a script: any .py outside diffusion/ and tests/ with a
  ``if __name__ == "__main__":`` block, at the top level or in benchmarks/, experiments/, models/, data/);
* nothing under diffusion/ imports a top-level file of the repository (config.py, data_collator.py,
  a script) or a script of a subfolder;
* config.py and data_collator.py import only the library (of the repository's own code).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, call_main

SKIP_DIRS = {"tests", "results", "venv", ".venv", "__pycache__", "node_modules"}


def _python_files() -> list[str]:
    """Repository-relative paths of every .py file the rules cover."""
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                         and not d.startswith("results"))
        found += [os.path.relpath(os.path.join(root, f), REPO) for f in sorted(files) if f.endswith(".py")]
    return found


def _imported_modules(path: str) -> set[str]:
    """First components of every absolute import in the file (inside functions too)."""
    with open(os.path.join(REPO, path)) as f:
        tree = ast.parse(f.read(), filename=path)
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def _is_script(path: str) -> bool:
    with open(os.path.join(REPO, path)) as f:
        tree = ast.parse(f.read(), filename=path)
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = {getattr(n, "id", None) for n in ast.walk(node.test)} | {getattr(n, "value", None)
                                                                           for n in ast.walk(node.test)}
            if "__name__" in names and "__main__" in names:
                return True
    return False


FILES = _python_files()
LIBRARY = [p for p in FILES if p.startswith("diffusion" + os.sep)]
OUTSIDE = [p for p in FILES if p not in LIBRARY]
SCRIPTS = {p: os.path.splitext(os.path.basename(p))[0] for p in OUTSIDE if _is_script(p)}
TOP_LEVEL = {os.path.splitext(p)[0] for p in OUTSIDE if os.sep not in p}  # config, data_collator, train, ...


def test_the_rules_see_the_whole_repository():
    """The walk finds the scripts and the library it is meant to check (a rule over nothing passes anything)."""
    assert {"train", "generate", "visualize_generation", "compare_models"} <= set(SCRIPTS.values())
    assert {"quality", "generation_speed", "bundle_model", "build_tokenizer"} <= set(SCRIPTS.values())
    assert {"masking_viz", "predictions_by_level", "schedule_comparison", "layer_analysis"} <= set(SCRIPTS.values())
    assert {"config", "data_collator"} <= TOP_LEVEL and "config" not in SCRIPTS.values()
    assert os.path.join("diffusion", "schedules.py") in LIBRARY and len(LIBRARY) > 20


def test_no_script_imports_another_script():
    script_names = set(SCRIPTS.values())
    broken = [f"{path} imports the script {name}"
              for path, me in SCRIPTS.items() for name in sorted((_imported_modules(path) & script_names) - {me})]
    assert broken == []


def test_the_library_imports_no_top_level_file_and_no_script():
    forbidden = TOP_LEVEL | set(SCRIPTS.values())
    broken = [f"{path} imports {name}" for path in LIBRARY for name in sorted(_imported_modules(path) & forbidden)]
    assert broken == []


@pytest.mark.parametrize("module", ["config.py", "data_collator.py"])
def test_config_and_collator_import_only_the_library(module):
    own_code = TOP_LEVEL | set(SCRIPTS.values())
    assert _imported_modules(module) & own_code == set()
    assert "diffusion" in _imported_modules(module)


def test_importing_a_script_changes_no_logging():
    """Importing generate.py (or any generating script) must not switch Hugging Face progress bars off."""
    code = ("import generate, visualize_generation, compare_models\n"
            "from transformers.utils import logging\n"
            "print(logging.is_progress_bar_enabled())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "True"


def test_comments_point_only_inside_the_repository():
    """Docs and code refer to files a user has: nothing outside the repository (../shared/...)."""
    offenders = []
    for path in FILES + ["README.md"] + [os.path.join("docs", f) for f in os.listdir(os.path.join(REPO, "docs"))
                                         if f.endswith(".md")]:
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            if "../shared" in f.read():
                offenders.append(path)
    assert offenders == []


# ---------------------------------------------------------------------------------- checkpoint.py
def test_diffusion_config_round_trip_and_file_shape(tmp_path):
    from diffusion.checkpoint import FORMAT_VERSION, DiffusionConfig, load_diffusion_config

    config = DiffusionConfig(objective="masked", max_length=48, mask_levels=[0.15], eos_padding=True, global_step=7)
    config.save(str(tmp_path))
    data = json.loads((tmp_path / "diffusion_config.json").read_text())
    assert list(data)[:2] == ["version", "objective"] and data["version"] == FORMAT_VERSION == 1
    assert load_diffusion_config(str(tmp_path)) == config
    assert load_diffusion_config(str(tmp_path / "nowhere")) is None


def test_files_from_before_versions_are_read_as_version_1(tmp_path):
    """The format without a "version" key (train.py before it had one) has the same fields."""
    from diffusion.checkpoint import load_diffusion_config

    (tmp_path / "diffusion_config.json").write_text(json.dumps({"objective": "masked", "max_length": 32,
                                                                 "eos_padding": True}))
    config = load_diffusion_config(str(tmp_path))
    assert config.version == 1 and config.eos_padding is True and config.max_length == 32


@pytest.mark.parametrize("content, message", [
    ({"version": 2, "objective": "masked"}, "format version 2"),
    ({"version": 1, "objective": "pixels"}, "unknown objective 'pixels'"),
    ({"version": 1, "objective": "masked", "noise": "pink"}, "unknown key(s) noise"),
    ({"version": 1, "max_length": 32}, "no 'objective'"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_diffusion_config_is_one_clear_error(tmp_path, content, message):
    from diffusion.checkpoint import ModelLoadError, load_diffusion_config

    (tmp_path / "diffusion_config.json").write_text(json.dumps(content))
    with pytest.raises(ModelLoadError) as info:
        load_diffusion_config(str(tmp_path))
    assert message in str(info.value) and str(tmp_path) in str(info.value)


def test_generate_refuses_an_unknown_config_version_in_one_line(checkpoint, tmp_path, capsys):
    import shutil

    folder = tmp_path / "future-model"
    shutil.copytree(checkpoint, folder)
    (folder / "diffusion_config.json").write_text(json.dumps({"version": 9, "objective": "masked"}))
    proc = call_main("generate.py", ["--checkpoint", str(folder)], capsys)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "format version 9" in proc.stderr and "Traceback" not in proc.stderr


def test_generate_refuses_a_checkpoint_of_another_objective(gpt2_checkpoint, tmp_path, capsys):
    import shutil

    from diffusion.checkpoint import DiffusionConfig

    folder = tmp_path / "causal-model"
    shutil.copytree(gpt2_checkpoint, folder)
    DiffusionConfig(objective="causal", max_length=64).save(str(folder))
    proc = call_main("generate.py", ["--checkpoint", str(folder)], capsys)
    assert proc.returncode == 2 and "holds a causal model" in proc.stderr and proc.stderr.count("\n") == 1


def test_bundled_models_are_in_the_current_format():
    from diffusion.checkpoint import FORMAT_VERSION, load_diffusion_config
    from diffusion.paths import BUNDLED_CAUSAL_MODEL, BUNDLED_MASKED_MODEL

    for folder, objective in ((BUNDLED_MASKED_MODEL, "masked"), (BUNDLED_CAUSAL_MODEL, "causal")):
        with open(os.path.join(folder, "diffusion_config.json")) as f:
            assert json.load(f)["version"] == FORMAT_VERSION
        assert load_diffusion_config(folder).objective == objective
    assert load_diffusion_config(BUNDLED_CAUSAL_MODEL).mask_levels is None  # no collator of ours


# --------------------------------------------------------------------------------- usable length
def _micro(kind: str):
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        GPT2Config,
        GPT2LMHeadModel,
        RobertaConfig,
        RobertaForMaskedLM,
        RobertaPreLayerNormConfig,
        RobertaPreLayerNormForMaskedLM,
    )

    torch.manual_seed(0)
    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, vocab_size=50)
    if kind == "roberta":
        return RobertaForMaskedLM(RobertaConfig(max_position_embeddings=40, pad_token_id=1, **small))
    if kind == "roberta-prelayernorm":
        return RobertaPreLayerNormForMaskedLM(RobertaPreLayerNormConfig(max_position_embeddings=40, pad_token_id=1,
                                                                        **small))
    if kind == "roberta-pad0":  # the offset follows pad_token_id, not the model type
        return RobertaForMaskedLM(RobertaConfig(max_position_embeddings=40, pad_token_id=0, **small))
    if kind == "bert":
        return BertForMaskedLM(BertConfig(max_position_embeddings=40, pad_token_id=1, **small))
    return GPT2LMHeadModel(GPT2Config(n_positions=40, n_embd=16, n_layer=1, n_head=2, vocab_size=50, pad_token_id=1))


@pytest.mark.parametrize("kind, usable", [("roberta", 38), ("roberta-prelayernorm", 38), ("roberta-pad0", 39),
                                          ("bert", 40), ("gpt2", 40)])
def test_usable_length_reads_the_position_offset_from_the_model(kind, usable):
    import torch

    from diffusion.checkpoint import usable_length

    model = _micro(kind).eval()
    assert usable_length(model) == usable
    # The claim itself: a sequence of exactly that length runs, one more does not fit the table.
    ids = torch.full((1, usable), 5)
    model(input_ids=ids, attention_mask=torch.ones_like(ids))
    too_long = torch.full((1, usable + 1), 5)
    with pytest.raises((IndexError, RuntimeError, ValueError)):
        model(input_ids=too_long, attention_mask=torch.ones_like(too_long))


def test_generate_max_length_past_the_bundled_positions_is_one_line(capsys):
    """models/masked-base is a roberta-prelayernorm with 130 positions: 128 tokens fit, 130 do not."""
    proc = call_main("generate.py", ["--checkpoint", "models/masked-base", "--max-length", "130"], capsys)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("error: --max-length 130 is longer than the 128 positions 'models/masked-base' "
                                   "was built for")
