"""Turn a finished train.py run into a bundled model folder with a measured model card.

    python models/bundle_model.py RUN_DIR models/masked-base --command "python train.py ..."
    python models/bundle_model.py RUN_DIR models/causal-base --command "python train.py --objective causal ..."
    python models/bundle_model.py RUN_DIR models/gaussian-base --command "python train.py --objective gaussian ..."

What it does, in order:

1. loads ``RUN_DIR/final-model`` (the objective comes from its ``diffusion_config.json``);
2. stores the weights as float16 safetensors (half the size) while the config keeps
   ``dtype: float32``, so ``from_pretrained`` hands out a float32 model that runs anywhere;
3. measures the *stored* weights on the whole held-out split of the bundled corpus:
   per-level masked-token loss and accuracy (masked), per-token perplexity (causal), or the
   loss, x0 MSE and rounding accuracy at each noise level t (Gaussian, with its own process);
4. writes ``README.md`` (the model card) with the command, data, steps, tokens seen, wall
   time, machine and those numbers, and ``card.json`` with the same numbers for tests.

The output folder is written next to its final place and renamed at the end, so an
interrupted run never leaves a half-written model behind.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from datasets import DatasetDict  # noqa: E402

from data_collator import VariableMaskingCollator, pad_input_ids  # noqa: E402
from diffusion.checkpoint import load_diffusion_config, load_model, load_tokenizer  # noqa: E402
from diffusion.cli import flag_value  # noqa: E402
from diffusion.gaussian.process import GaussianProcess  # noqa: E402
from diffusion.gaussian.trainer import (  # noqa: E402
    NOISE_LEVELS,
    GaussianCollator,
    evaluate_given_text,
    evaluate_per_noise_level,
)
from diffusion.masked.levels import DEFAULT_MASK_LEVELS, format_level  # noqa: E402
from diffusion.masked.trainer import evaluate_per_level  # noqa: E402
from diffusion.paths import BUNDLED_DATASET, BUNDLED_TOKENIZER, BUNDLED_WORD_TOKENIZER  # noqa: E402
from diffusion.text.data import load_raw_datasets, tokenize_datasets  # noqa: E402
from diffusion.text.models import count_parameters  # noqa: E402


def machine_line() -> str:
    """'AMD EPYC, 2 cores, torch 2.13.0+cpu' -- the machine the numbers were measured on."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


@torch.no_grad()
def causal_perplexity(model, dataset, pad_id: int, batch_size: int = 64) -> dict[str, float]:
    """Token-weighted held-out NLL of a causal LM: every token after <s> is predicted once."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start:start + batch_size]["input_ids"]
        ids, attention = pad_input_ids([{"input_ids": r} for r in rows], pad_id)  # (B, L), (B, L)
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]  # (B, L-1, V)
        targets = ids[:, 1:].masked_fill(attention[:, 1:] == 0, -100)  # (B, L-1)
        total += F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum",
                                 ignore_index=-100).item()
        count += int((targets != -100).sum())
    loss = total / count
    return {"loss": round(loss, 4), "perplexity": round(math.exp(loss), 2), "tokens": count}


def measure(model, tokenizer, objective: str, validation, max_examples: int | None = None,
            eos_padding_length: int | None = None, process: GaussianProcess | None = None) -> dict:
    """Held-out numbers of ``model`` on ``validation`` (tokenised rows with input_ids and length).

    A masked model trained with --eos-padding is also scored on the </s> of rows padded to
    ``eos_padding_length`` (its "end_accuracy" per level: does it know where texts end?).
    """
    if max_examples is not None:
        validation = validation.select(range(min(max_examples, len(validation))))
    validation = validation.sort("length")  # less padding per batch
    if objective == "causal":
        return {"examples": len(validation), **causal_perplexity(model, validation, tokenizer.pad_token_id)}
    if objective == "gaussian":
        results = evaluate_per_noise_level(model, process, validation, GaussianCollator(tokenizer), NOISE_LEVELS,
                                           batch_size=128, seed=0, show_progress=True)
        given = evaluate_given_text(model, process, validation, GaussianCollator(tokenizer), DEFAULT_MASK_LEVELS,
                                    batch_size=128, seed=0)
        return {"examples": len(validation), "schedule": process.schedule, "diffusion_steps": process.num_steps,
                "per_level": {format_level(level): {k: round(r[k], 4) for k in ("loss", "mse", "accuracy")}
                              for level, r in results.items()},
                "given_text": {format_level(share): round(r["accuracy"], 4) for share, r in given.items()}}
    collator = VariableMaskingCollator(tokenizer, mask_levels=DEFAULT_MASK_LEVELS, eos_padding_length=eos_padding_length)
    results = evaluate_per_level(model, validation, collator, DEFAULT_MASK_LEVELS, batch_size=128, seed=0,
                                 show_progress=True)
    keys = ("loss", "accuracy", "end_accuracy")
    return {"examples": len(validation),
            "per_level": {format_level(level): {k: round(r[k], 4) for k in keys if k in r}
                          for level, r in results.items()}}


def per_device_batch_size(run_dir: str, metrics: dict) -> int | None:
    """The per-device training batch, read from JSON only: metrics.json (train.py records it), else the
    newest checkpoint's trainer_state.json. Never training_args.bin: unpickling it runs code from the folder."""
    if metrics.get("per_device_train_batch_size"):
        return int(metrics["per_device_train_batch_size"])
    steps = sorted((int(n.split("-")[1]), n) for n in os.listdir(run_dir)
                   if n.startswith("checkpoint-") and n.split("-")[1].isdigit())
    for _, name in reversed(steps):
        path = os.path.join(run_dir, name, "trainer_state.json")
        if os.path.isfile(path):
            with open(path) as f:
                value = json.load(f).get("train_batch_size")
            if value:
                return int(value)
    return None


