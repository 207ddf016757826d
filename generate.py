"""Generate text with a masked diffusion model: start from masks, unmask over N steps.

    python generate.py --checkpoint results/final-model
    python generate.py --prefix "Machine learning is" --max-length 32 --steps 20 --schedule cosine
    python generate.py --sampling topk --k 50 --temperature 0.7 --num-samples 5
    python generate.py --sampling nucleus --p 0.9
    python generate.py --text "dog: a [MASK] [MASK] of the genus Canis." --show-steps
    python generate.py --threshold 0.9 --json            # parallel decoding, machine-readable trace

The decoder lives in diffusion/unmasking.py, the schedules in diffusion/schedules.py, the token
sampling in diffusion/sampling.py. Every flag: ``python generate.py --help``.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.disable_progress_bar()  # "Loading weights" bars: noise for models that load in a blink

from config import BUNDLED_MASKED_MODEL, TRAINED_MODEL, GenerateArguments, parse_generate_args  # noqa: E402
from diffusion.modeling import (  # noqa: E402
    ModelLoadError,
    load_diffusion_config,
    load_model,
    load_tokenizer,
    pick_device,
    resolve_checkpoint,
)
from diffusion.unmasking import DecodeResult, build_prompt, decode, resolve_block_length, token_strings  # noqa: E402

DEFAULT_MAX_LENGTH = 64


def load_generator_model(args: GenerateArguments):
    """-> (model, tokenizer, checkpoint, why, max_length). ``why`` says which model is used and why.

    Sets ``args.block_length`` to the model's default when none was given (8 for a model trained
    with --eos-padding, see diffusion/unmasking.py), so every script built on it decodes alike.
    """
    checkpoint, why = resolve_checkpoint(args.checkpoint, TRAINED_MODEL, BUNDLED_MASKED_MODEL)
    model = load_model("masked", checkpoint)
    tokenizer = load_tokenizer(checkpoint)
    if tokenizer.mask_token_id is None:
        raise ModelLoadError(f"the tokenizer of {checkpoint!r} has no mask token")
    positions = getattr(model.config, "max_position_embeddings", None)
    usable = positions - 2 if positions and model.config.model_type in ("roberta", "xlm-roberta") else positions
    diffusion_config = load_diffusion_config(checkpoint)
    max_length = args.max_length or diffusion_config.get("max_length") or min(DEFAULT_MAX_LENGTH, usable or 512)
    if usable and max_length > usable:
        raise ValueError(f"--max-length {max_length} is longer than the {usable} positions {checkpoint!r} was built for")
    requested, args.block_length = args.block_length, resolve_block_length(args.block_length, diffusion_config)
    if requested is None and args.block_length:
        why += f"; trained with --eos-padding, so blocks of {args.block_length} (--block-length 0: none)"
    return model, tokenizer, checkpoint, why, max_length


def render(tokenizer, ids: list[int], masked: list[bool]) -> str:
    """One sequence as text with [MASK] where a position is still masked (for --show-steps)."""
    pieces = token_strings(tokenizer, ids)
    out = []
    for piece, is_masked, token in zip(pieces, masked, ids, strict=True):
        if is_masked:
            out.append(" [MASK]")
        elif token not in (tokenizer.bos_token_id, tokenizer.pad_token_id):
            out.append(piece)
    return "".join(out).strip()


def to_json(result: DecodeResult, tokenizer, checkpoint: str, args: GenerateArguments, seconds: float) -> dict:
    samples = []
    for b, text in enumerate(result.texts):
        steps = []
        for k, step in enumerate(result.trace):
            ids = step.ids[b].tolist()
            steps.append({
                "step": k,
                "ids": ids,
                "tokens": token_strings(tokenizer, ids),
                "masked": step.masked[b].tolist(),
                "revealed": step.revealed[b].tolist(),
                "probs": [round(p, 4) for p in step.probs[b].tolist()],
            })
        samples.append({"text": text, "steps": steps})
    options = vars(args.decode_options())
    return {"checkpoint": checkpoint, "options": options, "forward_passes": result.forward_passes,
            "seconds": round(seconds, 3), "mask_token": tokenizer.mask_token, "samples": samples}


def run(argv: list[str]) -> int:
    args = parse_generate_args(argv)
    model, tokenizer, checkpoint, why, max_length = load_generator_model(args)
    model.to(pick_device(args.device))
    prompt = build_prompt(tokenizer, prefix=args.prefix, text=args.text, max_length=max_length,
                          num_samples=args.num_samples)
    options = args.decode_options()
    started = time.perf_counter()
    result = decode(model, tokenizer, prompt, options)
    seconds = time.perf_counter() - started

    if args.json:
        print(json.dumps(to_json(result, tokenizer, checkpoint, args, seconds)))
        return 0
    print(f"model: {checkpoint} ({why})")
    n_generated = int(prompt.generate[0].sum())
    print(f"{n_generated} positions x {args.num_samples} samples, {options.steps} steps ({options.schedule}), "
          f"{options.sampling} sampling, {options.remasking} remasking"
          f"{', refine' if options.refine else ''}{f', threshold {options.threshold}' if options.threshold else ''}"
          f"{f', blocks of {options.block_length}' if options.block_length else ''}: "
          f"{result.forward_passes} forward passes, {seconds:.2f} s")
    if args.show_steps:
        for b in range(args.num_samples):
            print(f"\nsample {b + 1}:")
            for k, step in enumerate(result.trace):
                line = render(tokenizer, step.ids[b].tolist(), step.masked[b].tolist())
                print(f"  step {k:>3}: {line}")
    print()
    for b, text in enumerate(result.texts):
        print(f"[{b + 1}] {text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (ValueError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
