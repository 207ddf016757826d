"""Quality of generated text: the diffusion model at many settings against its GPT-2 baseline, scored by a judge.

    python benchmarks/quality.py --judge path/to/a-third-causal-lm          # the default protocol
    python benchmarks/quality.py --num-prompts 4 --samples-per-prompt 2 --max-new-tokens 16 --steps 4 8  # small
    python benchmarks/quality.py --roberta-checkpoint results/final-model --gpt2-checkpoint results-gpt2/final-model

The protocol.  Prompts: the first ``--prompt-tokens`` (3) tokens of the first ``--num-prompts``
held-out documents (data/wordnet/validation.jsonl.gz) that are that long, the rule of
benchmarks/generation_speed.py.  Every generator writes ``--max-new-tokens`` (64) tokens after
each prompt, ``--samples-per-prompt`` samples at once with seed ``--seed + prompt index``, the
same for every setting, with the same ``--sampling`` (nucleus p=0.9 by default).  Settings:

* diffusion at each of ``--steps`` (8 16 32 64) x ``--schedules`` (linear cosine exponential)
  x ``--remasking`` (low-confidence random), and parallel decoding with ``--threshold`` 0.9
  (the most steps, linear, low-confidence);
* GPT-2 left to right with its KV cache (stops at end of text);
* the reference: the held-out documents' own next tokens (one text per prompt).

Each gets judge perplexity (with ``--judge``: a causal LM that is neither generator; the same
folder as a generator is refused), distinct-1/2/3, unigram entropy, 3-gram repetition rate and
mean length in words and tokens, all defined in diffusion/text_metrics.py; the judge-free ones
are computed through the local ``evaluate`` module diffusion/metrics/text_diversity.  Text after
the first ``</s>`` is dropped on both sides.  It prints one line per setting and writes into
``--output-dir`` (results/quality): quality.md (the table), quality.json, quality_vs_steps.png.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

import compare_models  # noqa: E402  (model resolution, shared with the side-by-side script; quiet logging)
from config import QualityArguments, parse_quality_args  # noqa: E402
from diffusion.comparison import causal_context, check_judge, continuations, generate_causal, position_limit  # noqa: E402
from diffusion.modeling import ModelLoadError, load_diffusion_config, load_model, load_tokenizer, pick_device  # noqa: E402
from diffusion.text_metrics import judge_perplexity  # noqa: E402
from diffusion.unmasking import DecodeOptions, Prompt, decode, resolve_block_length  # noqa: E402

METRIC_MODULE = os.path.join(REPO_ROOT, "diffusion", "metrics", "text_diversity")
VALIDATION = os.path.join(REPO_ROOT, "data", "wordnet", "validation.jsonl.gz")


def held_out_documents(tokenizer, n: int, prompt_tokens: int) -> list[list[int]]:
    """Token ids (no specials) of the first ``n`` held-out documents with at least ``prompt_tokens`` tokens."""
    docs = []
    with gzip.open(VALIDATION, "rt") as f:
        for line in f:
            ids = tokenizer(json.loads(line)["text"], add_special_tokens=False)["input_ids"]
            if len(ids) >= prompt_tokens:
                docs.append(ids)
            if len(docs) == n:
                break
    return docs


def diffusion_prompt(tokenizer, prompt_ids: list[int], n_new: int, samples: int) -> Prompt:
    """``<s> prompt <mask> x n_new </s>``, ``samples`` rows."""
    row = [tokenizer.bos_token_id] + prompt_ids + [tokenizer.mask_token_id] * n_new + [tokenizer.eos_token_id]
    input_ids = torch.tensor([row] * samples)
    return Prompt(input_ids=input_ids, generate=input_ids == tokenizer.mask_token_id)


def diffusion_settings(args: QualityArguments) -> list[tuple[str, dict, DecodeOptions]]:
    steps = sorted({min(s, args.max_new_tokens) for s in args.steps})
    common = dict(sampling=args.sampling, k=args.k, p=args.p, temperature=args.temperature,
                  block_length=args.block_length)
    blocks = f", blocks of {args.block_length}" if args.block_length else ""
    out = []
    for s in steps:
        for schedule in args.schedules:
            for remasking in args.remasking:
                out.append((f"{s} steps, {schedule}, {remasking}{blocks}",
                            dict(steps=s, schedule=schedule, remasking=remasking, threshold=None),
                            DecodeOptions(steps=s, schedule=schedule, remasking=remasking, **common)))
    if args.threshold is not None:
        s = max(steps)
        out.append((f"threshold {args.threshold} (<= {s} steps), linear, low-confidence{blocks}",
                    dict(steps=s, schedule="linear", remasking="low-confidence", threshold=args.threshold),
                    DecodeOptions(steps=s, threshold=args.threshold, **common)))
    return out


def score(metric, judge, prompts: list[str], texts: list[str], lengths: list[int]) -> dict:
    """The quality numbers of one setting (texts pooled over all prompts and samples)."""
    out = metric.compute(predictions=texts)
    out["length_tokens"] = sum(lengths) / len(lengths) if lengths else 0.0
    out["judge_perplexity"] = judge_perplexity(judge[0], judge[1], prompts, texts) if judge else None
    return out


def run(argv: list[str]) -> int:
    args = parse_quality_args(argv)
    (masked_name, masked_why), (causal_name, causal_why) = compare_models.resolve_models(args)
    if args.judge:
        check_judge(args.judge, {"diffusion": masked_name, "GPT-2": causal_name})
    md_path, json_path, png_path = (os.path.join(args.output_dir, name)
                                    for name in ("quality.md", "quality.json", "quality_vs_steps.png"))
    if os.path.exists(json_path) and not args.overwrite:
        raise ValueError(f"{json_path} exists: pass --overwrite to replace it, or another --output-dir")

    device = pick_device(args.device)
    model = load_model("masked", masked_name).eval().to(device)
    args.block_length = resolve_block_length(args.block_length, load_diffusion_config(masked_name))  # as generate.py
    tokenizer = load_tokenizer(masked_name)
    if tokenizer.mask_token_id is None:
        raise ModelLoadError(f"the tokenizer of {masked_name!r} has no mask token")
    gpt2, gpt2_tokenizer = compare_models.load_causal(causal_name)
    gpt2.eval().to(device)
    judge = None
    if args.judge:
        judge_model, judge_tokenizer = compare_models.load_causal(args.judge, "--judge")
        judge = (judge_model.eval().to(device), judge_tokenizer)
    positions = model.config.max_position_embeddings - (2 if model.config.model_type.startswith("roberta") else 0)
    need = args.prompt_tokens + args.max_new_tokens + 2
    if need > positions:
        raise ValueError(f"{masked_name!r} has {positions} positions: {args.prompt_tokens} prompt + {args.max_new_tokens} "
                         f"new tokens + <s> + </s> need {need}; lower --max-new-tokens")
    limit = position_limit(gpt2)
    if limit and args.prompt_tokens + args.max_new_tokens + 1 > limit:
        raise ValueError(f"{causal_name!r} has {limit} positions, too few for {args.prompt_tokens} prompt + "
                         f"{args.max_new_tokens} new tokens; lower --max-new-tokens")

    import evaluate  # slow to import: only once the inputs are known to be good

    metric = evaluate.load(METRIC_MODULE)
    docs = held_out_documents(tokenizer, args.num_prompts, args.prompt_tokens)
    prompt_ids = [d[:args.prompt_tokens] for d in docs]
    prompt_texts = [tokenizer.decode(ids) for ids in prompt_ids]
    n, samples = len(docs), args.samples_per_prompt
    print(f"diffusion model: {masked_name} ({masked_why})")
    print(f"autoregressive model: {causal_name} ({causal_why})")
    print(f"judge: {args.judge or 'none (no judge perplexity; pass --judge)'}")
    print(f"{n} held-out prompts x {samples} samples x {args.max_new_tokens} new tokens, {args.sampling} sampling"
          + (f", diffusion in blocks of {args.block_length}" if args.block_length else ""))

    # One warm-up call each, so the first setting does not pay for first-call allocation.
    decode(model, tokenizer, diffusion_prompt(tokenizer, prompt_ids[0], args.max_new_tokens, 1), DecodeOptions(steps=1))
    generate_causal(gpt2, gpt2_tokenizer, causal_context(gpt2_tokenizer, prompt_texts[0]), 1)

    plan = [("reference", "held-out text", {}, None)]
    plan += [("diffusion", name, fields, options) for name, fields, options in diffusion_settings(args)]
    plan.append(("gpt2", "left to right, KV cache", {}, None))
    rows = []
    for index, (generator, name, fields, options) in enumerate(plan, 1):
        contexts, texts, lengths, passes, tokens = [], [], [], 0, 0
        started = time.perf_counter()
        for i in range(n):
            seed = args.seed + i
            if generator == "reference":
                ref = docs[i][args.prompt_tokens:args.prompt_tokens + args.max_new_tokens]
                contexts.append(prompt_texts[i])
                texts.append(tokenizer.decode(ref))
                lengths.append(len(ref))
            elif generator == "diffusion":
                prompt = diffusion_prompt(tokenizer, prompt_ids[i], args.max_new_tokens, samples)
                opts = DecodeOptions(**{**vars(options), "seed": seed})
                result = decode(model, tokenizer, prompt, opts)
                lefts, conts, lens = continuations(tokenizer, prompt, result.ids)
                contexts += lefts
                texts += conts
                lengths += lens
                passes += result.forward_passes
                tokens += samples * args.max_new_tokens
            else:
                causal = generate_causal(gpt2, gpt2_tokenizer, causal_context(gpt2_tokenizer, prompt_texts[i]),
                                         args.max_new_tokens, args.sampling, args.k, args.p, args.temperature, seed,
                                         num_samples=samples)
                contexts += [prompt_texts[i]] * samples
                texts += causal.texts
                lengths += causal.lengths
                passes += causal.forward_passes
                tokens += samples * causal.forward_passes
        seconds = time.perf_counter() - started
        quality = score(metric, judge, contexts, texts, lengths)
        row = {"generator": generator, "setting": name, **fields,
               "forward_passes_per_prompt": passes / n if generator != "reference" else None,
               "wall_s": round(seconds, 3) if generator != "reference" else None,
               "tokens_per_s": round(tokens / seconds, 1) if tokens and seconds > 0 else None,
               **{k: round(v, 4) if isinstance(v, float) else v for k, v in quality.items()},
               "example": (contexts[0] + texts[0]).strip() if texts else ""}
        rows.append(row)
        ppl = f"judge ppl {row['judge_perplexity']:.1f}, " if row["judge_perplexity"] is not None else ""
        print(f"[{index}/{len(plan)}] {generator} {name}: {ppl}distinct-2 {row['distinct_2']:.3f}, "
              f"repetition {row['repetition_rate']:.3f}, {row['length_words']:.1f} words"
              + (f", {seconds:.1f} s" if generator != "reference" else ""), flush=True)

    meta = {"diffusion_model": masked_name, "causal_model": causal_name, "judge": args.judge, "num_prompts": n,
            "samples_per_prompt": samples, "max_new_tokens": args.max_new_tokens, "prompt_tokens": args.prompt_tokens,
            "sampling": {"method": args.sampling, "k": args.k, "p": args.p, "temperature": args.temperature},
            "seed": args.seed, "device": str(device),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"}
    try:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(json_path, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
        with open(md_path, "w") as f:
            f.write(markdown(meta, rows))
        plotted = plot_quality_vs_steps(rows, png_path)
    except OSError as err:
        raise ValueError(f"cannot write into --output-dir {args.output_dir!r}: {err.strerror or err}") from None
    print(f"\nwrote {md_path}, {json_path}" + (f", {png_path}" if plotted else ""))
    return 0


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(meta: dict, rows: list[dict]) -> str:
    s = meta["sampling"]
    sampling = {"topk": f"top-k {s['k']}", "nucleus": f"nucleus p={s['p']}"}.get(s["method"], s["method"])
    lines = [
        "# Generation quality: diffusion vs autoregressive",
        "",
        f"Diffusion model `{meta['diffusion_model']}`, causal baseline `{meta['causal_model']}`, "
        f"judge `{meta['judge'] or 'none'}`.  {meta['num_prompts']} held-out prompts of {meta['prompt_tokens']} tokens "
        f"x {meta['samples_per_prompt']} samples x {meta['max_new_tokens']} new tokens, {sampling}, "
        f"T={s['temperature']}, seed {meta['seed']} + prompt index; {meta['machine']} ({meta['device']}).",
        "",
        "| generator | setting | passes / prompt | wall s | tokens/s | judge ppl | distinct-1 | distinct-2 | distinct-3 "
        "| entropy (nats) | repetition | words | tokens |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['generator']} | {r['setting']} | {_fmt(r['forward_passes_per_prompt'], 1)} | {_fmt(r['wall_s'], 2)} "
                     f"| {_fmt(r['tokens_per_s'], 0)} | {_fmt(r['judge_perplexity'], 1)} | {_fmt(r['distinct_1'])} "
                     f"| {_fmt(r['distinct_2'])} | {_fmt(r['distinct_3'])} | {_fmt(r['unigram_entropy'], 2)} "
                     f"| {_fmt(r['repetition_rate'])} | {_fmt(r['length_words'], 1)} | {_fmt(r['length_tokens'], 1)} |")
    lines += [
        "",
        "Definitions (diffusion/text_metrics.py): words are whitespace-split; distinct-n = unique / total word n-grams "
        "pooled over all samples of a setting; entropy of the pooled word distribution in nats; repetition = share of "
        "a sample's word 3-grams already seen earlier in it, averaged over samples; judge perplexity = exp(mean NLL per "
        "judge token of the continuation given the prompt), tokens pooled; length = mean words / generator tokens "
        "before the first end of text.  The reference row has one text per prompt, so its distinct-n pools fewer "
        "n-grams than the generators' rows and is not directly comparable; its judge perplexity, repetition and "
        "length are.  tokens/s counts every generated position (GPT-2: until all samples of a prompt ended).",
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
    others = {r["generator"]: r for r in rows if r["generator"] != "diffusion"}
    for ax, (key, label) in zip(axes[0], metrics, strict=True):
        for name, points in curves.items():
            points = sorted(points, key=lambda r: r["steps"])
            ax.plot([r["steps"] for r in points], [r[key] for r in points], marker="o", label=name)
        for r in diffusion:
            if r["threshold"] is not None:
                ax.scatter([r["forward_passes_per_prompt"]], [r[key]], marker="*", s=140, color="black",
                           label=f"threshold {r['threshold']}", zorder=5)
        for generator, style in (("gpt2", "--"), ("reference", ":")):
            if generator in others and others[generator][key] is not None:
                ax.axhline(others[generator][key], linestyle=style, color="gray", label=generator)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["steps"] for r in diffusion}), labels=[str(s) for s in sorted({r["steps"] for r in diffusion})])
        ax.set_xlabel("diffusion steps (forward passes)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (ValueError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