def stage_line(stages: list[dict]) -> str:
    """The card's line on the calls of train.py that made the model (more than one)."""
    def one(stage: dict) -> str:
        text = f"to step {stage['global_step']:,} in {stage['train_runtime_s']:.0f} s"
        if stage.get("start") == "weights":
            text += " (started from the weights above with `--model`: a fresh optimizer and learning-rate schedule)"
        return text

    if not any(stage.get("start") == "weights" for stage in stages):
        return (f"- Trained in {len(stages)} calls of `train.py` in one folder, each resuming the last "
                "checkpoint with a longer `--max_steps`: " + ", ".join(one(stage) for stage in stages))
    return (f"- Trained in {len(stages)} calls of `train.py` (a `--resume` continues the folder of the call "
            "before it): " + ", ".join(one(stage) for stage in stages))


def how_made(name: str, info: dict) -> list[str]:
    """The commands of the card's "How it was made", in the order they ran."""
    if "how_made" in info:  # a continued model: the lines of the model it continues, then its own
        return info["how_made"]
    return [*info["commands"], f"python models/bundle_model.py {info['run_dir_name']} models/{name}"
            + " --command \"...\"" * len(info["commands"])]


def continued(info: dict, previous: dict, card_path: str) -> dict:
    """``info`` of a run that started from the weights of the model ``previous`` (its card.json) describes.

    The new card counts both: the previous commands and stages first (this run's stages moved
    past the previous steps), steps, tokens, epochs and wall time summed; the measured numbers are
    this run's.
    """
    if previous.get("objective") != info["objective"]:
        raise ValueError(f"--continues: that card is of a {previous.get('objective')} model, this run is "
                         f"{info['objective']}")
    offset = previous["global_step"]
    stages = [dict(stage) for stage in previous["stages"]]
    for i, stage in enumerate(info["stages"]):
        stage = dict(stage, global_step=stage["global_step"] + offset)
        if i == 0:
            stage["start"] = "weights"
        stages.append(stage)
    lines = [*how_made(previous["name"], previous), *info["commands"],
             f"python models/bundle_model.py {info['run_dir_name']} models/{info['name']} --continues {card_path}"
             + " --command \"...\"" * len(info["commands"])]
    return dict(info, commands=previous["commands"] + info["commands"], stages=stages, how_made=lines,
                global_step=offset + info["global_step"], train_tokens=previous["train_tokens"] + info["train_tokens"],
                **({"train_tokens_bpe": previous["train_tokens_bpe"] + info["train_tokens_bpe"]}
                   if "train_tokens_bpe" in info and "train_tokens_bpe" in previous else {}),
                epochs=previous["epochs"] + info["epochs"],
                train_runtime_s=round(sum(stage["train_runtime_s"] for stage in stages), 1))


