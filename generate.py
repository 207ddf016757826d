"""Generate text with a diffusion model: unmask over N steps (masked), or denoise embeddings (Gaussian).

    python generate.py --checkpoint results/final-model
    python generate.py --prefix "Machine learning is" --max-length 32 --steps 20 --schedule cosine
    python generate.py --sampling topk --k 50 --temperature 0.7 --num-samples 5
    python generate.py --sampling nucleus --p 0.9
    python generate.py --text "dog: a [MASK] [MASK] of the genus Canis." --show-steps
    python generate.py --steps 16 --threshold 0 --json  # exactly 16 passes, machine-readable trace
    python generate.py --checkpoint models/gaussian-base --num-samples 5              # Gaussian: DDIM, 50 steps
    python generate.py --checkpoint models/gaussian-base --sampler ddpm --prefix "dog:"  # every trained step
    python generate.py --checkpoint models/gaussian-base --sampler ddim --ddim-steps 25 --eta 1 --clamp

The objective comes from the checkpoint's diffusion_config.json. The masked decoder and its flags
live in diffusion/masked/unmasking.py, the schedules in diffusion/schedules.py, the token sampling
in diffusion/text/sampling.py, loading the model in diffusion/masked/generation.py; the Gaussian
sampler and its flags (--sampler, --ddim-steps, --eta, --clamp, --clamp-temperature) in diffusion/gaussian/sampling.py.
A flag of the other objective is an error. Every flag: ``python generate.py --help``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from diffusion.checkpoint import checkpoint_objective, quiet_loading  # noqa: E402
from diffusion.cli import dataclass_flags, flag_names, foreign_flags, parse_args, run_main  # noqa: E402
from diffusion.device import pick_device  # noqa: E402
from diffusion.gaussian.generation import gaussian_trace_json, prepare_sampling  # noqa: E402
from diffusion.gaussian.sampling import GaussianSamplingOptions, sample, trace_lines  # noqa: E402
from diffusion.image.generation import (  # noqa: E402
    ImageSampleArguments,
    label_name,
    load_image_generator,
    refuse_text_flags,
    requested,
    sampling_options,
)
from diffusion.image.sampling import sample_images  # noqa: E402
from diffusion.masked.generation import GenerationArguments, load_generator, masked_line, trace_json  # noqa: E402
from diffusion.masked.unmasking import DecodeOptions, blank_notes, build_prompt, decode, decoding_notes  # noqa: E402
from diffusion.viz.images import image_grid, save_samples  # noqa: E402
from diffusion.viz.rendering import check_writable  # noqa: E402


@dataclass
class OutputArguments:
    """generate.py's own flags."""

    num_samples: int | None = field(
        default=None, metadata={"help": "Sequences to generate, one batch (default 3); image checkpoints: images per class "
                                "(default 10)."})
    json: bool = field(default=False, metadata={"help": "Print machine-readable JSON (texts and the full trace)."})

    def __post_init__(self) -> None:
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"--num-samples must be at least 1, got {self.num_samples}")


def run(argv: list[str]) -> int:
    args, options, gaussian, images, out = parse_args((GenerationArguments, DecodeOptions, GaussianSamplingOptions,
                                                       ImageSampleArguments, OutputArguments), argv)
    given = flag_names(argv)
    image_flags = sorted(given & dataclass_flags(ImageSampleArguments))
    wants_gaussian = bool(foreign_flags(given, GaussianSamplingOptions, DecodeOptions))
    args.checkpoint = images.checkpoint(args.checkpoint)
    objective = checkpoint_objective(args.checkpoint, "image" if image_flags else
                                     "gaussian" if wants_gaussian else "masked")
    if objective == "image":
        return run_image(args, options, gaussian, images, out, given)
    if image_flags:
        raise ValueError(f"{', '.join(image_flags)} only {'applies' if len(image_flags) == 1 else 'apply'} to an image "
                         f"checkpoint; {args.checkpoint!r} is a {objective} model")
    out.num_samples = out.num_samples or 3
    if objective == "gaussian":
        return run_gaussian(args, options, gaussian, out, given)
    if wants_gaussian:
        wanted = foreign_flags(given, GaussianSamplingOptions, DecodeOptions)
        raise ValueError(f"{', '.join(wanted)} only {'applies' if len(wanted) == 1 else 'apply'} to a "
                         f"Gaussian checkpoint; {args.checkpoint!r} is a {objective} model (it decodes with --steps, "
                         f"--schedule, --remasking, --threshold, ...)")
    quiet_loading()
    generator = load_generator(args.checkpoint, args.max_length, options.block_length)
    options = generator.resolve(options)  # the model's block length and cache
    model, tokenizer = generator.model, generator.tokenizer
    model.to(pick_device(args.device))
    prompt = build_prompt(tokenizer, prefix=args.prefix, text=args.text, max_length=generator.max_length,
                          num_samples=out.num_samples)
    for note in decoding_notes(options, int(prompt.generate[0].sum()), out.num_samples):
        print(note, file=sys.stderr)
    started = time.perf_counter()
    result = decode(model, tokenizer, prompt, options)
    seconds = time.perf_counter() - started

    if out.json:
        print(json.dumps(trace_json(result, tokenizer, generator.checkpoint, options, seconds)))
        return 0
    for note in blank_notes(tokenizer, result, options):
        print(note, file=sys.stderr)
    print(f"model: {generator.checkpoint} ({generator.why})")
    n_generated = int(prompt.generate[0].sum())
    per_token = result.positions_computed / max(1, n_generated * out.num_samples)
    print(f"{n_generated} positions x {out.num_samples} samples, {options.describe()}: "
          f"{result.forward_passes} forward passes ({per_token:.1f} positions computed per generated one), {seconds:.2f} s")
    if args.show_steps:
        for b in range(out.num_samples):
            print(f"\nsample {b + 1}:")
            for k, step in enumerate(result.trace):
                print(f"  step {k:>3}: {masked_line(tokenizer, step.ids[b].tolist(), step.masked[b].tolist())}")
    print()
    for b, text in enumerate(result.texts):
        print(f"[{b + 1}] {text}")
    return 0


