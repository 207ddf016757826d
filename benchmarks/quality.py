"""Quality of generated text: masked and Gaussian diffusion at many settings against GPT-2, scored by a judge.

    python benchmarks/quality.py --judge path/to/a-third-causal-lm          # the default protocol
    python benchmarks/quality.py --num-prompts 4 --samples-per-prompt 2 --max-new-tokens 16 --steps 4 8  # small
    python benchmarks/quality.py --roberta-checkpoint results/final-model --gpt2-checkpoint results-gpt2/final-model

The protocol.  Prompts: the first ``--prompt-tokens`` (3) tokens of the first ``--num-prompts``
held-out documents (data/wordnet/validation.jsonl.gz) that are that long, the rule of
benchmarks/generation_speed.py (both call diffusion/text/data.py's ``held_out_documents``).
Every generator writes ``--max-new-tokens`` (64) tokens after each prompt, ``--samples-per-prompt``
samples at once with seed ``--seed + prompt index``, the same for every setting, with the same
``--sampling`` (nucleus p=0.9 by default).  Settings:

* diffusion at each of ``--steps`` (8 16 32 64) x ``--schedules`` (linear cosine exponential)
  x ``--remasking`` (low-confidence random), and parallel decoding with ``--threshold`` 0.9
  (the most steps, linear, low-confidence);
* or, with ``--grid cache``, cached block decoding: ``--caches`` (none prefix dual) x
  ``--thresholds`` (0.9, and 0 for none) x ``--block-lengths`` (4 8 16) x ``--cache-steps`` (0:
  one step per position), linear, low-confidence (diffusion/masked/cache.py);
* Gaussian diffusion (``--gaussian-checkpoint``, default results-gaussian/final-model or the
  bundled models/gaussian-base; ``--no-gaussian`` leaves it out): DDPM with every trained step and
  DDIM at each of ``--gaussian-ddim-steps`` (10 25 50 100 200), self-conditioned, not clamped;
  and at DDPM and DDIM 50 also clamped, without self-conditioning, and both; and at DDIM 50 with
  the drawn clamp (``--clamp-temperature``, at ``DRAWN_CLAMP_TEMPERATURE``).  Its prompt is held
  fixed (diffusion/gaussian/sampling.py) and each sample's length is drawn from the training
  lengths (at least the prompt and 1 token, at most the prompt and ``--max-new-tokens``, and the
  model's positions): a Gaussian model has no end-of-text decision of its own inside a row, the
  row's length is it;
* GPT-2 left to right with its KV cache (stops at end of text);
* the reference: the held-out documents' own next tokens (one text per prompt).

Each gets judge perplexity (with ``--judge``: a causal LM that is neither generator; the same
folder as a generator is refused), distinct-1/2/3, unigram entropy, 3-gram repetition rate and
mean length in words and tokens, all defined in diffusion/text/metrics.py; the judge-free ones
are computed through the local ``evaluate`` module diffusion/text/text_diversity.  Text after
the first ``</s>`` is dropped on both sides.  Positions per token: the (row, position) pairs
sent through the layers, over the tokens of text written (up to each text's end); GPT-2 with its
cache computes its context once and then one position per token.  Every generator is warmed up
once per kind of pass before the timed settings.  It prints one line per setting and writes into
``--output-dir`` (results/quality): quality.md (the table), quality.json, and quality_vs_steps.png
(steps grid) or quality_vs_time.png (cache grid: judge perplexity against wall time).

    python benchmarks/quality.py --judge J --grid cache                 # the cached-decoding table
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from diffusion.checkpoint import ModelLoadError, check_length, quiet_loading, resolve_model, usable_length  # noqa: E402
from diffusion.cli import parse_args, run_main  # noqa: E402
from diffusion.device import pick_device  # noqa: E402
from diffusion.gaussian.generation import load_gaussian_generator  # noqa: E402
from diffusion.gaussian.sampling import (  # noqa: E402
    DRAWN_CLAMP_TEMPERATURE,
    GaussianSamplingOptions,
    gaussian_prompt,
    lengths_after_prompt,
    sample,
)
from diffusion.masked.cache import resolve_cache  # noqa: E402
from diffusion.masked.generation import load_generator  # noqa: E402
from diffusion.masked.unmasking import DecodeOptions, continuations, decode, prompt_from_ids  # noqa: E402
from diffusion.paths import TRAINED_MODEL  # noqa: E402
from diffusion.text.causal import causal_context, generate_causal, load_causal  # noqa: E402
from diffusion.text.data import held_out_documents  # noqa: E402
from diffusion.text.metrics import check_judge, judge_perplexity  # noqa: E402
from diffusion.text.sampling import SamplingOptions  # noqa: E402

METRIC_MODULE = os.path.join(REPO_ROOT, "diffusion", "text", "text_diversity")


@dataclass
class QualityArguments:
    """The benchmark's own flags (token sampling for every generator: diffusion/text/sampling.py's SamplingOptions)."""

    roberta_checkpoint: str | None = field(
        default=None, metadata={"help": f"Diffusion model. Default: {TRAINED_MODEL} if it exists, else models/masked-base."}
    )
    gpt2_checkpoint: str | None = field(default=None, metadata={"help": "Causal baseline. Default: models/causal-base."})
    gaussian_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Gaussian diffusion model. Default: results-gaussian/final-model if it exists, else "
                  "models/gaussian-base if it exists, else none."},
    )
    no_gaussian: bool = field(default=False, metadata={"help": "Leave the Gaussian rows out."})
    gaussian_ddim_steps: list[int] = field(
        default_factory=lambda: [10, 25, 50, 100, 200], metadata={"help": "DDIM step counts of the Gaussian rows."}
    )
    judge: str | None = field(
        default=None,
        metadata={"help": "Causal LM (folder or hub id) that scores every generator: judge perplexity. It must be "
                  "neither generator. Without it the perplexity column stays empty."},
    )
    num_prompts: int = field(default=20, metadata={"help": "Held-out prompts (data/wordnet/validation.jsonl.gz)."})
    samples_per_prompt: int = field(default=4, metadata={"help": "Samples per prompt and setting (seeds 0, 1, ...)."})
    max_new_tokens: int = field(default=64, metadata={"help": "Tokens each generator writes after the prompt."})
    prompt_tokens: int = field(default=3, metadata={"help": "Tokens of each held-out text used as the prompt."})
    steps: list[int] = field(default_factory=lambda: [8, 16, 32, 64], metadata={"help": "Diffusion step counts."})
    schedules: list[str] = field(
        default_factory=lambda: ["linear", "cosine", "exponential"], metadata={"help": "Diffusion schedules."}
    )
    remasking: list[str] = field(
        default_factory=lambda: ["low-confidence", "random"], metadata={"help": "Diffusion remasking rules."}
    )
    threshold: float | None = field(
        default=0.9,
        metadata={"help": "Also run parallel decoding with this --threshold (at the most steps, linear, low-confidence)."},
    )
    cache: str | None = field(
        default=None,
        metadata={"help": "--cache of every setting of the steps grid (none | prefix | dual). Default: the decoder's "
                  "(dual when decoding in blocks)."},
    )
    grid: str = field(
        default="steps",
        metadata={"help": "steps: --steps x --schedules x --remasking (and --threshold); cache: --caches x "
                  "--thresholds x --block-lengths, one step per position."},
    )
    caches: list[str] = field(default_factory=lambda: ["none", "prefix", "dual"], metadata={"help": "--grid cache: caches."})
    thresholds: list[float] = field(
        default_factory=lambda: [0.9, 0.0], metadata={"help": "--grid cache: thresholds (0: none, one step per position)."}
    )
    block_lengths: list[int] = field(default_factory=lambda: [4, 8, 16], metadata={"help": "--grid cache: block lengths."})
    cache_steps: list[int] = field(
        default_factory=lambda: [0],
        metadata={"help": "--grid cache: total steps, shared among the blocks (0: one step per position)."},
    )
    block_length: int | None = field(
        default=None,
        metadata={"help": "Semi-autoregressive blocks of this many positions for every diffusion setting (LLaDA). "
                  "Default: 8 for a model trained with --eos-padding (else its </s> tail spreads over the text), "
                  "else none; 0 turns blocks off."},
    )
    seed: int = field(default=0, metadata={"help": "Base seed: prompt i, every setting, uses seed + i."})
    output_dir: str = field(default="results/quality", metadata={"help": "quality.md, quality.json, quality_vs_steps.png."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an earlier quality.json in --output-dir."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... Default: cuda if available."})

    def __post_init__(self) -> None:
        for name in ("num_prompts", "samples_per_prompt", "max_new_tokens", "prompt_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.steps or not self.schedules or not self.remasking:
            raise ValueError("--steps, --schedules and --remasking each need at least one value")
        # Every setting of the plan goes through the decoder's own checks (DecodeOptions), the only ones.
        for steps in self.steps:
            for schedule in self.schedules:
                for remasking in self.remasking:
                    DecodeOptions(steps=steps, schedule=schedule, remasking=remasking, threshold=0,
                                  block_length=self.block_length)
        if self.threshold is not None:
            DecodeOptions(threshold=self.threshold)
        if self.no_gaussian and self.gaussian_checkpoint:
            raise ValueError("--no-gaussian and --gaussian-checkpoint contradict each other: give one")
        if any(n < 1 for n in self.gaussian_ddim_steps):
            raise ValueError(f"--gaussian-ddim-steps must be at least 1, got {self.gaussian_ddim_steps}")
        DecodeOptions(cache=self.cache, block_length=self.block_length)
        if self.grid not in ("steps", "cache"):
            raise ValueError(f"--grid must be steps or cache, got {self.grid!r}")
        if self.grid == "cache":
            if not self.caches or not self.thresholds or not self.block_lengths:
                raise ValueError("--caches, --thresholds and --block-lengths each need at least one value")
            for cache in self.caches:
                for threshold in self.thresholds:
                    for block_length in self.block_lengths:
                        if block_length < 1:
                            raise ValueError(f"--block-lengths must be at least 1, got {block_length}")
                        DecodeOptions(cache=cache, threshold=threshold, block_length=block_length)
            if any(steps < 0 for steps in self.cache_steps) or not self.cache_steps:
                raise ValueError(f"--cache-steps must be 0 (one step per position) or more, got {self.cache_steps}")


def diffusion_settings(args: QualityArguments, sampling: SamplingOptions) -> list[tuple[str, dict, DecodeOptions]]:
    """(name, fields for the row, options) of every diffusion setting of the grid."""
    if args.grid == "cache":
        return cache_settings(args, sampling)
    steps = sorted({min(s, args.max_new_tokens) for s in args.steps})
    common = dict(**vars(sampling), block_length=args.block_length, cache=args.cache)
    blocks = f", blocks of {args.block_length}" if args.block_length else ""
    blocks += f", {args.cache} cache" if args.cache not in (None, "none") else ""
    out = []
    for s in steps:
        for schedule in args.schedules:
            for remasking in args.remasking:
                out.append((f"{s} steps, {schedule}, {remasking}{blocks}",
                            dict(steps=s, schedule=schedule, remasking=remasking, threshold=None),
                            DecodeOptions(steps=s, schedule=schedule, remasking=remasking, threshold=0, **common)))
    if args.threshold is not None:
        s = max(steps)
        out.append((f"threshold {args.threshold} (<= {s} steps), linear, low-confidence{blocks}",
                    dict(steps=s, schedule="linear", remasking="low-confidence", threshold=args.threshold),
                    DecodeOptions(steps=s, threshold=args.threshold, **common)))
    return out


def cache_settings(args: QualityArguments, sampling: SamplingOptions) -> list[tuple[str, dict, DecodeOptions]]:
    """Cached block decoding: every block length x --cache-steps x threshold x cache."""
    out = []
    for block_length in args.block_lengths:
        for steps in args.cache_steps:
            for threshold in args.thresholds:
                for cache in args.caches:
                    rule = f"{steps} steps" if steps else "one step per position"
                    rule += f", threshold {threshold}" if threshold else ""
                    out.append((f"blocks of {block_length}, {rule}, {cache} cache",
                                dict(steps=steps or None, schedule="linear", remasking="low-confidence",
                                     threshold=threshold or None, block_length=block_length, cache=cache),
                                DecodeOptions(steps=steps or None, threshold=threshold, block_length=block_length,
                                              cache=cache, **vars(sampling))))
    return out


def gaussian_settings(args: QualityArguments, num_steps: int) -> list[tuple[str, dict, GaussianSamplingOptions]]:
    """DDPM and DDIM at every --gaussian-ddim-steps (self-conditioned, unclamped), plus the clamp and
    self-conditioning variants at DDPM and DDIM 50 (or the nearest DDIM count given)."""
    plain = [GaussianSamplingOptions(sampler="ddpm")]
    plain += [GaussianSamplingOptions(ddim_steps=n) for n in sorted(set(args.gaussian_ddim_steps)) if n <= num_steps]
    anchor = min(args.gaussian_ddim_steps, key=lambda n: abs(n - 50))
    variants = []
    for base in (GaussianSamplingOptions(sampler="ddpm"), GaussianSamplingOptions(ddim_steps=min(anchor, num_steps))):
        for clamp, no_sc in ((True, False), (False, True), (True, True)):
            variants.append(dataclasses.replace(base, clamp=clamp, no_self_conditioning=no_sc))
    # and the drawn clamp at DDIM 50: each estimate snapped to a token drawn at the temperature below
    variants.append(GaussianSamplingOptions(ddim_steps=min(anchor, num_steps), clamp_temperature=DRAWN_CLAMP_TEMPERATURE))
    out = []
    for options in plain + variants:
        passes = num_steps if options.sampler == "ddpm" else options.ddim_steps
        drawn = options.clamp_temperature is not None
        out.append((f"{options.sampler.upper()} {passes} steps"
                    + (", clamped" if options.clamp else "")
                    + (f", drawn clamp (T {options.clamp_temperature:g})" if drawn else "")
                    + (", no self-cond." if options.no_self_conditioning else ""),
                    dict(sampler=options.sampler, steps=passes, clamp=options.clamp or drawn,
                         clamp_temperature=options.clamp_temperature,
                         self_conditioning=not options.no_self_conditioning), options))
    return out


def score(metric, judge, prompts: list[str], texts: list[str], lengths: list[int]) -> dict:
    """The quality numbers of one setting (texts pooled over all prompts and samples)."""
    out = metric.compute(predictions=texts)
    out["length_tokens"] = sum(lengths) / len(lengths) if lengths else 0.0
    out["judge_perplexity"] = judge_perplexity(judge[0], judge[1], prompts, texts) if judge else None
    return out


def run(argv: list[str]) -> int:
    args, sampling = parse_args((QualityArguments, SamplingOptions), argv)
    masked_name, masked_why = resolve_model(args.roberta_checkpoint, "--roberta-checkpoint", "masked")
    causal_name, causal_why = resolve_model(args.gpt2_checkpoint, "--gpt2-checkpoint", "causal", " (or gpt2, with internet)")
    gaussian_name = gaussian_why = None
    if not args.no_gaussian and args.grid == "steps":  # the cache grid is about masked decoding only
        try:
            gaussian_name, gaussian_why = resolve_model(args.gaussian_checkpoint, "--gaussian-checkpoint", "gaussian")
        except ModelLoadError:
            if args.gaussian_checkpoint:
                raise
    if args.judge:
        check_judge(args.judge, {"diffusion": masked_name, "GPT-2": causal_name,
                                 **({"Gaussian": gaussian_name} if gaussian_name else {})})
    plot_name = "quality_vs_steps.png" if args.grid == "steps" else "quality_vs_time.png"
    md_path, json_path, png_path = (os.path.join(args.output_dir, name) for name in ("quality.md", "quality.json", plot_name))
    if os.path.exists(json_path) and not args.overwrite:
        raise ValueError(f"{json_path} exists: pass --overwrite to replace it, or another --output-dir")

    device = pick_device(args.device)
    quiet_loading()
    generator = load_generator(masked_name, block_length=args.block_length, flag="--roberta-checkpoint")  # as generate.py
    args.block_length = generator.block_length
    model, tokenizer = generator.model.eval().to(device), generator.tokenizer
    if args.grid == "steps":
        args.cache = resolve_cache(args.cache, args.block_length, model)  # checked before the long run
    else:
        for cache in args.caches:
            resolve_cache(cache, max(args.block_lengths), model)
    gpt2, gpt2_tokenizer = load_causal(causal_name)
    gpt2.eval().to(device)
    gaussian = load_gaussian_generator(gaussian_name, "--gaussian-checkpoint") if gaussian_name else None
    gaussian_row = None  # the model's positions: a row holds at most prompt + new tokens + <s> + </s> of them
    if gaussian is not None:
        gaussian.model.eval().to(device)
        gaussian_row = usable_length(gaussian.model) or 10**9
        if gaussian_row < args.prompt_tokens + 3:
            raise ValueError(f"{gaussian_name!r} has {gaussian_row} positions, too few for a {args.prompt_tokens}-token "
                             f"prompt and one new token")
    judge = None
    if args.judge:
        judge_model, judge_tokenizer = load_causal(args.judge, "--judge")
        judge = (judge_model.eval().to(device), judge_tokenizer)
    need = args.prompt_tokens + args.max_new_tokens + 2
    try:
        check_length(need, model, masked_name)
    except ValueError:
        raise ValueError(f"{masked_name!r} has {usable_length(model)} positions: {args.prompt_tokens} prompt + "
                         f"{args.max_new_tokens} new tokens + <s> + </s> need {need}; lower --max-new-tokens") from None
    limit = usable_length(gpt2)
    if limit and args.prompt_tokens + args.max_new_tokens + 1 > limit:
        raise ValueError(f"{causal_name!r} has {limit} positions, too few for {args.prompt_tokens} prompt + "
                         f"{args.max_new_tokens} new tokens; lower --max-new-tokens")

    import evaluate  # slow to import: only once the inputs are known to be good

    metric = evaluate.load(METRIC_MODULE)
    docs = held_out_documents(tokenizer, args.num_prompts, args.prompt_tokens)
    prompt_ids = [d[:args.prompt_tokens] for d in docs]
    prompt_texts = [tokenizer.decode(ids) for ids in prompt_ids]
    # A Gaussian model with a vocabulary of its own (the bundled base's is word-level, data/word-tokenizer)
    # is given the same prompt text, encoded by its tokenizer, and judged after that text, as GPT-2 is.
    own_tokenizer = gaussian is not None and gaussian.tokenizer.get_vocab() != tokenizer.get_vocab()
    gaussian_prompt_ids = ([gaussian.tokenizer(text, add_special_tokens=False)["input_ids"] for text in prompt_texts]
                           if own_tokenizer else prompt_ids)
    n, samples = len(docs), args.samples_per_prompt
    print(f"diffusion model: {masked_name} ({masked_why})")
    print(f"autoregressive model: {causal_name} ({causal_why})")
    print(f"Gaussian model: {gaussian_name} ({gaussian_why})" if gaussian_name else
          "Gaussian model: none (--no-gaussian, or no results-gaussian/final-model or models/gaussian-base)")
    print(f"judge: {args.judge or 'none (no judge perplexity; pass --judge)'}")
    print(f"{n} held-out prompts x {samples} samples x {args.max_new_tokens} new tokens, {sampling.sampling} sampling"
          + (f", diffusion in blocks of {args.block_length}" if args.block_length and args.grid == "steps" else ""))

    settings = diffusion_settings(args, sampling)
    # Warm-up: each kind of pass once (full, block, suffix; GPT-2's), so that no setting pays for
    # first-call allocation.
    warm = prompt_from_ids(tokenizer, prompt_ids[0], args.max_new_tokens, samples)
    for cache in sorted({options.cache or "none" for _, _, options in settings} | {"none"}):
        blocks = args.block_length if cache == "none" else (args.block_length or min(8, args.max_new_tokens))
        decode(model, tokenizer, warm, DecodeOptions(steps=4, block_length=blocks, cache=cache))
    generate_causal(gpt2, gpt2_tokenizer, causal_context(gpt2_tokenizer, prompt_texts[0]), 4, num_samples=samples)
    if gaussian is not None:
        sample(gaussian.model, gaussian.process, gaussian.tokenizer,
               gaussian_prompt(gaussian.tokenizer, [len(gaussian_prompt_ids[0]) + 10] * samples,
                               prefix_ids=gaussian_prompt_ids[0]),
               GaussianSamplingOptions(ddim_steps=min(4, gaussian.process.num_steps)), record_trace=False)

    plan = [("reference", "held-out text", {}, None)]
    plan += [("diffusion", name, fields, options) for name, fields, options in settings]
    if gaussian is not None:
        plan += [("gaussian", name, fields, options) for name, fields, options in
                 gaussian_settings(args, gaussian.process.num_steps)]
    plan.append(("gpt2", "left to right, KV cache", {}, None))
    rows = []
    for index, (generator, name, fields, options) in enumerate(plan, 1):
        contexts, texts, lengths, passes, tokens, computed = [], [], [], 0, 0, 0
        started = time.perf_counter()
        for i in range(n):
            seed = args.seed + i
            if generator == "reference":
                ref = docs[i][args.prompt_tokens:args.prompt_tokens + args.max_new_tokens]
                contexts.append(prompt_texts[i])
                texts.append(tokenizer.decode(ref))
                lengths.append(len(ref))
            elif generator == "diffusion":
                prompt = prompt_from_ids(tokenizer, prompt_ids[i], args.max_new_tokens, samples)
                opts = dataclasses.replace(options, seed=seed)
                result = decode(model, tokenizer, prompt, opts)
                lefts, conts, lens = continuations(tokenizer, prompt, result.ids)
                contexts += lefts
                texts += conts
                lengths += lens
                passes += result.forward_passes
                tokens += samples * args.max_new_tokens
                computed += result.positions_computed
                fields = {**fields, "cache": result.cache, "block_length": opts.block_length}
            elif generator == "gaussian":
                given = len(gaussian_prompt_ids[i])  # args.prompt_tokens, unless it has a tokenizer of its own
                rows_lengths = lengths_after_prompt(gaussian.config, samples, given,
                                                    min(gaussian_row, given + args.max_new_tokens + 2), seed)
                prompt = gaussian_prompt(gaussian.tokenizer, rows_lengths, prefix_ids=gaussian_prompt_ids[i])
                result = sample(gaussian.model, gaussian.process, gaussian.tokenizer, prompt, options, seed=seed,
                                record_trace=False)
                lefts, conts, lens = continuations(gaussian.tokenizer, prompt, result.ids)
                contexts += [prompt_texts[i]] * samples if own_tokenizer else lefts
                texts += conts
                lengths += lens
                passes += result.forward_passes
                tokens += int(prompt.generate.sum())
                computed += result.forward_passes * int(prompt.attention_mask.sum())
            else:
                causal = generate_causal(gpt2, gpt2_tokenizer, causal_context(gpt2_tokenizer, prompt_texts[i]),
                                         args.max_new_tokens, sampling.sampling, sampling.k, sampling.p,
                                         sampling.temperature, seed,
                                         num_samples=samples)
                contexts += [prompt_texts[i]] * samples
                texts += causal.texts
                lengths += causal.lengths
                passes += causal.forward_passes
                tokens += samples * causal.forward_passes
                # its context once, then one position per row and pass (the KV cache holds the rest)
                context_length = len(causal_context(gpt2_tokenizer, prompt_texts[i]))
                computed += samples * (context_length + causal.forward_passes - 1)
        seconds = time.perf_counter() - started
        quality = score(metric, judge, contexts, texts, lengths)
        row = {"generator": generator, "setting": name, **fields,
               "forward_passes_per_prompt": passes / n if generator != "reference" else None,
               "wall_s": round(seconds, 3) if generator != "reference" else None,
               "tokens_per_s": round(tokens / seconds, 1) if tokens and seconds > 0 else None,
               "positions_per_token": round(computed / max(1, sum(lengths)), 1) if generator != "reference" else None,
               **{k: round(v, 4) if isinstance(v, float) else v for k, v in quality.items()},
               "example": (contexts[0] + texts[0]).strip() if texts else ""}
        rows.append(row)
        ppl = f"judge ppl {row['judge_perplexity']:.1f}, " if row["judge_perplexity"] is not None else ""
        print(f"[{index}/{len(plan)}] {generator} {name}: {ppl}distinct-2 {row['distinct_2']:.3f}, "
              f"repetition {row['repetition_rate']:.3f}, {row['length_words']:.1f} words"
              + (f", {seconds:.1f} s" if generator != "reference" else ""), flush=True)

    meta = {"diffusion_model": masked_name, "causal_model": causal_name, "gaussian_model": gaussian_name,
            "judge": args.judge, "num_prompts": n,
            "samples_per_prompt": samples, "max_new_tokens": args.max_new_tokens, "prompt_tokens": args.prompt_tokens,
            "sampling": {"method": sampling.sampling, "k": sampling.k, "p": sampling.p, "temperature": sampling.temperature},
            "seed": args.seed, "device": str(device),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"}
    try:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(json_path, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
        with open(md_path, "w") as f:
            f.write(markdown(meta, rows))
        plotted = plot_quality_vs_steps(rows, png_path) if args.grid == "steps" else plot_quality_vs_time(rows, png_path)
    except OSError as err:
        raise ValueError(f"cannot write into --output-dir {args.output_dir!r}: {err.strerror or err}") from None
    print(f"\nwrote {md_path}, {json_path}" + (f", {png_path}" if plotted else
                                                 " (no plot: the judge perplexity it draws needs --judge)"))
    return 0


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(meta: dict, rows: list[dict]) -> str:
    s = meta["sampling"]
    sampling = {"topk": f"top-k {s['k']}", "nucleus": f"nucleus p={s['p']}"}.get(s["method"], s["method"])
    lines = [
        "# Generation quality: masked and Gaussian diffusion vs autoregressive",
        "",
        f"Masked diffusion model `{meta['diffusion_model']}`, Gaussian diffusion model "
        f"`{meta.get('gaussian_model') or 'none'}`, causal baseline `{meta['causal_model']}`, "
        f"judge `{meta['judge'] or 'none'}`.  {meta['num_prompts']} held-out prompts of {meta['prompt_tokens']} tokens "
        f"x {meta['samples_per_prompt']} samples x {meta['max_new_tokens']} new tokens, {sampling}, "
        f"T={s['temperature']}, seed {meta['seed']} + prompt index; {meta['machine']} ({meta['device']}).",
        "",
        "| generator | setting | passes / prompt | positions / token | wall s | tokens/s | judge ppl | distinct-1 "
        "| distinct-2 | distinct-3 | entropy (nats) | repetition | words | tokens |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['generator']} | {r['setting']} | {_fmt(r['forward_passes_per_prompt'], 1)} "
                     f"| {_fmt(r.get('positions_per_token'), 1)} | {_fmt(r['wall_s'], 2)} "
                     f"| {_fmt(r['tokens_per_s'], 0)} | {_fmt(r['judge_perplexity'], 1)} | {_fmt(r['distinct_1'])} "
                     f"| {_fmt(r['distinct_2'])} | {_fmt(r['distinct_3'])} | {_fmt(r['unigram_entropy'], 2)} "
                     f"| {_fmt(r['repetition_rate'])} | {_fmt(r['length_words'], 1)} | {_fmt(r['length_tokens'], 1)} |")
    lines += [
        "",
        "Definitions (diffusion/text/metrics.py): words are whitespace-split; distinct-n = unique / total word n-grams "
        "pooled over all samples of a setting; entropy of the pooled word distribution in nats; repetition = share of "
        "a sample's word 3-grams already seen earlier in it, averaged over samples; judge perplexity = exp(mean NLL per "
        "judge token of the continuation given the prompt), tokens pooled; length = mean words / generator tokens "
        "before the first end of text; positions / token = (row, position) pairs sent through the layers over the "
        "tokens of text written (GPT-2: its context once, then one per token).  The reference row has one text per "
        "prompt, so its distinct-n pools fewer n-grams than the generators' rows and is not directly comparable; its "
        "judge perplexity, repetition and length are.  tokens/s counts every generated position (GPT-2: until all "
        "samples of a prompt ended).",
        "",
        "First sample of each setting:",
        "",
    ]
    lines += [f"- **{r['generator']} {r['setting']}**: {r['example'][:160]}" for r in rows]
    return "\n".join(lines) + "\n"


def plot_quality_vs_steps(rows: list[dict], path: str) -> bool:
    """Judge perplexity (if any), distinct-2, repetition and entropy against diffusion steps; GPT-2 and the
    reference as horizontal lines, the threshold setting at its mean number of forward passes."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    diffusion = [r for r in rows if r["generator"] == "diffusion"]
    if not diffusion:
        return False
    metrics = [("judge_perplexity", "judge perplexity")] if diffusion[0]["judge_perplexity"] is not None else []
    metrics += [("distinct_2", "distinct-2"), ("repetition_rate", "3-gram repetition rate"),
                ("unigram_entropy", "unigram entropy (nats)")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4), dpi=100, squeeze=False)
    curves: dict[str, list[dict]] = {}
    for r in diffusion:
        if r["threshold"] is None:
            curves.setdefault(f"{r['schedule']}, {r['remasking']}", []).append(r)
    others = {r["generator"]: r for r in rows if r["generator"] in ("gpt2", "reference")}
    gaussian_ddim = sorted((r for r in rows if r["generator"] == "gaussian" and r["sampler"] == "ddim"
                            and not r["clamp"] and r["self_conditioning"]), key=lambda r: r["steps"])
    gaussian_ddpm = [r for r in rows if r["generator"] == "gaussian" and r["sampler"] == "ddpm"
                     and not r["clamp"] and r["self_conditioning"]]
    for ax, (key, label) in zip(axes[0], metrics, strict=True):
        for name, points in curves.items():
            points = sorted(points, key=lambda r: r["steps"])
            ax.plot([r["steps"] for r in points], [r[key] for r in points], marker="o", label=f"masked, {name}")
        for r in diffusion:
            if r["threshold"] is not None:
                ax.scatter([r["forward_passes_per_prompt"]], [r[key]], marker="*", s=140, color="black",
                           label=f"masked, threshold {r['threshold']}", zorder=5)
        if gaussian_ddim:
            ax.plot([r["steps"] for r in gaussian_ddim], [r[key] for r in gaussian_ddim], marker="s", color="purple",
                    label="Gaussian, DDIM")
        for r in gaussian_ddpm:
            ax.scatter([r["steps"]], [r[key]], marker="D", s=60, color="purple", label="Gaussian, DDPM", zorder=5)
        for generator, style, name in (("gpt2", "--", "GPT-2"), ("reference", ":", "held-out text")):
            if generator in others and others[generator][key] is not None:
                ax.axhline(others[generator][key], linestyle=style, color="gray", label=name)
        ax.set_xscale("log", base=2)
        if key == "judge_perplexity":
            values = [v for line in ax.get_lines() for v in line.get_ydata()]
            values += [y for c in ax.collections for _, y in c.get_offsets()]
            if values and min(values) > 0 and max(values) / min(values) > 20:
                ax.set_yscale("log")  # the Gaussian rows lie 10-50x above the others: linear would flatten those
                label += " (log scale)"
        ticks = sorted({r["steps"] for r in diffusion} | {r["steps"] for r in gaussian_ddim + gaussian_ddpm})
        shown: list[int] = []
        for t in ticks:  # a label too close to the one before would overlap it (50 and 64)
            if not shown or t / shown[-1] >= 1.4:
                shown.append(t)
        ax.set_xticks(shown, labels=[str(t) for t in shown])
        ax.set_xticks([], minor=True)
        ax.set_xlabel("diffusion steps (forward passes)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_quality_vs_time(rows: list[dict], path: str) -> bool:
    """The cache grid: judge perplexity against wall time, one point per setting and GPT-2's star.

    One panel per --cache-steps value; marker: the cache; colour: the block length; filled: with
    --threshold, hollow: without.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    diffusion = [r for r in rows if r["generator"] == "diffusion"]
    if not diffusion or diffusion[0]["judge_perplexity"] is None:
        return False
    markers = {"none": "o", "prefix": "s", "dual": "^"}
    lengths = sorted({r["block_length"] for r in diffusion})
    colours = dict(zip(lengths, plt.get_cmap("viridis")(torch.linspace(0.1, 0.85, len(lengths)).tolist()), strict=True))
    panels = sorted({r["steps"] or 0 for r in diffusion})
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 2.2, 5.2), dpi=100, squeeze=False,
                             sharex=True, sharey=True)
    for ax, steps in zip(axes[0], panels, strict=True):
        for r in diffusion:
            if (r["steps"] or 0) != steps:
                continue
            colour = colours[r["block_length"]]
            ax.scatter([r["wall_s"]], [r["judge_perplexity"]], marker=markers.get(r["cache"], "x"), s=70, zorder=3,
                       color=colour if r["threshold"] else "white", edgecolors=colour, linewidths=1.6)
        for r in rows:
            if r["generator"] == "gpt2":
                ax.scatter([r["wall_s"]], [r["judge_perplexity"]], marker="*", s=260, color="black", zorder=4)
            if r["generator"] == "reference":
                ax.axhline(r["judge_perplexity"], linestyle=":", color="gray")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers (5, 10, 20...) rather than powers of ten
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("wall time for all prompts (s, log)")
        ax.set_title("one step per position" if not steps else f"{steps} steps in all")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("judge perplexity (log, lower is better)")
    thresholds = sorted({r["threshold"] for r in diffusion if r["threshold"]})
    handles = [Line2D([], [], marker=m, linestyle="", color="gray", label=f"{c} cache") for c, m in markers.items()]
    handles += [Line2D([], [], marker="o", linestyle="", color=colours[b], label=f"blocks of {b}") for b in lengths]
    handles += [Line2D([], [], marker="o", linestyle="", color="gray",
                       label="filled: --threshold " + ", ".join(str(t) for t in thresholds)),
                Line2D([], [], marker="o", linestyle="", markerfacecolor="white", color="gray", label="hollow: no threshold"),
                Line2D([], [], marker="*", linestyle="", color="black", markersize=14, label="GPT-2, KV cache"),
                Line2D([], [], linestyle=":", color="gray", label="held-out text")]
    axes[0][-1].legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("Cached block decoding: judge perplexity against wall time")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
