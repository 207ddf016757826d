"""What the scripts that unmask text share: their prompt flags, loading the generator, the trace as data.

    args = GenerationArguments(prefix="dog:")               # parsed from the command line by a script
    generator = load_generator(args.checkpoint, args.max_length, options.block_length)
    options = generator.resolve(options)                    # the model's block length and cache
    prompt = build_prompt(generator.tokenizer, prefix=args.prefix, max_length=generator.max_length)
    result = decode(generator.model, generator.tokenizer, prompt, options)
    data = trace_json(result, generator.tokenizer, generator.checkpoint, options, seconds)

generate.py prints it, visualize_generation.py draws it, compare_models.py races it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from diffusion.checkpoint import DiffusionConfig, ModelLoadError, check_length, load_checkpoint, resolve_model, usable_length
from diffusion.cli import check_text
from diffusion.masked.cache import resolve_cache
from diffusion.masked.unmasking import DecodeOptions, DecodeResult, resolve_block_length
from diffusion.paths import TRAINED_MODEL
from diffusion.text.tokens import token_strings

DEFAULT_MAX_LENGTH = 64  # for a model whose diffusion_config.json does not say (a hub model)


@dataclass
class GenerationArguments:
    """The model and prompt flags of generate.py and visualize_generation.py (decoding: DecodeOptions)."""

    checkpoint: str | None = field(
        default=None,
        metadata={"help": f"Model folder or hub id. Default: {TRAINED_MODEL} if it exists, else the bundled model."},
    )
    prefix: str | None = field(default=None, metadata={"help": "Fixed text to continue (kept unchanged)."})
    prompt: str | None = field(default=None, metadata={"help": "Same as --prefix."})
    text: str | None = field(
        default=None,
        metadata={"help": "Infill template: each [MASK] is one token to generate, e.g. 'The [MASK] sat on the [MASK].'"},
    )
    max_length: int | None = field(
        default=None, metadata={"help": "Tokens per sequence incl. <s> and </s>. Default: the length the model was trained at."}
    )
    show_steps: bool = field(default=False, metadata={"help": "Print every step, with the masks still visible."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, mps... Default: cuda if available."})

    def __post_init__(self) -> None:
        for flag, value in (("--prefix", self.prefix), ("--prompt", self.prompt), ("--text", self.text)):
            check_text(flag, value)
        if self.prompt is not None:
            if self.prefix is not None and self.prefix != self.prompt:
                raise ValueError("--prompt and --prefix are the same flag; give one")
            self.prefix = self.prompt
        if self.prefix is not None and self.text is not None:
            raise ValueError("give either --prefix (continue a prompt) or --text (fill a template), not both")
        if self.max_length is not None and self.max_length < 3:
            raise ValueError(f"--max-length must be at least 3, got {self.max_length}")


@dataclass
class Generator:
    """A masked model ready to unmask, and what its checkpoint says about decoding it."""

    model: object
    tokenizer: object
    checkpoint: str
    why: str  # which model, and why this one: printed as "model: DIR (why)"
    max_length: int  # tokens per sequence, <s> and </s> included
    block_length: int | None  # the --block-length to use (the model's default when none was asked for)
    config: DiffusionConfig | None

    def resolve(self, options: DecodeOptions) -> DecodeOptions:
        """``options`` with this model's defaults in: its block length, and the cache for those blocks.

        A --cache the model or the blocks cannot take is a ValueError of one line.
        """
        options = dataclasses.replace(options, block_length=self.block_length)
        return dataclasses.replace(options, cache=resolve_cache(options.cache, self.block_length, self.model))


def load_generator(given: str | None, max_length: int | None = None, block_length: int | None = None,
                   flag: str = "--checkpoint") -> Generator:
    """The masked model named by ``flag`` (else results/final-model, else the bundled one), checked.

    ``max_length`` defaults to the length the model was trained at; one that does not fit the
    model's positions is one line (diffusion/checkpoint.py's ``usable_length``).  ``block_length``
    None becomes the model's default: blocks of 8 after --eos-padding (diffusion/masked/unmasking.py).
    """
    checkpoint, why = resolve_model(given, flag, "masked")
    model, tokenizer, config = load_checkpoint(checkpoint, "masked", flag)
    if tokenizer.mask_token_id is None:
        raise ModelLoadError(f"the tokenizer of {checkpoint!r} has no mask token")
    usable = usable_length(model)
    trained_length = config.max_length if config is not None else None
    max_length = max_length or trained_length or min(DEFAULT_MAX_LENGTH, usable or 512)
    check_length(max_length, model, checkpoint)
    resolved = resolve_block_length(block_length, config)
    if block_length is None and resolved:
        why += f"; trained with --eos-padding, so blocks of {resolved} (--block-length 0: none)"
    return Generator(model, tokenizer, checkpoint, why, max_length, resolved, config)


def masked_line(tokenizer, ids: list[int], masked: list[bool]) -> str:
    """One sequence as text with [MASK] where a position is still masked (for --show-steps)."""
    pieces = token_strings(tokenizer, ids)
    out = []
    for piece, is_masked, token in zip(pieces, masked, ids, strict=True):
        if is_masked:
            out.append(" [MASK]")
        elif token not in (tokenizer.bos_token_id, tokenizer.pad_token_id):
            out.append(piece)
    return "".join(out).strip()


def trace_json(result: DecodeResult, tokenizer, checkpoint: str, options: DecodeOptions, seconds: float) -> dict:
    """generate.py --json's record: the options, and per sample its text and every step of the trace."""
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
    n_positions = int(result.generate.sum(dim=1).max()) if result.generate.any() else 0
    # The values in effect: a default --steps / --threshold resolved to what the decoder used.
    effective = {**vars(options), "steps": options.total_steps(n_positions), "threshold": options.commit_threshold}
    return {"checkpoint": checkpoint, "options": effective, "forward_passes": result.forward_passes,
            "positions_computed": result.positions_computed,
            "seconds": round(seconds, 3), "mask_token": tokenizer.mask_token, "eos_token": tokenizer.eos_token,
            "samples": samples}
