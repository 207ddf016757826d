"""Diffusion vs autoregressive, side by side: the masked model refines every position at once, GPT-2 writes left to right.

    python compare_models.py                                   # the bundled models, 10 steps, greedy
    python compare_models.py --prompt "dog: a" --steps 16 --sampling topk --k 50 --seed 1
    python compare_models.py --roberta-checkpoint results/final-model --gpt2-checkpoint results-gpt2/final-model
    python compare_models.py --infill "dog: a [MASK] [MASK] [MASK] of the genus Canis."   # infilling
    python compare_models.py --judge path/to/another-causal-lm  # adds judge perplexity to the table
    python compare_models.py --gpt2-checkpoint gpt2           # the hub GPT-2 (needs internet)

Both models run on the same prompt with the same sampling flags and seed; GPT-2 generates as many
new tokens as the diffusion model fills (in --infill mode: the rest of the template after the
first [MASK], since it sees only the text before it).  Each side is timed on the wall clock
(after one warm-up call each), and the timeline is cut into --num-frames equal slices: every frame
shows both models as they stood at that moment.  It writes

    comparison.gif            (--output) every frame --frame-ms long, the last held 3x
    comparison_frames/        frame_000.png ... beside the GIF, all the same size
    comparison.json           (--json) the table: wall time, forward passes, tokens/s, quality

and prints the table.  The quality numbers (distinct-n, entropy, repetition, length, judge
perplexity) are defined in diffusion/text_metrics.py; the timing and drawing live in
diffusion/comparison.py.  Every flag: ``python compare_models.py --help``.
"""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import generate  # noqa: E402  (also sets the quiet logging that generate.py uses)
import visualize_generation  # noqa: E402
from config import (  # noqa: E402
    BUNDLED_CAUSAL_MODEL,
    BUNDLED_MASKED_MODEL,
    TRAINED_MODEL,
    CompareArguments,
    parse_compare_args,
)
from diffusion.comparison import (  # noqa: E402
    causal_context,
    causal_panel,
    check_judge,
    continuations,
    diffusion_panel,
    frame_times,
    generate_causal,
    render_comparison,
    resolve_model,
    timed_decode,
)
from diffusion.modeling import ModelLoadError, load_model, load_tokenizer, pick_device  # noqa: E402
from diffusion.rendering import Style, save_gif  # noqa: E402
from diffusion.text_metrics import judge_perplexity, text_quality  # noqa: E402
from diffusion.unmasking import MASK_PLACEHOLDER, DecodeOptions, build_prompt, decode  # noqa: E402

FRAMES_DIR = "comparison_frames"
QUALITY_FIELDS = ("distinct_1", "distinct_2", "distinct_3", "unigram_entropy", "repetition_rate", "length_words",
                  "length_tokens", "judge_perplexity")


def resolve_models(args) -> tuple[tuple[str, str], tuple[str, str]]:
    """((diffusion model, why), (causal model, why)): the flags, else results/final-model / the bundled models."""
    masked = resolve_model(args.roberta_checkpoint, "--roberta-checkpoint",
                           [(TRAINED_MODEL, "your trained model (python train.py --quick-test)"),
                            (BUNDLED_MASKED_MODEL, "the bundled pretrained model")],
                           "train one with python train.py --quick-test, or pass --roberta-checkpoint DIR")
    causal = resolve_model(args.gpt2_checkpoint, "--gpt2-checkpoint",
                           [(BUNDLED_CAUSAL_MODEL, "the bundled causal baseline")],
                           "train one with python train.py --quick-test --objective causal --output_dir results-gpt2, "
                           "or pass --gpt2-checkpoint DIR (or gpt2, with internet)")
    return masked, causal


def load_causal(name: str, role: str = "--gpt2-checkpoint"):
    """A left-to-right LM. AutoModelForCausalLM would also turn a masked RoBERTa into a (useless)
    decoder, so a checkpoint saved as a masked LM is refused rather than silently compared."""
    config_file = os.path.join(name, "config.json")
    if os.path.isfile(config_file):  # checked before loading, which would warn about the missing decoder
        with open(config_file) as f:
            architectures = json.load(f).get("architectures") or []
        if any("MaskedLM" in a for a in architectures):
            raise ModelLoadError(f"{role} {name!r} is a masked LM ({architectures[0]}), not a causal LM")
    model = load_model("causal", name)
    tokenizer = load_tokenizer(name)
    return model, tokenizer


def left_context(args: CompareArguments) -> str | None:
    """What GPT-2 continues: the prompt, or in --infill mode the template's text before the first [MASK]."""
    if args.infill is None:
        return args.prompt
    return args.infill.split(MASK_PLACEHOLDER, 1)[0].rstrip() or None


def row(name: str, checkpoint: str, why: str, seconds: float, passes: int, tokens: int, text: str, quality: dict,
        left_context_only: bool) -> dict:
    return {"model": name, "checkpoint": checkpoint, "why": why, "wall_s": round(seconds, 4), "forward_passes": passes,
            "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in quality.items()},
            "left_context_only": left_context_only, "text": text}


