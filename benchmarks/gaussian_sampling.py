"""Which way of sampling a Gaussian text model writes words? Unconditional samples, judged.

    python benchmarks/gaussian_sampling.py                              # models/gaussian-base, 24 samples each
    python benchmarks/gaussian_sampling.py --checkpoint results-gaussian/final-model --num-samples 48

Every variant samples the same ``--num-samples`` unconditional texts (lengths drawn from the
checkpoint's training lengths, as generate.py does; one seed for all): DDIM 50 (the default),
DDIM 200, DDPM with every trained step, and at DDIM 50 the argmax clamp (``--clamp``), the drawn
clamp (``--clamp-temperature`` 1.0, 0.7, 0.5) and no self-conditioning (DDIM counts above the
model's trained steps become all of them); and, as the yardstick, as many
held-out documents of the bundled corpus.  Each row gets

* the **known-word rate**: the share of its words (runs of letters, lower-cased) that occur
  anywhere in the bundled training corpus (diffusion/text/metrics.py).  Text is near 1; glued
  fragments ("Tcelokistub") are not words.  Lenient: a fragment that spells a rare corpus word counts;
* the **judge perplexity** under ``--judge`` (default models/causal-base, which is not a generator here);
* the first samples, as they print.

Writes ``gaussian_sampling.md`` and ``gaussian_sampling.json`` in ``--output-dir`` (an earlier
run is kept unless ``--overwrite``).  This is the quick, unconditional companion of
benchmarks/quality.py, which judges prompted continuations of every paradigm side by side.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402

from diffusion.checkpoint import quiet_loading, resolve_model  # noqa: E402
from diffusion.cli import parse_args, run_main  # noqa: E402
from diffusion.device import pick_device  # noqa: E402
from diffusion.gaussian.generation import load_gaussian_generator  # noqa: E402
from diffusion.gaussian.sampling import GaussianSamplingOptions, gaussian_prompt, sample, sample_lengths  # noqa: E402
from diffusion.text.causal import load_causal  # noqa: E402
from diffusion.text.data import DataError, bundled_texts  # noqa: E402
from diffusion.text.metrics import check_judge, corpus_vocabulary, judge_perplexity, known_word_rate  # noqa: E402

DDIM = GaussianSamplingOptions(sampler="ddim", ddim_steps=50)
VARIANTS = [  # DDIM counts above the checkpoint's trained steps become all of them
    DDIM,
    dataclasses.replace(DDIM, ddim_steps=200),
    GaussianSamplingOptions(sampler="ddpm"),
    dataclasses.replace(DDIM, clamp=True),
    dataclasses.replace(DDIM, clamp_temperature=1.0),
    dataclasses.replace(DDIM, clamp_temperature=0.7),
    dataclasses.replace(DDIM, clamp_temperature=0.5),
    dataclasses.replace(DDIM, no_self_conditioning=True),
]


def variants_for(num_steps: int) -> list[GaussianSamplingOptions]:
    """VARIANTS for a model of ``num_steps`` trained steps, each once."""
    out = []
    for options in VARIANTS:
        if options.sampler == "ddim":
            options = dataclasses.replace(options, ddim_steps=min(options.ddim_steps, num_steps))
        if options not in out:
            out.append(options)
    return out


@dataclass
class SamplingBenchmarkArguments:
    checkpoint: str | None = field(
        default=None, metadata={"help": "Gaussian text checkpoint. Default: results-gaussian/final-model if it "
                                        "exists, else models/gaussian-base."})
    judge: str = field(default="models/causal-base", metadata={"help": "Causal LM that scores the samples."})
    num_samples: int = field(default=24, metadata={"help": "Unconditional samples per variant."})
    seed: int = field(default=0, metadata={"help": "The one seed of every variant (noise and lengths)."})
    output_dir: str = field(default="results/gaussian_sampling", metadata={"help": "gaussian_sampling.md and .json."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an earlier gaussian_sampling.json."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... Default: cuda if available."})


def run(argv: list[str]) -> int:
    (args,) = parse_args((SamplingBenchmarkArguments,), argv)
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {args.num_samples}")
    md_path, json_path = (os.path.join(args.output_dir, f"gaussian_sampling.{ext}") for ext in ("md", "json"))
    if os.path.exists(json_path) and not args.overwrite:
        raise ValueError(f"{json_path} exists: pass --overwrite to replace it, or another --output-dir")
    name, _ = resolve_model(args.checkpoint, "--checkpoint", "gaussian")
    check_judge(args.judge, {"Gaussian": name})
    device = pick_device(args.device)
    quiet_loading()
    generator = load_gaussian_generator(name)
    model = generator.model.eval().to(device)
    judge_model, judge_tokenizer = load_causal(args.judge, "--judge")
    judge_model.eval().to(device)
    try:
        vocabulary = corpus_vocabulary(bundled_texts("train"))
        held_out = [text for _, text in zip(range(args.num_samples), bundled_texts("validation"), strict=False)]
    except DataError as error:
        raise ValueError(str(error)) from None

    lengths = sample_lengths(generator.config, None, args.num_samples, seed=args.seed)
    rows = [dict(variant="held-out documents (the yardstick)", forward_passes=0, seconds=0.0, texts=held_out)]
    prompt = gaussian_prompt(generator.tokenizer, lengths)  # the same rows for every variant
    variants = variants_for(generator.process.num_steps)
    for i, options in enumerate(variants, 1):
        label = options.describe(generator.process)
        started = time.perf_counter()
        result = sample(model, generator.process, generator.tokenizer, prompt, options, seed=args.seed,
                        record_trace=False)
        rows.append(dict(variant=label, forward_passes=result.forward_passes,
                         seconds=round(time.perf_counter() - started, 1), texts=[t.strip() for t in result.texts]))
        print(f"[{i}/{len(variants)}] {label}: {rows[-1]['seconds']} s", flush=True)
    for row in rows:
        row["known_word_rate"] = known_word_rate(row["texts"], vocabulary)
        row["judge_perplexity"] = judge_perplexity(judge_model, judge_tokenizer, [""] * len(row["texts"]),
                                                   row["texts"])

    meta = dict(checkpoint=name, judge=args.judge, num_samples=args.num_samples, seed=args.seed,
                process=f"{generator.config.schedule} schedule, {generator.process.num_steps} steps",
                device=str(device), torch=torch.__version__)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(json_path + ".tmp", "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=2)
    os.replace(json_path + ".tmp", json_path)
    table = markdown(meta, rows)
    with open(md_path, "w") as f:
        f.write(table)
    print(table)
    print(f"written: {md_path}, {json_path}")
    return 0


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = [f"Unconditional samples of `{meta['checkpoint']}` ({meta['process']}), {meta['num_samples']} per row, "
             f"seed {meta['seed']}; judge `{meta['judge']}`.", "",
             "| variant | model calls | known-word rate | judge perplexity | first sample |", "|---|---:|---:|---:|---|"]
    for row in rows:
        first = row["texts"][0][:110].replace("|", "\\|") if row["texts"] else ""
        ppl = f"{row['judge_perplexity']:,.1f}" if row["judge_perplexity"] is not None else "-"
        lines.append(f"| {row['variant']} | {row['forward_passes']} | {row['known_word_rate']:.3f} | {ppl} | `{first}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