def run_image(args, options: DecodeOptions, gaussian: GaussianSamplingOptions, images: ImageSampleArguments,
              out: OutputArguments, given: set[str]) -> int:
    """Sample an image checkpoint: a grid (pixels enlarged, not smoothed) and one PNG per image in --output-dir."""
    refuse_text_flags(given - {"--checkpoint", "--device", "--seed", "--num-samples", "--prompt"},
                      dataclass_flags(GenerationArguments) | dataclass_flags(DecodeOptions)
                      | {"--clamp", "--clamp-temperature", "--no-self-conditioning", "--json"})
    sampling = sampling_options(gaussian, images)
    check_writable(images.output_dir, "--output-dir")
    quiet_loading()
    generator = load_image_generator(args.checkpoint, "--model-path" if images.model_path else "--checkpoint")
    images.check_type(generator)
    sampling.schedule_of_steps(generator.process)  # --ddim-steps beyond the trained steps: one line, before any work
    per_class = out.num_samples or 10
    labels, captions = requested(generator, args.prompt, images.digit, per_class)
    if labels is None and captions is None and "--guidance" in given:
        print(f"note: --guidance has no effect: {generator.checkpoint!r} is an unconditional model", file=sys.stderr)
    model = generator.model.to(pick_device(args.device))
    started = time.perf_counter()
    result = sample_images(model, generator.process, labels, sampling, num_samples=per_class, seed=options.seed,
                           captions=captions, bank=generator.bank)
    seconds = time.perf_counter() - started
    size = generator.config.image_size
    if captions is not None:  # a file name from the caption: "a handwritten seven" -> a-handwritten-seven_000.png
        names = ["-".join("".join(ch if ch.isalnum() else " " for ch in c).split())[:60] or "caption" for c in captions]
        rows = [f'"{c}"' for c in captions[::per_class]]
    else:
        names = ([label_name(generator, int(y)) for y in labels] if labels is not None else ["sample"] * per_class)
        rows = ([label_name(generator, int(y)) for y in labels[::per_class]] if labels is not None else None)
    files = [f"{name}_{i % per_class:03d}" for i, name in enumerate(names)]
    grid = image_grid(result.images, per_class, scale=max(1, 64 // size), row_labels=rows,
                      title=f"{sampling.describe(generator.process)}, seed {options.seed}")
    os.makedirs(images.output_dir, exist_ok=True)
    grid_path = os.path.join(images.output_dir, "grid.png")
    grid.save(grid_path)
    paths = save_samples(result.images, images.output_dir, files)
    print(f"model: {generator.checkpoint} ({generator.why})")
    print(f"{len(paths)} images of {size}x{size}, {sampling.describe(generator.process)}: "
          f"{result.forward_passes} steps, {seconds:.2f} s")
    print(f"grid:    {grid_path}\nsamples: {len(paths)} PNGs in {images.output_dir}/ ({os.path.basename(paths[0])}, ...)")
    return 0


def run_gaussian(args, options: DecodeOptions, gaussian: GaussianSamplingOptions, out: OutputArguments,
                 given: set[str]) -> int:
    """Sample a Gaussian checkpoint: pure noise -> x0 -> tokens (diffusion/gaussian/sampling.py)."""
    quiet_loading()
    generator, prompt = prepare_sampling(args.checkpoint, gaussian,
                                         foreign_flags(given, DecodeOptions, GaussianSamplingOptions, keep={"--seed"}),
                                         args.max_length, args.prefix, args.text, out.num_samples, options.seed)
    lengths = prompt.attention_mask.sum(dim=1).tolist()
    model = generator.model.to(pick_device(args.device))
    started = time.perf_counter()
    result = sample(model, generator.process, generator.tokenizer, prompt, gaussian, seed=options.seed,
                    record_trace=out.json or args.show_steps)
    seconds = time.perf_counter() - started
    if out.json:
        print(json.dumps(gaussian_trace_json(result, generator, gaussian, seconds, options.seed)))
        return 0
    print(f"model: {generator.checkpoint} ({generator.why})")
    print(f"{out.num_samples} samples of {min(lengths)}-{max(lengths)} positions, {gaussian.describe(generator.process)}: "
          f"{result.forward_passes} forward passes, {seconds:.2f} s")
    if args.show_steps:
        for b in range(out.num_samples):
            print(f"\nsample {b + 1}:")
            for line in trace_lines(generator.tokenizer, result, b, generator.process):
                print(f"  {line}")
    print()
    for b, text in enumerate(result.texts):
        print(f"[{b + 1}] {text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
