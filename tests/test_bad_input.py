"""Bad input is one line and a non-zero exit, for every script: unknown flags, bytes that are not UTF-8,
a file where a folder belongs, broken data files. Nothing is written and nothing loads first."""

from __future__ import annotations

import gzip
import json
import os
import sys

import pytest
from conftest import FAST, MICRO_MODEL, call_main, run_script, train_in_process


def _one_line(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-1500:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-1500:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("argv, needles", [
    (["generate.py", "--model-kind", "UNet"], ["unknown flag --model-kind"]),
    (["generate.py", "--sample", "topk"], ["unknown flag --sample", "did you mean --sampler or --sampling"]),
    (["train.py", "--quick-test", "--lr", "1e-3"], ["unknown flag --lr", "did you mean --learning-rate"]),
    (["compare_models.py", "--steps"], ["--steps: expected one argument"]),
])
def test_unknown_or_incomplete_flags_are_one_line_without_usage(argv, needles, capsys):
    proc = call_main(argv[0], argv[1:], capsys)
    line = _one_line(proc, *needles)
    assert "usage:" not in proc.stderr and "(see --help)" in line


def test_a_negative_number_after_a_flag_is_its_value():
    from diffusion.cli import parse_args
    from diffusion.masked.unmasking import DecodeOptions

    with pytest.raises(ValueError, match="--steps must be at least 1, got -3"):
        parse_args((DecodeOptions,), ["--steps", "-3"])
    (options,) = parse_args((DecodeOptions,), ["--temperature", "0.5", "--seed", "-1"])
    assert options.seed == -1 and options.temperature == 0.5


@pytest.mark.parametrize("script, flag", [("generate.py", "--prefix"), ("generate.py", "--text"),
                                          ("visualize_generation.py", "--prefix"), ("compare_models.py", "--prompt"),
                                          ("compare_models.py", "--infill")])
def test_prompts_that_are_not_utf8_are_one_line(script, flag, capsys):
    value = os.fsdecode(b"dog: \xff\xfe [MASK]")  # how Python hands undecodable argv bytes to a script
    proc = call_main(script, [flag, value], capsys)
    _one_line(proc, f"{flag} is not valid UTF-8", "byte 0xff")
    assert proc.stdout == ""


def test_argv_bytes_that_are_not_utf8_are_one_line_from_a_real_process():
    """The same, through a real interpreter: the bytes come from the operating system, and nothing
    the script imports prints to stderr before the one line."""
    proc = run_script([sys.executable, "generate.py", "--prefix", os.fsdecode(b"dog: \xff\xfe [MASK]")])
    _one_line(proc, "--prefix is not valid UTF-8", "byte 0xff")
    assert proc.stdout == ""


def test_a_file_given_as_checkpoint_is_named_a_file(capsys):
    proc = call_main("generate.py", ["--checkpoint", "README.md"], capsys)
    _one_line(proc, "'README.md' is a file, not a masked LM folder")


# ------------------------------------------------------------------------------------ data files
def _train_on(path, tmp_path, capsys):
    code = train_in_process([*FAST, *MICRO_MODEL, "--dataset", str(path), "--max_steps", "2",
                             "--output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line and "s/it]" not in line]
    return code, lines


def test_an_empty_jsonl_is_one_line_naming_it(tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    code, lines = _train_on(path, tmp_path, capsys)
    assert code == 2 and lines == [f"error: {path} is empty: no documents to train on"]
    assert not (tmp_path / "run").exists()


def test_a_truncated_jsonl_names_the_file_and_row(tmp_path, capsys):
    path = tmp_path / "cut.jsonl"
    rows = [json.dumps({"text": f"word {i}: a thing."}) for i in range(50)]
    path.write_text("\n".join(rows) + "\n" + rows[0][:9] + "\n")  # the last row cut in the middle
    code, lines = _train_on(path, tmp_path, capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: {path}, row 51: not valid JSON"), lines
    assert not (tmp_path / "run").exists()


def test_a_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9: a small restaurant.\n".encode("latin-1") * 20)
    code, lines = _train_on(path, tmp_path, capsys)
    assert code == 2 and len(lines) == 1 and str(path) in lines[0] and "UTF-8" in lines[0], lines


def test_a_truncated_gzip_is_one_line(tmp_path, capsys):
    path = tmp_path / "cut.jsonl.gz"
    data = gzip.compress(("\n".join(json.dumps({"text": f"word {i}: a thing."}) for i in range(500)) + "\n").encode())
    path.write_bytes(data[: len(data) // 2])
    code, lines = _train_on(path, tmp_path, capsys)
    assert code == 2 and len(lines) == 1 and str(path) in lines[0], lines


def test_no_documents_left_after_tokenisation_is_one_line(tmp_path, capsys):
    path = tmp_path / "blank.jsonl"
    path.write_text("\n".join(json.dumps({"text": ""}) for _ in range(40)) + "\n")
    code, lines = _train_on(path, tmp_path, capsys)
    # Found only once the texts are tokenised, so the loading bars come first; then one line, no traceback.
    errors = [line for line in lines if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "no usable examples after tokenisation" in errors[0], lines
    assert lines[-1] == errors[0] and not any("Traceback" in line for line in lines)
    assert not (tmp_path / "run").exists()


def test_a_missing_model_folder_lists_the_folders_that_hold_one(capsys, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.chdir(tmp_path)  # a quick test's results/ in the checkout would be listed first (closer in name)
        proc = call_main("generate.py", ["--checkpoint", "results-nope/final-model"], capsys)
    line = _one_line(proc, "'results-nope/final-model' does not exist", "folders that hold a model:",
                     "models/masked-base")
    assert "Hugging Face Hub" in line  # offline, it cannot be a hub id either
    proc = call_main("compare_models.py", ["--gpt2-checkpoint", "gpt2"], capsys)
    _one_line(proc, "cannot load causal LM 'gpt2' from the Hugging Face Hub", "use the bundled models/causal-base")


def test_flags_that_cannot_have_an_effect_say_so_once():
    from diffusion.masked.unmasking import DecodeOptions, decoding_notes

    assert decoding_notes(DecodeOptions(), 62, 3) == []  # the defaults: nucleus, distinct samples
    notes = decoding_notes(DecodeOptions(sampling="greedy", temperature=0.7), 62, 3)
    assert len(notes) == 2 and "--temperature 0.7 has no effect with --sampling greedy" in notes[0]
    assert "same text" in notes[1]
    assert decoding_notes(DecodeOptions(sampling="topk", temperature=0.7), 62, 3) == []
    assert "--p 0.5 has no effect" in decoding_notes(DecodeOptions(sampling="topk", p=0.5), 62)[0]
    # 10 steps over 8 blocks of 8: 2 steps or 1 per block, and cosine keeps the same counts as linear
    assert "reveals the same number" in decoding_notes(DecodeOptions(schedule="cosine", steps=10, block_length=8), 62)[0]
    assert decoding_notes(DecodeOptions(schedule="cosine", steps=32, block_length=8, sampling="topk"), 62) == []
    # the default steps (one per position) reveal one position per step under every schedule
    one_each = decoding_notes(DecodeOptions(schedule="exponential", block_length=8), 62)
    assert "every step reveals one position" in one_each[0]


def test_generate_prints_each_note_once(checkpoint, capsys):
    import generate

    assert generate.main(["--checkpoint", checkpoint, "--sampling", "greedy", "--temperature", "0.7", "--steps", "2"]) == 0
    err = capsys.readouterr().err
    assert err.count("--temperature 0.7 has no effect") == 1 and err.count("same text") == 1
