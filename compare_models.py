"""Diffusion vs autoregressive, side by side: the masked model refines every position at once, GPT-2 writes left to right.

    python compare_models.py                                   # the bundled models, the decoding defaults
    python compare_models.py --prompt "dog: a" --steps 16 --sampling topk --k 50 --seed 1
    python compare_models.py --roberta-checkpoint results/final-model --gpt2-checkpoint results-gpt2/final-model
    python compare_models.py --infill "dog: a [MASK] [MASK] [MASK] of the genus Canis."   # infilling
    python compare_models.py --judge path/to/another-causal-lm  # adds judge perplexity to the table
    python compare_models.py --gpt2-checkpoint gpt2           # the hub GPT-2 (needs internet)
    python compare_models.py --gaussian-checkpoint models/gaussian-base --ddim-steps 50   # a third lane: Gaussian

The diffusion side decodes with generate.py's defaults unless told otherwise: with blocks (the
bundled model's) the dual cache of diffusion/masked/cache.py, --threshold 0.9, one step per position.
With --gaussian-checkpoint a Gaussian diffusion model runs a third lane (--sampler, --ddim-steps,
--eta, --clamp, --clamp-temperature as in generate.py), continuing the same prompt (or filling the same template) in a
row whose length is drawn from its training lengths, its estimate rounded to tokens at every step.
Both models run on the same prompt with the same sampling flags and seed; GPT-2 generates as many
new tokens as the diffusion model fills (in --infill mode: the rest of the template after the
first [MASK], since it sees only the text before it).  Each side is timed on the wall clock, on
the second of two identical runs (the first is an untimed warm-up), and the timeline is cut into
--num-frames equal slices: every frame shows both models as they stood at that moment.  It writes

    comparison.gif            (--output) every frame --frame-ms long, the last held 3x
    comparison_frames/        frame_000.png ... beside the GIF, all the same size
    comparison.json           (--json) the table: wall time, forward passes, tokens/s, quality

and prints the table.  The quality numbers (distinct-n, entropy, repetition, length, judge
perplexity) are defined in diffusion/text/metrics.py; the causal side in diffusion/text/causal.py;
the timeline and drawing in diffusion/viz/race.py.  Every flag: ``python compare_models.py --help``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from diffusion.checkpoint import quiet_loading, resolve_model  # noqa: E402
from diffusion.cli import check_text, flag_names, foreign_flags, parse_args, run_main  # noqa: E402
from diffusion.device import pick_device  # noqa: E402
from diffusion.gaussian.generation import check_sample_length, load_gaussian_generator  # noqa: E402
from diffusion.gaussian.sampling import GaussianSamplingOptions, gaussian_prompt, lengths_after_prompt, sample  # noqa: E402
from diffusion.masked.generation import load_generator  # noqa: E402
from diffusion.masked.unmasking import MASK_PLACEHOLDER, DecodeOptions, build_prompt, continuations, decode  # noqa: E402
from diffusion.paths import TRAINED_MODEL  # noqa: E402
from diffusion.text.causal import causal_context, generate_causal, load_causal  # noqa: E402
from diffusion.text.metrics import check_judge, judge_perplexity, text_quality  # noqa: E402
from diffusion.viz.race import (  # noqa: E402
    causal_panel,
    diffusion_panel,
    frame_times,
    gaussian_panel,
    render_comparison,
    timed_decode,
)
from diffusion.viz.rendering import Style, check_writable, position_kinds, write_all_or_nothing  # noqa: E402

FRAMES_DIR = "comparison_frames"
QUALITY_FIELDS = ("distinct_1", "distinct_2", "distinct_3", "unigram_entropy", "repetition_rate", "length_words",
                  "length_tokens", "judge_perplexity")


@dataclass
class CompareArguments:
    """compare_models.py's own flags (the decoding and sampling flags: diffusion/masked/unmasking.py's DecodeOptions)."""

    roberta_checkpoint: str | None = field(
        default=None,
        metadata={"help": f"The diffusion side: masked LM folder or hub id. Default: {TRAINED_MODEL} if it exists, "
                  "else the bundled models/masked-base."},
    )
    gpt2_checkpoint: str | None = field(
        default=None,
        metadata={"help": "The autoregressive side: causal LM folder or hub id (gpt2 with internet). "
                  "Default: the bundled models/causal-base."},
    )
    gaussian_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A third lane: a Gaussian diffusion model (models/gaussian-base, results-gaussian/final-model), "
                  "sampled with --sampler, --ddim-steps, --eta, --clamp, --clamp-temperature."},
    )
    prompt: str | None = field(default=None, metadata={"help": "Text both models continue (kept unchanged)."})
    infill: str | None = field(
        default=None,
        metadata={"help": "Infilling instead: a template whose [MASK]s (one token each) the diffusion model fills. "
                  "GPT-2 gets only the text before the first [MASK] and writes on from there."},
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Diffusion sequence length incl. <s> and </s> (default: the length it was trained at); "
                  "GPT-2 generates as many new tokens as the diffusion model does."},
    )
    judge: str | None = field(
        default=None,
        metadata={"help": "A causal LM (folder or hub id), neither generator, that scores both texts: judge perplexity."},
    )
    output: str = field(default="comparison.gif", metadata={"help": "The GIF; comparison_frames/ is written beside it."})
    json: str | None = field(default=None, metadata={"help": "The table as JSON. Default: comparison.json beside the GIF."})
    num_frames: int = field(default=40, metadata={"help": "Frames: equal slices of the shared wall-clock timeline."})
    frame_ms: int = field(default=150, metadata={"help": "Milliseconds per GIF frame (the last is held 3x)."})
    width: int = field(default=960, metadata={"help": "Frame width in pixels."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... Default: cuda if available."})

    def __post_init__(self) -> None:
        check_text("--prompt", self.prompt)
        check_text("--infill", self.infill)
        if self.prompt is not None and self.infill is not None:
            raise ValueError("give either --prompt (continue a text) or --infill (fill a template), not both")
        if self.max_length is not None and self.max_length < 3:
            raise ValueError(f"--max-length must be at least 3, got {self.max_length}")
        if not self.output.lower().endswith(".gif"):
            raise ValueError(f"--output is the GIF to write and must end in .gif, got {self.output!r}")
        if self.num_frames < 2:
            raise ValueError(f"--num-frames must be at least 2, got {self.num_frames}")
        if self.frame_ms < 20:
            raise ValueError(f"--frame-ms must be at least 20, got {self.frame_ms}")
        if self.width < 480:
            raise ValueError(f"--width must be at least 480 pixels, got {self.width}")


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


def brief_settings(options: DecodeOptions) -> str:
    """'dual cache, blocks of 8, threshold 0.9, nucleus': what sets the pace, short enough for a panel title
    (the defaults of schedule, steps and remasking left out; comparison.json has every option)."""
    defaults = DecodeOptions()
    parts = [f"{options.cache} cache" if options.cache not in (None, "none") else "no cache",
             f"blocks of {options.block_length}" if options.block_length else "",
             f"{options.steps} steps" if options.steps else "",
             f"threshold {options.commit_threshold}" if options.commit_threshold else "",
             f"{options.schedule}" if options.schedule != defaults.schedule else "",
             f"{options.remasking}" if options.remasking != defaults.remasking else "",
             "refine" if options.refine else "", options.sampling]
    return ", ".join(p for p in parts if p)


def run(argv: list[str]) -> int:
    args, options, g_options = parse_args((CompareArguments, DecodeOptions, GaussianSamplingOptions), argv)
    wanted = foreign_flags(flag_names(argv), GaussianSamplingOptions, DecodeOptions)
    if wanted and not args.gaussian_checkpoint:
        raise ValueError(f"{', '.join(wanted)} {'sets' if len(wanted) == 1 else 'set'} the Gaussian lane: give "
                         f"--gaussian-checkpoint DIR too")
    masked_name, masked_why = resolve_model(args.roberta_checkpoint, "--roberta-checkpoint", "masked")
    causal_name, causal_why = resolve_model(args.gpt2_checkpoint, "--gpt2-checkpoint", "causal", " (or gpt2, with internet)")
    if args.judge:  # before loading anything: a wrong judge should cost nothing
        check_judge(args.judge, {"diffusion": masked_name, "GPT-2": causal_name,
                                 **({"Gaussian": args.gaussian_checkpoint} if args.gaussian_checkpoint else {})})
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if os.path.exists(args.output) and not os.path.isfile(args.output):
        raise ValueError(f"--output {args.output!r} is a folder; give a .gif file name")
    json_path = args.json or os.path.splitext(args.output)[0] + ".json"
    if os.path.isdir(json_path):
        raise ValueError(f"--json {json_path!r} is a folder; give a .json file name")
    # Before any model loads: both places must take files (the GIF's folder holds the frames too).
    check_writable(out_dir, "--output")
    check_writable(os.path.dirname(os.path.abspath(json_path)), "--json")

    device = pick_device(args.device)
    quiet_loading()
    generator = load_generator(masked_name, args.max_length, options.block_length, flag="--roberta-checkpoint")
    # The model's defaults where none given: blocks of 8 after --eos-padding, and with blocks the dual
    # cache, the fastest setting measured whose quality matches uncached decoding (docs/BENCHMARKS.md).
    options = generator.resolve(options)
    model, tokenizer, max_length = generator.model, generator.tokenizer, generator.max_length
    gpt2, gpt2_tokenizer = load_causal(causal_name)
    gaussian = load_gaussian_generator(args.gaussian_checkpoint, "--gaussian-checkpoint") if args.gaussian_checkpoint else None
    if gaussian is not None and g_options.sampler == "ddim":
        gaussian.process.ddim_steps(g_options.steps_for(gaussian.process))  # too many steps: one line, now
    judge = load_causal(args.judge, "--judge") if args.judge else None
    print(f"diffusion model: {masked_name} ({masked_why})")
    print(f"autoregressive model: {causal_name} ({causal_why})")
    if gaussian is not None:
        print(f"Gaussian model: {gaussian.checkpoint} ({gaussian.why})")
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

    # Warm-up: each side runs the very same generation once, untimed, so that the timed run measures
    # generation, not start-up (first-call allocation, thread pools, lazy kernels), which on a CPU can
    # take many times longer than the generation itself.
    decode(model, tokenizer, prompt, options)
    generate_causal(gpt2, gpt2_tokenizer, context, n_new, options.sampling, options.k, options.p,
                    options.temperature, options.seed)

    result, step_times, d_seconds = timed_decode(model, tokenizer, prompt, options)
    causal = generate_causal(gpt2, gpt2_tokenizer, context, n_new, options.sampling, options.k, options.p,
                             options.temperature, options.seed)
    g_prompt = g_result = None
    if gaussian is not None:
        gaussian.model.to(device)
        g_tokenizer = gaussian.tokenizer
        if args.infill is not None:
            g_prompt = gaussian_prompt(g_tokenizer, [0], text=args.infill)
        else:
            prefix_ids = g_tokenizer(args.prompt, add_special_tokens=False)["input_ids"] if args.prompt else []
            lengths = lengths_after_prompt(gaussian.config, 1, len(prefix_ids), max_length, seed=options.seed)
            g_prompt = gaussian_prompt(g_tokenizer, lengths, prefix_ids=prefix_ids)
        check_sample_length(gaussian, g_prompt.input_ids.shape[1])
        sample(gaussian.model, gaussian.process, g_tokenizer, g_prompt, g_options, seed=options.seed)  # warm-up
        g_result = sample(gaussian.model, gaussian.process, g_tokenizer, g_prompt, g_options, seed=options.seed)
        g_seconds = g_result.trace[-1].seconds

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
        # tokens: the text's own, up to its end (the </s> tail is not text); infilling: the gaps filled
        row("diffusion", masked_name, masked_why, d_seconds, result.forward_passes,
            sum(generated) if infill else d_lengths[0], result.texts[0], d_quality, False),
        row("gpt2", causal_name, causal_why, causal.seconds, causal.forward_passes, causal.lengths[0],
            (left + causal.texts[0] if left else causal.texts[0].strip()), c_quality, infill),
    ]
    if g_result is not None:
        g_lefts, g_texts, g_lengths = continuations(g_tokenizer, g_prompt, g_result.ids)
        g_quality = text_quality(g_texts, g_lengths)
        g_quality["judge_perplexity"] = None
        if judge:
            g_quality["judge_perplexity"] = judge_perplexity(judge_model, judge_tokenizer, g_lefts, g_texts)
        rows.insert(1, row("gaussian", gaussian.checkpoint, gaussian.why, g_seconds, g_result.forward_passes,
                           int(g_prompt.generate[0].sum()) if infill else g_lengths[0], g_result.texts[0], g_quality,
                           False))

    # The race: equal slices of the longest of the runs.
    times = frame_times(max(d_seconds, causal.seconds, g_seconds if g_result is not None else 0.0), args.num_frames)
    kinds = position_kinds(prompt, tokenizer)
    d_title = f"Diffusion \u00b7 {os.path.basename(os.path.normpath(masked_name))} \u00b7 {brief_settings(options)}"
    c_title = (f"Autoregressive \u00b7 {os.path.basename(os.path.normpath(causal_name))} \u00b7 KV cache, "
               f"{options.sampling}")
    d_note = "fills the [MASK] gaps, seeing the text on both sides" if infill else ""
    c_note = ("left context only: GPT-2 sees just the text before the first [MASK], not what follows" if infill else "")
    panels = [diffusion_panel(d_title, d_note, tokenizer, result.trace, step_times, kinds, times,
                              forward_passes=result.forward_passes),
              causal_panel(c_title, c_note, gpt2_tokenizer, context, causal, times)]
    if g_result is not None:
        special = set(g_tokenizer.all_special_ids)
        g_kinds = ["generated" if gen else "special" if token in special else "prefix"
                   for token, gen in zip(g_prompt.input_ids[0].tolist(), g_prompt.generate[0].tolist(), strict=True)]
        g_title = (f"Gaussian \u00b7 {os.path.basename(os.path.normpath(gaussian.checkpoint))} \u00b7 "
                   f"{g_options.describe(gaussian.process)}")
        g_note = "nearest token of each denoised embedding, by rounding probability: red 0, amber 0.5, green 1"
        panels.insert(1, gaussian_panel(g_title, g_note, g_tokenizer, g_result.trace, g_seconds, g_kinds, times))
    frames = render_comparison(panels, times, Style(width=args.width))

    table = {"prompt": args.prompt, "infill": args.infill, "left_context": left, "max_length": max_length,
             "options": {**vars(options), "num_frames": args.num_frames, "device": str(device)},
             "gaussian_options": ({**vars(g_options), "ddim_steps": g_options.steps_for(gaussian.process)}
                                  if gaussian is not None else None),
             "timing": "wall clock of the second of two identical runs per model (the first is a warm-up)",
             "judge": args.judge, "rows": rows}
    frames_dir = os.path.join(out_dir, FRAMES_DIR)
    paths = write_all_or_nothing(frames, frames_dir, args.output, args.frame_ms,
                                 {json_path: json.dumps(table, indent=2)})

    print()
    print_table(rows)
    print("(each model timed on its second run of the same generation; the first, untimed, is a warm-up)")
    print()
    for r in rows:
        print(f"{r['model']}: {r['text']}")
    width, height = frames[0].size
    print(f"\nwrote {args.output} ({len(frames)} frames, {width}x{height}, {args.frame_ms} ms each)")
    print(f"wrote {frames_dir}/frame_000.png ... {os.path.basename(paths[-1])}")
    print(f"wrote {json_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