def print_table(rows: list[dict]) -> None:
    print("| model | wall s | forward passes | tokens | tokens/s | judge ppl | distinct-1/2/3 | entropy | repetition | words |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ppl = f"{r['judge_perplexity']:.1f}" if r["judge_perplexity"] is not None else "-"
        note = " (left context only)" if r["left_context_only"] else ""
        print(f"| {r['model']}{note} | {r['wall_s']:.3f} | {r['forward_passes']} | {r['tokens']} | {r['tokens_per_s'] or 0:,.0f} "
              f"| {ppl} | {r['distinct_1']:.2f} / {r['distinct_2']:.2f} / {r['distinct_3']:.2f} | {r['unigram_entropy']:.2f} "
              f"| {r['repetition_rate']:.2f} | {r['length_words']:.0f} |")


def run(argv: list[str]) -> int:
    args = parse_compare_args(argv)
    (masked_name, masked_why), (causal_name, causal_why) = resolve_models(args)
    if args.judge:  # before loading anything: a wrong judge should cost nothing
        check_judge(args.judge, {"diffusion": masked_name, "GPT-2": causal_name})
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if os.path.exists(args.output) and not os.path.isfile(args.output):
        raise ValueError(f"--output {args.output!r} is a folder; give a .gif file name")
    json_path = args.json or os.path.splitext(args.output)[0] + ".json"

    device = pick_device(args.device)
    loaded = SimpleNamespace(checkpoint=masked_name, max_length=args.max_length, block_length=args.block_length)
    model, tokenizer, _, _, max_length = generate.load_generator_model(loaded)
    args.block_length = loaded.block_length  # the model's default (blocks of 8 after --eos-padding) if none given
    gpt2, gpt2_tokenizer = load_causal(causal_name)
    judge = load_causal(args.judge, "--judge") if args.judge else None
    print(f"diffusion model: {masked_name} ({masked_why})")
    print(f"autoregressive model: {causal_name} ({causal_why})")
    if judge:
        print(f"judge: {args.judge}")
    model.to(device)
    gpt2.to(device)

    prompt = build_prompt(tokenizer, prefix=args.prompt, text=args.infill, max_length=max_length, num_samples=1)
    generated = prompt.generate[0].tolist()
    first = generated.index(True)
    # Prefix mode: as many tokens as the diffusion model fills. Infill: the rest of the template
    # (gaps and fixed text up to </s>), which GPT-2 has to write itself without seeing it.
    n_new = sum(generated) if args.infill is None else len(generated) - 1 - first
    left = left_context(args)
    context = causal_context(gpt2_tokenizer, left)

    # One warm-up call each, so neither side pays for first-call allocation in the timed run.
    decode(model, tokenizer, prompt, DecodeOptions(steps=1))
    generate_causal(gpt2, gpt2_tokenizer, context, 1)

    options = args.decode_options()
    result, step_times, d_seconds = timed_decode(model, tokenizer, prompt, options)
    causal = generate_causal(gpt2, gpt2_tokenizer, context, n_new, args.sampling, args.k, args.p, args.temperature,
                             args.seed)

    lefts, d_texts, d_lengths = continuations(tokenizer, prompt, result.ids)
    d_quality = text_quality(d_texts, d_lengths)
    c_quality = text_quality(causal.texts, causal.lengths)
    d_quality["judge_perplexity"] = c_quality["judge_perplexity"] = None
    if judge:
        judge_model, judge_tokenizer = judge
        judge_model.to(device)
        d_quality["judge_perplexity"] = judge_perplexity(judge_model, judge_tokenizer, lefts, d_texts)
        c_quality["judge_perplexity"] = judge_perplexity(judge_model, judge_tokenizer, [left or ""], causal.texts)
    infill = args.infill is not None
    rows = [
        row("diffusion", masked_name, masked_why, d_seconds, result.forward_passes, sum(generated), result.texts[0],
            d_quality, False),
        row("gpt2", causal_name, causal_why, causal.seconds, causal.forward_passes, causal.forward_passes,
            (left + causal.texts[0] if left else causal.texts[0].strip()), c_quality, infill),
    ]

    # The race: equal slices of the longer of the two runs.
    times = frame_times(max(d_seconds, causal.seconds), args.num_frames)
    kinds = visualize_generation.position_kinds(prompt, tokenizer)
    d_title = (f"Diffusion \u00b7 {os.path.basename(os.path.normpath(masked_name))} \u00b7 {options.steps} steps, "
               f"{options.schedule}, {options.sampling}")
    c_title = f"Autoregressive \u00b7 {os.path.basename(os.path.normpath(causal_name))} \u00b7 KV cache, {args.sampling}"
    d_note = "fills the [MASK] gaps, seeing the text on both sides" if infill else ""
    c_note = ("left context only: GPT-2 sees just the text before the first [MASK], not what follows" if infill else "")
    panels = [diffusion_panel(d_title, d_note, tokenizer, result.trace, step_times, kinds, times),
              causal_panel(c_title, c_note, gpt2_tokenizer, context, causal, times)]
    frames = render_comparison(panels, times, Style(width=args.width))

    table = {"prompt": args.prompt, "infill": args.infill, "left_context": left, "max_length": max_length,
             "options": {**vars(options), "num_frames": args.num_frames, "device": str(device)},
             "judge": args.judge, "rows": rows}
    frames_dir = os.path.join(out_dir, FRAMES_DIR)
    try:
        os.makedirs(out_dir, exist_ok=True)
        paths = visualize_generation.write_frames(frames, frames_dir)
        save_gif(frames, args.output, frame_ms=args.frame_ms)
        with open(json_path, "w") as f:
            json.dump(table, f, indent=2)
    except OSError as err:
        raise ValueError(f"cannot write the comparison next to {args.output!r}: {err.strerror or err}") from None

    print()
    print_table(rows)
    print()
    for r in rows:
        print(f"{r['model']}: {r['text']}")
    width, height = frames[0].size
    print(f"\nwrote {args.output} ({len(frames)} frames, {width}x{height}, {args.frame_ms} ms each)")
    print(f"wrote {frames_dir}/frame_000.png ... {os.path.basename(paths[-1])}")
    print(f"wrote {json_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (ValueError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