def card_text(name: str, info: dict, notes: str) -> str:
    """The model card (README.md) from the numbers in ``info``."""
    masked = info["objective"] == "masked"
    gaussian = info["objective"] == "gaussian"
    arch = info["architecture"]
    levels = info.get("mask_levels") or []
    if gaussian:
        kind = "Gaussian-embedding text diffusion model"
    elif not masked:
        kind = "autoregressive baseline"
    elif len(levels) == 1:  # one masking rate: BERT / RoBERTa pretraining, not yet a diffusion model
        kind = f"standard masked LM ({levels[0]:.0%} masking, the BERT/RoBERTa objective)"
    else:
        kind = "masked diffusion LM"
    lines = [
        f"# {name}: {kind} for the bundled corpus",
        "",
        f"A {info['parameters'] / 1e6:.1f}M-parameter `{arch}` ({info['config_summary']}) trained from scratch "
        "with this repository's own `train.py` on the bundled WordNet corpus (`data/wordnet`, "
        + ("3.2M training tokens) and tokenizer (`data/tokenizer`, byte-level BPE, 4,096 tokens)."
           if info.get("tokenizer", "data/tokenizer") == "data/tokenizer" else
           f"3.2M training tokens of `data/tokenizer`) with the word-level tokenizer `{info['tokenizer']}` "
           f"(whole words, {info['vocab_size']:,} entries, `<unk>` for the rest: `data/build_tokenizer.py`)."
           if info["tokenizer"] == "data/word-tokenizer" else
           f"3.2M training tokens of `data/tokenizer`) with its own tokenizer ({info['vocab_size']:,} entries)."),
        (f"Load it with `import diffusion.gaussian.model` (which registers the model type) and "
         f"`AutoModel.from_pretrained(\"models/{name}\")`, or sample it with "
         f"`python generate.py --checkpoint models/{name}`; " if gaussian else
         f"Load it with `{'AutoModelForMaskedLM' if masked else 'AutoModelForCausalLM'}.from_pretrained(\"models/{name}\")`; ")
        + "the weights are stored as float16 and load as float32.",
        "",
        "## How it was made",
        "",
        "```bash",
        *how_made(name, info),
        "```",
        "",
        f"- Steps: {info['global_step']:,} of batch {info['batch_size']} documents "
        f"({info['train_tokens'] / 1e6:.1f}M tokens seen"
        + (f", the text of {info['train_tokens_bpe'] / 1e6:.1f}M tokens of `data/tokenizer`, the other bundled "
           "models' measure" if "train_tokens_bpe" in info else "")
        + f", {info['epochs']:.1f} epochs of the corpus)",
        f"- Training wall time: {info['train_runtime_s'] / 60:.0f} min ({info['train_runtime_s']:.0f} s)",
        *([stage_line(info["stages"])] if len(info["stages"]) > 1 else []),
        f"- Machine: {info['machine']}; {info['threads_note']}",
        f"- Final training loss: {info['train_loss']}",
        "",
        "## Measured on held-out data",
        "",
        f"The validation split ({info['eval']['examples']:,} documents) of the bundled corpus, "
        "measured on the stored weights by `models/bundle_model.py`.",
        "",
    ]
    if gaussian:
        ev = info["eval"]
        lines += [f"Noise from its own process ({ev['schedule']} schedule, {ev['diffusion_steps']} steps) at each level t "
                  "(step k = t N), self-conditioned as sampling is; rounding accuracy = the nearest token of the "
                  "predicted x0 is the real one, at every real position.", "",
                  "noise t | loss (x0 MSE + rounding CE) | x0 MSE per dimension | rounding accuracy",
                  "---|---|---|---"]
        lines += [f"{level} | {r['loss']:.3f} | {r['mse']:.4f} | {r['accuracy']:.3f}"
                  for level, r in ev["per_level"].items()]
        if "given_text" in ev:
            lines += ["", "Reading the words around a gap, the masked model's test: a share m of each row's tokens "
                      "starts from pure noise (k = N), the rest and both ends are given clean; rounding accuracy of "
                      "the hidden tokens (compare models/masked-base's accuracy at mask level m).", "",
                      "hidden share m | accuracy of the hidden tokens", "---|---"]
            lines += [f"{share} | {accuracy:.3f}" for share, accuracy in ev["given_text"].items()]
    elif masked:
        per_level = info["eval"]["per_level"]
        end = all("end_accuracy" in r for r in per_level.values())  # measured after --eos-padding
        lines += ["mask level | loss | masked-token accuracy"
                  + (" | end-of-text accuracy (first `</s>`, EOS-padded rows)" if end else ""),
                  "---|---|---" + ("|---" if end else "")]
        lines += [f"{level} | {r['loss']:.3f} | {r['accuracy']:.3f}" + (f" | {r['end_accuracy']:.3f}" if end else "")
                  for level, r in per_level.items()]
    else:
        ev = info["eval"]
        lines += [f"- Per-token loss {ev['loss']:.3f} nats, **perplexity {ev['perplexity']:.1f}** "
                  f"({ev['tokens']:,} tokens, each predicted from its left context)."]
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished train.py --output_dir (with final-model/ and metrics.json)")
    parser.add_argument("output", help="the bundled folder to write, e.g. models/masked-base")
    parser.add_argument("--command", required=True, action="append",
                        help="the exact train.py command that made the run; repeat it, in order, for a run "
                             "trained in several calls (each later one with --resume and a longer --max_steps)")
    parser.add_argument("--continues", metavar="CARD_JSON",
                        help="the card.json of the bundled model the run started from (its train.py --model): its "
                             "commands, stages, steps, tokens and wall time come first on the new card")
    parser.add_argument("--notes", help="a markdown file appended to the card (choices made, and why)")
    parser.add_argument("--threads-note", default="", help="how the CPU was shared during training")
    parser.add_argument("--max-eval-samples", type=int, help="measure on the first N held-out documents (default: all)")
    args = parser.parse_args(argv)

    previous = None
    if args.continues:  # read now: the folder it lies in may be the one this call replaces
        try:
            with open(args.continues) as f:
                previous = json.load(f)
        except (OSError, ValueError) as error:
            print(f"error: --continues {args.continues!r} is not a readable card.json ({error})", file=sys.stderr)
            return 2
    final = os.path.join(args.run_dir, "final-model")
    if not os.path.isdir(final) or not os.path.isfile(os.path.join(args.run_dir, "metrics.json")):
        print(f"error: {args.run_dir!r} has no final-model/ and metrics.json: is the run finished?", file=sys.stderr)
        return 2
    with open(os.path.join(args.run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    diffusion_config = load_diffusion_config(final)
    if diffusion_config is None:
        print(f"error: {final!r} has no diffusion_config.json: was it written by train.py?", file=sys.stderr)
        return 2
    objective = diffusion_config.objective

    tokenizer = load_tokenizer(final)
    model = load_model(objective, final).float()
    batch_size = per_device_batch_size(args.run_dir, metrics)
    if batch_size is None:
        print(f"error: {args.run_dir!r} records no batch size (no metrics.json field, no checkpoint "
              f"trainer_state.json)", file=sys.stderr)
        return 2

    # 1-2: float16 weights, float32 config.
    tmp = args.output.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.half().save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    config_path = os.path.join(tmp, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["dtype"] = "float32"
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)
    diffusion_config.save(tmp)  # in the current format version

    # 3: measure what was stored.
    stored = load_model(objective, tmp)
    assert stored.dtype == torch.float32, stored.dtype
    max_length = diffusion_config.max_length or 128
    raw = load_raw_datasets(BUNDLED_DATASET)
    if "train_tokens" in metrics:  # the run counted its training tokens: tokenise the held-out split only
        raw = DatasetDict(validation=raw["validation"])
    data = tokenize_datasets(raw, tokenizer, max_length=max_length)
    process = (GaussianProcess(diffusion_config.schedule, diffusion_config.diffusion_steps)
               if objective == "gaussian" else None)
    evaluation = measure(stored, tokenizer, objective, data["validation"], args.max_eval_samples,
                         eos_padding_length=max_length if diffusion_config.eos_padding else None, process=process)

    # Tokens seen: non-pad tokens of the batches the run consumed (documents average ~20 tokens);
    # runs older than metrics.json's "train_tokens" were trained on the bundled corpus, counted here.
    train_tokens = metrics["train_tokens"] if "train_tokens" in metrics else sum(data["train"]["length"])
    epochs = float(metrics.get("final", {}).get("epoch", 0.0))
    # A model with the word-level tokenizer counts fewer, longer tokens for the same text; the budget
    # the bundled models share is the text seen, so its card also counts it in the BPE's tokens: its
    # own count times the two tokenizers' ratio on the bundled corpus's training split.
    vocab = tokenizer.get_vocab()
    own = next((name for name, folder in (("data/tokenizer", BUNDLED_TOKENIZER),
                                          ("data/word-tokenizer", BUNDLED_WORD_TOKENIZER))
                if load_tokenizer(folder).get_vocab() == vocab), "its own tokenizer")
    bpe_tokens = None
    if own != "data/tokenizer":
        corpus = DatasetDict(train=load_raw_datasets(BUNDLED_DATASET)["train"])
        counts = [sum(tokenize_datasets(corpus, t, max_length=max_length)["train"]["length"])
                  for t in (load_tokenizer(BUNDLED_TOKENIZER), tokenizer)]
        bpe_tokens = int(train_tokens * epochs * counts[0] / counts[1])
    # All the calls that trained it (train.py records each --resume as a stage; older runs: one).
    stages = metrics.get("stages") or [{"global_step": metrics["global_step"],
                                        "train_runtime_s": metrics["train_runtime_s"]}]
    info = {
        "name": os.path.basename(args.output.rstrip("/")),
        "objective": objective,
        "mask_levels": diffusion_config.mask_levels,
        "architecture": config["architectures"][0],
        "config_summary": f"{config.get('num_hidden_layers', config.get('n_layer'))} layers, "
                          f"hidden {config.get('hidden_size', config.get('n_embd'))}, "
                          f"{config.get('num_attention_heads', config.get('n_head'))} heads"
                          + (f", {config['embedding_dim']}-dimensional token embeddings" if "embedding_dim" in config
                             else ""),
        "parameters": count_parameters(stored),
        "commands": args.command,
        # The run folder as the command names it (--output_dir), else as given here.
        "run_dir_name": flag_value(args.command[-1].split(), "--output-dir") or args.run_dir.rstrip("/"),
        "global_step": metrics["global_step"],
        "batch_size": batch_size * metrics.get("world_size", 1),
        "train_tokens": int(train_tokens * epochs),
        **({"train_tokens_bpe": bpe_tokens} if bpe_tokens is not None else {}),
        "tokenizer": own,
        "vocab_size": len(tokenizer),
        "epochs": epochs,
        "stages": stages,
        "train_runtime_s": round(sum(stage["train_runtime_s"] for stage in stages), 1),
        "train_loss": metrics["train_loss"],
        "machine": machine_line(),
        "threads_note": args.threads_note or "training had the machine to itself",
        "eval": evaluation,
    }
    if previous is not None:
        try:
            info = continued(info, previous, args.continues)
        except (KeyError, ValueError) as error:
            print(f"error: --continues {args.continues!r}: {error}", file=sys.stderr)
            return 2
    notes = ""
    if args.notes:
        with open(args.notes) as f:
            notes = f.read()
    with open(os.path.join(tmp, "README.md"), "w") as f:
        f.write(card_text(info["name"], info, notes))
    with open(os.path.join(tmp, "card.json"), "w") as f:
        json.dump(info, f, indent=2)

    # 4: swap in atomically (the old folder, if any, is removed only after the new one is complete).
    old = args.output.rstrip("/") + ".old"
    if os.path.isdir(args.output):
        os.replace(args.output, old)
    os.replace(tmp, args.output)
    shutil.rmtree(old, ignore_errors=True)
    size = sum(os.path.getsize(os.path.join(args.output, n)) for n in os.listdir(args.output))
    print(f"wrote {args.output} ({size / 1e6:.1f} MB)")
    print(json.dumps(evaluation, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
