"""Watch text emerge from masks (or from noise): every step as a PNG frame, an animated GIF, the viewer's data.

    python visualize_generation.py --checkpoint results/final-model --prefix "Machine learning is" --max-length 50
    python visualize_generation.py --prefix "The future of AI" --sampling topk --temperature 0.8 --steps 20
    python visualize_generation.py --schedule cosine --frame-ms 500 --output my-animation
    python visualize_generation.py --text "dog: a [MASK] [MASK] of the genus Canis."   # infilling
    python visualize_generation.py --checkpoint models/gaussian-base --prefix "dog:"    # text out of Gaussian noise
    python visualize_generation.py --checkpoint models/gaussian-base --sampler ddpm --max-frames 60
    python visualize_generation.py --checkpoint results-image/final-model --guidance 3   # digits out of noise

It writes into --output (default: the current folder):

    text_diffusion_animation.gif         every step --frame-ms long, the last held 3x, looping
    visualization_frames/frame_000.png   one frame per step (step 0: all masked), same size
    animation_data.js                    the trace for view_animation.html (open the page next to it)

Every decoding flag of generate.py works here too (--schedule, --sampling, --k, --p, --remasking,
--refine, --threshold, --block-length, --seed, ...): both parse diffusion/masked/unmasking.py's
DecodeOptions. A Gaussian checkpoint takes generate.py's --sampler, --ddim-steps, --eta, --clamp,
--clamp-temperature instead; its frames show every position's nearest token coloured by its rounding probability.
The drawing lives in diffusion/viz/rendering.py.
Every flag: ``python visualize_generation.py --help``; the guide: docs/VISUALIZATION_GUIDE.md.
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
from diffusion.gaussian.sampling import GaussianSamplingOptions, sample  # noqa: E402
from diffusion.image.generation import (  # noqa: E402
    ImageSampleArguments,
    load_image_generator,
    refuse_text_flags,
    requested,
    sampling_options,
)
from diffusion.image.sampling import sample_images  # noqa: E402
from diffusion.masked.generation import GenerationArguments, load_generator, masked_line, trace_json  # noqa: E402
from diffusion.masked.unmasking import DecodeOptions, blank_notes, build_prompt, decode, decoding_notes  # noqa: E402
from diffusion.viz.images import denoising_frame  # noqa: E402
from diffusion.viz.rendering import (  # noqa: E402
    Style,
    check_writable,
    denoising_pieces,
    position_kinds,
    render_denoising_frames,
    render_frames,
    step_pieces,
    write_all_or_nothing,
)

GIF_NAME = "text_diffusion_animation.gif"
IMAGE_GIF_NAME = "image_diffusion_animation.gif"
FRAMES_DIR = "visualization_frames"
DATA_NAME = "animation_data.js"


@dataclass
class AnimationArguments:
    """visualize_generation.py's own flags (the model, prompt and decoding flags are generate.py's)."""

    num_samples: int = field(default=1, metadata={"help": "Always 1: the animation follows one sequence."})
    json: bool = field(default=False, metadata={"help": "Not here: the trace goes to animation_data.js (generate.py --json)."})
    frame_ms: int = field(
        default=800, metadata={"help": "Milliseconds per frame in the GIF and the viewer (the last frame stays 3x)."}
    )
    output: str = field(
        default=".",
        metadata={"help": "Folder for text_diffusion_animation.gif, visualization_frames/ and animation_data.js."},
    )
    width: int = field(default=960, metadata={"help": "Frame width in pixels (the height follows the text)."})
    max_frames: int | None = field(
        default=None,
        metadata={"help": "Gaussian checkpoints: at most this many frames, evenly spaced over the steps, the first "
                  "and last always in (default 60: DDPM has one step per trained step)."},
    )

    def __post_init__(self) -> None:
        if self.num_samples != 1:
            raise ValueError(f"the animation follows one sequence: --num-samples must be 1, got {self.num_samples} "
                             "(generate.py --num-samples N --show-steps prints several)")
        if self.json:
            raise ValueError("--json is generate.py's; visualize_generation.py writes the same trace to animation_data.js")
        # GIF delays are in 1/100 s, and browsers play delays under 20 ms as 100 ms.
        if self.frame_ms < 20:
            raise ValueError(f"--frame-ms must be at least 20, got {self.frame_ms}")
        if self.width < 480:
            raise ValueError(f"--width must be at least 480 pixels, got {self.width}")
        if self.max_frames is not None and self.max_frames < 2:
            raise ValueError(f"--max-frames must be at least 2, got {self.max_frames}")


def run(argv: list[str]) -> int:
    args, options, gaussian, images, anim = parse_args((GenerationArguments, DecodeOptions, GaussianSamplingOptions,
                                                        ImageSampleArguments, AnimationArguments), argv)
    if os.path.exists(anim.output) and not os.path.isdir(anim.output):
        raise ValueError(f"--output {anim.output!r} is a file; give a folder")
    check_writable(anim.output, "--output")  # before the model loads
    given = flag_names(argv)
    image_flags = sorted(given & (dataclass_flags(ImageSampleArguments) - {"--output-dir"}))
    if "--output-dir" in given:
        raise ValueError("--output-dir is generate.py's; visualize_generation.py writes into --output")
    wanted = foreign_flags(given, GaussianSamplingOptions, DecodeOptions) + sorted(given & {"--max-frames"})
    args.checkpoint = images.checkpoint(args.checkpoint)
    objective = checkpoint_objective(args.checkpoint, "image" if image_flags else "gaussian" if wanted else "masked")
    if objective == "image":
        return run_image(args, options, gaussian, images, anim, given)
    if image_flags:
        raise ValueError(f"{', '.join(image_flags)} only {'applies' if len(image_flags) == 1 else 'apply'} to an image "
                         f"checkpoint; {args.checkpoint!r} is a {objective} model")
    if objective == "gaussian":
        return run_gaussian(args, options, gaussian, anim, given)
    if wanted:
        raise ValueError(f"{', '.join(wanted)} only {'applies' if len(wanted) == 1 else 'apply'} to a Gaussian "
                         f"checkpoint; {args.checkpoint!r} is a {objective} model")
    quiet_loading()
    generator = load_generator(args.checkpoint, args.max_length, options.block_length)
    options = generator.resolve(options)  # the model's block length and cache
    model, tokenizer, checkpoint = generator.model, generator.tokenizer, generator.checkpoint
    model.to(pick_device(args.device))
    prompt = build_prompt(tokenizer, prefix=args.prefix, text=args.text, max_length=generator.max_length, num_samples=1)
    for note in decoding_notes(options, int(prompt.generate[0].sum()), 1):
        print(note, file=sys.stderr)
    started = time.perf_counter()
    result = decode(model, tokenizer, prompt, options)
    seconds = time.perf_counter() - started
    for note in blank_notes(tokenizer, result, options):
        print(note, file=sys.stderr)

    # The viewer's data: generate.py --json's record of this one sample, plus what the page needs to draw it.
    data = trace_json(result, tokenizer, checkpoint, options, seconds)
    sample = data["samples"][0]
    sample["kinds"] = position_kinds(prompt, tokenizer)
    data.update(model=os.path.basename(os.path.normpath(checkpoint)), prefix=args.prefix, template=args.text,
                max_length=generator.max_length, frame_ms=anim.frame_ms, settings=options.describe())

    steps = [step_pieces(s["tokens"], s["masked"], s["revealed"], sample["kinds"], tokenizer.eos_token)
             for s in sample["steps"]]
    frames = render_frames(steps, header=options.describe(), style=Style(width=anim.width))

    written = write_outputs(frames, data, anim)
    print(f"model: {checkpoint} ({generator.why})")
    print(f"{result.forward_passes} forward passes ({options.describe()}), {seconds:.2f} s")
    if args.show_steps:
        for k, step in enumerate(result.trace):
            print(f"  step {k:>3}: {masked_line(tokenizer, step.ids[0].tolist(), step.masked[0].tolist())}")
    print(f"text: {sample['text']}")
    print(written)
    return 0


def write_outputs(frames, data: dict, anim: AnimationArguments) -> str:
    """The GIF, the frames and animation_data.js, all or nothing; returns the lines that say what was written."""
    gif_path = os.path.join(anim.output, GIF_NAME)
    data_path = os.path.join(anim.output, DATA_NAME)
    # A script, not a .json fetched by the page: browsers refuse fetch() on file:// pages,
    # but load <script src> from the same folder.
    frame_paths = write_all_or_nothing(frames, os.path.join(anim.output, FRAMES_DIR), gif_path, anim.frame_ms,
                                       {data_path: "window.ANIMATION_DATA = " + json.dumps(data) + ";\n"})
    width, height = frames[0].size
    return (f"wrote {gif_path} ({len(frames)} frames, {width}x{height}, {anim.frame_ms} ms each, "
            f"{os.path.getsize(gif_path) / 1024:.0f} KB)\n"
            f"wrote {os.path.dirname(frame_paths[0])}/frame_000.png ... {os.path.basename(frame_paths[-1])}\n"
            f"wrote {data_path}: open view_animation.html from the same folder, or load this file with its "
            f"'Load data file' button")


def frame_indices(n_steps: int, max_frames: int) -> list[int]:
    """At most ``max_frames`` indices into a trace of ``n_steps``, evenly spaced, the first and last included."""
    if n_steps <= max_frames:
        return list(range(n_steps))
    return sorted({round(i * (n_steps - 1) / (max_frames - 1)) for i in range(max_frames)})


def run_gaussian(args, options: DecodeOptions, gaussian: GaussianSamplingOptions, anim: AnimationArguments,
                 given: set[str]) -> int:
    """A Gaussian checkpoint: text crystallising out of noise, tokens coloured by their rounding probability."""
    quiet_loading()
    generator, prompt = prepare_sampling(args.checkpoint, gaussian,
                                         foreign_flags(given, DecodeOptions, GaussianSamplingOptions, keep={"--seed"}),
                                         args.max_length, args.prefix, args.text, 1, options.seed)
    process, tokenizer = generator.process, generator.tokenizer
    lengths = prompt.attention_mask.sum(dim=1).tolist()
    model = generator.model.to(pick_device(args.device))
    started = time.perf_counter()
    result = sample(model, process, tokenizer, prompt, gaussian, seed=options.seed)
    seconds = time.perf_counter() - started

    data = gaussian_trace_json(result, generator, gaussian, seconds, options.seed)
    sample_data = data["samples"][0]
    special = set(tokenizer.all_special_ids)
    sample_data["kinds"] = ["generated" if gen else "special" if token in special else "prefix"
                            for token, gen in zip(prompt.input_ids[0].tolist(), sample_data["generate"], strict=False)]
    keep = frame_indices(len(sample_data["steps"]), anim.max_frames or 60)
    sample_data["steps"] = [sample_data["steps"][i] for i in keep]
    settings = gaussian.describe(process)
    data.update(model=os.path.basename(os.path.normpath(generator.checkpoint)), prefix=args.prefix,
                template=args.text, max_length=lengths[0], frame_ms=anim.frame_ms, settings=settings)
    steps = [denoising_pieces(s["tokens"], s["probs"], sample_data["kinds"], tokenizer.eos_token)
             for s in sample_data["steps"]]
    labels = [(f"k = {s['step']} of {process.num_steps}  (t = {s['t']:.2f})", s["alpha_bar"] ** 0.5)
              for s in sample_data["steps"]]
    frames = render_denoising_frames(steps, labels, header=settings, style=Style(width=anim.width))

    written = write_outputs(frames, data, anim)
    print(f"model: {generator.checkpoint} ({generator.why})")
    print(f"{result.forward_passes} forward passes ({settings}), {seconds:.2f} s; {len(frames)} of them drawn")
    print(f"text: {sample_data['text']}")
    print(written)
    return 0


def run_image(args, options: DecodeOptions, gaussian: GaussianSamplingOptions, images: ImageSampleArguments,
              anim: AnimationArguments, given: set[str]) -> int:
    """An image checkpoint: x_t and the predicted x_0 of one sample per class, at every drawn step."""
    refuse_text_flags(given - {"--checkpoint", "--device", "--seed", "--prompt"},
                      dataclass_flags(GenerationArguments) | dataclass_flags(DecodeOptions)
                      | {"--clamp", "--clamp-temperature", "--no-self-conditioning", "--width"})
    sampling = sampling_options(gaussian, images)
    quiet_loading()
    generator = load_image_generator(args.checkpoint, "--model-path" if images.model_path else "--checkpoint")
    images.check_type(generator)
    process = generator.process
    sampling.schedule_of_steps(process)  # --ddim-steps beyond the trained steps: one line, before any work
    labels, captions = requested(generator, args.prompt, images.digit, 1)  # one of each class, or the one asked for
    model = generator.model.to(pick_device(args.device))
    started = time.perf_counter()
    result = sample_images(model, process, labels, sampling, num_samples=4, seed=options.seed, record_trace=True,
                           captions=captions, bank=generator.bank)
    seconds = time.perf_counter() - started
    settings = sampling.describe(process)
    keep = frame_indices(len(result.trace), anim.max_frames or 60)
    scale = max(4, 64 // generator.config.image_size)
    frames = [denoising_frame(result.trace[i].x_t, result.trace[i].x0_hat, result.trace[i].step, process.num_steps,
                              result.trace[i].step / process.num_steps, scale=scale, header=settings) for i in keep]
    # the end: the finished images in both rows (x_0 itself)
    frames.append(denoising_frame(result.images, result.images, 0, process.num_steps, 0.0, scale=scale, header=settings))
    gif_path = os.path.join(anim.output, IMAGE_GIF_NAME)
    frame_paths = write_all_or_nothing(frames, os.path.join(anim.output, FRAMES_DIR), gif_path, anim.frame_ms, {})
    print(f"model: {generator.checkpoint} ({generator.why})")
    print(f"{result.forward_passes} steps ({settings}), {seconds:.2f} s; {len(frames)} frames drawn")
    width, height = frames[0].size
    print(f"wrote {gif_path} ({len(frames)} frames, {width}x{height}, {anim.frame_ms} ms each, "
          f"{os.path.getsize(gif_path) / 1024:.0f} KB)\n"
          f"wrote {os.path.dirname(frame_paths[0])}/frame_000.png ... {os.path.basename(frame_paths[-1])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
