"""Shared fixtures: the bundled tokenizer, a small local corpus, and a micro model config.

Every training test uses a model of ~0.3M parameters (hidden 32, 2 layers) so that a run of a
few steps takes seconds on 2 CPU cores.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# The tests never touch the Hugging Face Hub, in this process (call_main, train_in_process) or in the
# scripts they start (run_script): set before any test imports huggingface_hub, which reads it once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# datasets caches every tokenised corpus under ~/.cache; the tests' runs (a new tokenizer folder each)
# would leave gigabytes there. Their caches go to a temporary folder, removed when the session ends.
DATASETS_CACHE = tempfile.mkdtemp(prefix="diffusion-tests-datasets-")
os.environ["HF_DATASETS_CACHE"] = DATASETS_CACHE


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(DATASETS_CACHE, ignore_errors=True)

# A micro model: the "tiny" preset shrunk further with --config-overrides.
MICRO_MODEL = [
    "--model-config", "tiny",
    "--config-overrides", "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64",
]
MICRO_GPT2 = [
    "--model-config", "tiny",
    "--config-overrides", "n_embd=32,n_layer=2,n_head=2,n_inner=64",
]
# Fast, quiet settings shared by the training tests.
FAST = ["--quick-test", "--disable_tqdm", "true", "--max-eval-samples", "32", "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "16", "--logging_steps", "2", "--save_steps", "1000"]


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.join(REPO, "data", "tokenizer"))


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> str:
    """A 300-document jsonl file taken from the bundled validation split."""
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    with gzip.open(os.path.join(REPO, "data", "wordnet", "validation.jsonl.gz"), "rt") as src, open(path, "w") as dst:
        for i, line in enumerate(src):
            if i == 300:
                break
            dst.write(json.dumps({"text": json.loads(line)["text"], "source": "wordnet"}) + "\n")
    return str(path)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, tokenizer):
    """An untrained micro RoBERTa (32 positions) saved like train.py's final model. The decoder's
    and the renderer's mechanics need no good model; the seeded random weights vary its choices."""
    import torch

    from diffusion.checkpoint import DiffusionConfig
    from diffusion.text.models import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "final-model"
    model = build_model("masked", "tiny", tokenizer, 32, {"hidden_size": "32", "num_hidden_layers": "2",
                                                          "num_attention_heads": "2", "intermediate_size": "64"})
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    DiffusionConfig(objective="masked", max_length=32).save(str(path))
    return str(path)


def run_script(args: list[str], cwd: str | None = None, env: dict | None = None, timeout: int = 300):
    """Run a command (``python script.py ...`` from the repo root); returns CompletedProcess."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run(args, cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def call_main(script: str, argv: list[str], capsys) -> subprocess.CompletedProcess:
    """``python script argv`` as ``script.main(argv)`` in this process, its output read from capsys.

    For the error paths: the same code path as the command line (every script's main is
    diffusion.cli.run_main) without a fresh interpreter's ~6 s of imports per case. A few tests
    still run each script as a real process (run_script) for what only a process shows.
    """
    import importlib

    module = importlib.import_module(script.removesuffix(".py"))
    capsys.readouterr()  # drop what earlier code printed
    try:
        code = module.main(list(argv))
    except SystemExit as exit:  # argparse's own exits (--help)
        code = exit.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([script, *argv], code, out, err)


def train_in_process(argv: list[str]) -> int:
    """train.main(argv) in this process: faster than a subprocess for the many small runs."""
    import train

    return train.main(argv)


def _micro_gpt2(path, tokenizer, seed: int) -> str:
    import torch

    from diffusion.text.models import build_model

    torch.manual_seed(seed)
    model = build_model("causal", "tiny", tokenizer, 64, {"n_embd": "32", "n_layer": "2", "n_head": "2", "n_inner": "64"})
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def gpt2_checkpoint(tmp_path_factory, tokenizer):
    """An untrained micro GPT-2 (64 positions) on the bundled tokenizer: the autoregressive side of the comparisons."""
    return _micro_gpt2(tmp_path_factory.mktemp("gpt2") / "final-model", tokenizer, seed=1)


@pytest.fixture(scope="session")
def judge_checkpoint(tmp_path_factory, tokenizer):
    """Another micro GPT-2 (other seed, other folder): a judge that is neither generator."""
    return _micro_gpt2(tmp_path_factory.mktemp("judge") / "judge", tokenizer, seed=2)


def _micro_gaussian_checkpoint(path, tokenizer) -> str:
    """An untrained micro Gaussian denoiser (8-dimensional embeddings, 20 diffusion steps, 32 positions)
    over ``tokenizer``, saved at ``path`` like train.py's final model."""
    import torch

    from diffusion.checkpoint import DiffusionConfig
    from diffusion.gaussian.model import build_gaussian_model

    torch.manual_seed(0)
    model = build_gaussian_model("tiny", tokenizer, 32, embedding_dim=8,
                                 overrides={"hidden_size": "32", "num_hidden_layers": "2", "num_attention_heads": "2",
                                            "intermediate_size": "64"})
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    DiffusionConfig(objective="gaussian", max_length=32, schedule="sqrt", diffusion_steps=20,
                    sample_lengths=[10, 12, 14, 16, 20]).save(str(path))
    return str(path)


@pytest.fixture(scope="session")
def gaussian_checkpoint(tmp_path_factory, tokenizer):
    """The micro denoiser over the bundled BPE: the sampler's and the renderer's mechanics need no good model."""
    return _micro_gaussian_checkpoint(tmp_path_factory.mktemp("gaussian") / "final-model", tokenizer)


@pytest.fixture(scope="session")
def word_gaussian_checkpoint(tmp_path_factory):
    """The same micro denoiser over the word-level vocabulary of the bundled Gaussian base
    (data/word-tokenizer): a tokenizer other than the masked and causal models' own."""
    from transformers import AutoTokenizer

    words = AutoTokenizer.from_pretrained(os.path.join(REPO, "data", "word-tokenizer"))
    return _micro_gaussian_checkpoint(tmp_path_factory.mktemp("word-gaussian") / "final-model", words)
