"""Watch text emerge from masks: every decoding step as a PNG frame, an animated GIF, and the viewer's data.

    python visualize_generation.py --checkpoint results/final-model --prefix "Machine learning is" --max-length 50
    python visualize_generation.py --prefix "The future of AI" --sampling topk --temperature 0.8 --steps 20
    python visualize_generation.py --schedule cosine --frame-ms 500 --output my-animation
    python visualize_generation.py --text "dog: a [MASK] [MASK] of the genus Canis."   # infilling

It writes into --output (default: the current folder):

    text_diffusion_animation.gif         every step --frame-ms long, the last held 3x, looping
    visualization_frames/frame_000.png   one frame per step (step 0: all masked), same size
    animation_data.js                    the trace for view_animation.html (open the page next to it)

Every decoding flag of generate.py works here too (--schedule, --sampling, --k, --p, --remasking,
--refine, --threshold, --block-length, --seed, ...). The drawing lives in diffusion/rendering.py.
Every flag: ``python visualize_generation.py --help``; the guide: docs/VISUALIZATION_GUIDE.md.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import generate  # noqa: E402  (sets the quiet logging that generate.py uses)
from config import VisualizeArguments, parse_visualize_args  # noqa: E402
from diffusion.modeling import ModelLoadError, pick_device  # noqa: E402
from diffusion.rendering import Style, render_frames, save_gif, step_pieces  # noqa: E402
from diffusion.unmasking import build_prompt, decode  # noqa: E402

GIF_NAME = "text_diffusion_animation.gif"
FRAMES_DIR = "visualization_frames"
DATA_NAME = "animation_data.js"
FRAME_NAME = re.compile(r"^frame_\d{3,}\.png$")


def position_kinds(prompt, tokenizer) -> list[str]:
    """Per position of the (single) prompt: 'generated', 'prefix' (fixed text) or 'special' (<s>, </s>: not drawn).

    Only the template's own special tokens are hidden; a </s> the model draws is shown, since it
    ends the text (generate.py drops what follows it).
    """
    special = set(tokenizer.all_special_ids)
    kinds = []
    for token, generated in zip(prompt.input_ids[0].tolist(), prompt.generate[0].tolist(), strict=True):
        kinds.append("generated" if generated else "special" if token in special else "prefix")
    return kinds


def settings_line(data: dict) -> str:
    """'greedy, linear schedule, 10 steps' for the frames' header."""
    o = data["options"]
    sampling = {"topk": f"top-k {o['k']}", "nucleus": f"nucleus p={o['p']}"}.get(o["sampling"], o["sampling"])
    if o["sampling"] != "greedy" and o["temperature"] != 1.0:
        sampling += f", T={o['temperature']}"
    extra = "".join([", refine" if o["refine"] else "", f", threshold {o['threshold']}" if o["threshold"] else "",
                     f", blocks of {o['block_length']}" if o["block_length"] else ""])
    return f"{sampling}, {o['schedule']} schedule, {o['steps']} steps{extra}"


def write_frames(frames, folder: str) -> list[str]:
    """frame_000.png ... into folder; frames left from an earlier, longer run are deleted."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"frame_{k:03d}.png") for k in range(len(frames))]
    for stale in set(glob.glob(os.path.join(folder, "frame_*.png"))) - set(paths):
        if FRAME_NAME.match(os.path.basename(stale)):  # only our own numbered frames
            os.remove(stale)
    for frame, path in zip(frames, paths, strict=True):
        frame.save(path, optimize=True)
    return paths


def run(argv: list[str]) -> int:
    args: VisualizeArguments = parse_visualize_args(argv)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise ValueError(f"--output {args.output!r} is a file; give a folder")
    model, tokenizer, checkpoint, why, max_length = generate.load_generator_model(args)
    model.to(pick_device(args.device))
    prompt = build_prompt(tokenizer, prefix=args.prefix, text=args.text, max_length=max_length, num_samples=1)
    started = time.perf_counter()
    result = decode(model, tokenizer, prompt, args.decode_options())
    seconds = time.perf_counter() - started

    # The viewer's data: generate.py --json's record of this one sample, plus what the page needs to draw it.
    data = generate.to_json(result, tokenizer, checkpoint, args, seconds)
    sample = data["samples"][0]
    sample["kinds"] = position_kinds(prompt, tokenizer)
    data.update(model=os.path.basename(os.path.normpath(checkpoint)), prefix=args.prefix, template=args.text,
                max_length=max_length, frame_ms=args.frame_ms, settings=settings_line(data))

    steps = [step_pieces(s["tokens"], s["masked"], s["revealed"], sample["kinds"]) for s in sample["steps"]]
    frames = render_frames(steps, header=settings_line(data), style=Style(width=args.width))

    gif_path = os.path.join(args.output, GIF_NAME)
    data_path = os.path.join(args.output, DATA_NAME)
    try:
        os.makedirs(args.output, exist_ok=True)
        frame_paths = write_frames(frames, os.path.join(args.output, FRAMES_DIR))
        save_gif(frames, gif_path, frame_ms=args.frame_ms)
        with open(data_path, "w") as f:
            # A script, not a .json fetched by the page: browsers refuse fetch() on file:// pages,
            # but load <script src> from the same folder.
            f.write("window.ANIMATION_DATA = " + json.dumps(data) + ";\n")
    except OSError as err:  # a folder that cannot be written
        raise ValueError(f"cannot write the animation into --output {args.output!r}: {err.strerror or err}") from None

    width, height = frames[0].size
    print(f"model: {checkpoint} ({why})")
    print(f"{result.forward_passes} forward passes ({settings_line(data)}), {seconds:.2f} s")
    if args.show_steps:
        for k, step in enumerate(result.trace):
            print(f"  step {k:>3}: {generate.render(tokenizer, step.ids[0].tolist(), step.masked[0].tolist())}")
    print(f"text: {sample['text']}")
    print(f"wrote {gif_path} ({len(frames)} frames, {width}x{height}, {args.frame_ms} ms each, "
          f"{os.path.getsize(gif_path) / 1024:.0f} KB)")
    print(f"wrote {os.path.dirname(frame_paths[0])}/frame_000.png ... {os.path.basename(frame_paths[-1])}")
    print(f"wrote {data_path}: open view_animation.html from the same folder, or load this file with its "
          f"'Load data file' button")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (ValueError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
