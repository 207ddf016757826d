"""What the scripts that sample a Gaussian checkpoint share: loading it with its process, the trace as data.

    generator = load_gaussian_generator("models/gaussian-base")
    prompt = gaussian_prompt(generator.tokenizer, sample_lengths(generator.config, None, 3))
    result = sample(generator.model, generator.process, generator.tokenizer, prompt, options, seed=0)
    data = gaussian_trace_json(result, generator, options, seconds)

generate.py prints it, visualize_generation.py draws it, compare_models.py races it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from diffusion.checkpoint import (
    DiffusionConfig,
    ModelLoadError,
    check_length,
    load_checkpoint,
    load_saved_ema,
    resolve_model,
)
from diffusion.gaussian.process import GaussianProcess
from diffusion.gaussian.sampling import (
    MASK_PLACEHOLDER,
    GaussianPrompt,
    GaussianResult,
    GaussianSamplingOptions,
    gaussian_prompt,
    sample_lengths,
)
from diffusion.text.tokens import token_strings, unknown_words


@dataclass
class GaussianGenerator:
    model: object
    tokenizer: object
    checkpoint: str
    why: str  # printed as "model: DIR (why)"
    config: DiffusionConfig | None
    process: GaussianProcess


def load_gaussian_generator(given: str | None, flag: str = "--checkpoint") -> GaussianGenerator:
    """The Gaussian model named by ``flag`` (else results-gaussian/final-model, else the bundled one), with its process.

    A checkpoint-N folder of a ``--use-ema`` run samples from its average (``ema.safetensors``), as
    the final model, which holds the average as its weights, does.
    """
    checkpoint, why = resolve_model(given, flag, "gaussian")
    model, tokenizer, config = load_checkpoint(checkpoint, "gaussian", flag)
    if config is None or not config.diffusion_steps or not config.schedule:
        raise ModelLoadError(f"{checkpoint!r} has no diffusion_config.json with the schedule and steps it was "
                             f"trained with; a Gaussian model samples only with its own process")
    if load_saved_ema(model, checkpoint):
        why += "; the EMA of its weights"
    return GaussianGenerator(model, tokenizer, checkpoint, why, config,
                             GaussianProcess(config.schedule, config.diffusion_steps))


MASKED_ONLY_HINT = ("a Gaussian one samples with --sampler ddpm|ddim, --ddim-steps, --eta, --clamp, "
                    "--clamp-temperature")


def prepare_sampling(checkpoint: str | None, options: GaussianSamplingOptions, foreign: list[str],
                     max_length: int | None, prefix: str | None, text: str | None, num_samples: int,
                     seed: int | None) -> tuple[GaussianGenerator, GaussianPrompt]:
    """What generate.py and visualize_generation.py do before sampling a Gaussian checkpoint, every check first.

    ``foreign``: the masked decoder's flags that were typed (an error: they do not apply here).
    Returns the generator (its model on the CPU) and the prompt: ``num_samples`` rows of
    ``max_length`` positions, or of lengths drawn from the training lengths.
    """
    if foreign:
        raise ValueError(f"{', '.join(foreign)} only {'applies' if len(foreign) == 1 else 'apply'} to a masked "
                         f"checkpoint; {MASKED_ONLY_HINT}")
    generator = load_gaussian_generator(checkpoint)
    if options.sampler == "ddim":
        generator.process.ddim_steps(options.steps_for(generator.process))  # more steps than trained: one line
    lengths = sample_lengths(generator.config, max_length, num_samples, seed=seed)
    prompt = gaussian_prompt(generator.tokenizer, lengths, prefix=prefix, text=text)
    check_sample_length(generator, prompt.input_ids.shape[1])
    given = [prefix or ""] + (text.split(MASK_PLACEHOLDER) if text else [])
    unknown = list(dict.fromkeys(w for piece in given for w in unknown_words(generator.tokenizer, piece)))
    if unknown:  # a word-level vocabulary: said once, not lost silently from the printed text
        print(f"note: not in {generator.checkpoint}'s vocabulary, so given as <unk> and left out of the text: "
              f"{', '.join(unknown)}", file=sys.stderr)
    return generator, prompt


def check_sample_length(generator: GaussianGenerator, length: int) -> None:
    """One line when ``length`` positions do not fit the model."""
    try:
        check_length(length, generator.model, generator.checkpoint)
    except ValueError as err:
        raise ValueError(str(err)) from None


def gaussian_trace_json(result: GaussianResult, generator: GaussianGenerator, options: GaussianSamplingOptions,
                        seconds: float, seed: int | None) -> dict:
    """generate.py --json's record of a Gaussian sampling: per sample its text and, per model call, the
    diffusion step, every position's nearest token and its rounding probability."""
    tokenizer, process = generator.tokenizer, generator.process
    samples = []
    for b, text in enumerate(result.texts):
        n = int(result.attention_mask[b].sum())
        steps = []
        for step in result.trace:
            ids = step.ids[b, :n].tolist()
            steps.append({"step": step.step, "t": round(step.step / process.num_steps, 4),
                          "alpha_bar": round(float(process.alpha_bar[step.step]), 6),
                          "ids": ids, "tokens": token_strings(tokenizer, ids),
                          "probs": [round(p, 4) for p in step.probs[b, :n].tolist()]})
        samples.append({"text": text, "generate": result.generate[b, :n].tolist(),
                        "ids": result.ids[b, :n].tolist(), "steps": steps})
    return {"checkpoint": generator.checkpoint, "objective": "gaussian",
            "options": {**vars(options), "ddim_steps": options.steps_for(process), "seed": seed,
                        "schedule": process.schedule,
                        "diffusion_steps": process.num_steps},
            "settings": options.describe(process), "forward_passes": result.forward_passes,
            "seconds": round(seconds, 3), "eos_token": tokenizer.eos_token, "samples": samples}
