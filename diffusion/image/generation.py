"""What the scripts that sample an image checkpoint share: loading it with its process, choosing labels.

    generator = load_image_generator("results-image/final-model")
    labels = requested_labels(generator, digit="7", per_class=10)       # (10,) all sevens
    result = sample_images(generator.model, generator.process, labels, options)

generate.py writes the grid and the single PNGs, visualize_generation.py the denoising GIF.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from diffusion.checkpoint import (
    DiffusionConfig,
    ModelLoadError,
    load_diffusion_config,
    load_model,
    load_saved_ema,
    resolve_model,
)
from diffusion.gaussian.process import GaussianProcess


@dataclass
class ImageSampleArguments:
    """The flags of an image checkpoint in generate.py and visualize_generation.py (with --sampler, --ddim-steps, --eta)."""

    digit: str | None = field(
        default=None,
        metadata={"help": "Image checkpoints: the class to draw, by id (7) or name (seven); 'all' or unset: every class."},
    )
    guidance: float = field(
        default=3.0,
        metadata={"help": "Image checkpoints: classifier-free guidance w (0 unconditional, 1 conditional, more: "
                  "further towards the class)."},
    )
    output_dir: str = field(
        default="samples", metadata={"help": "Image checkpoints: where generate.py writes grid.png and one PNG per sample."})
    model_path: str | None = field(default=None, metadata={"help": "Image checkpoints: the same as --checkpoint "
                                                             "(the flag of seed 002's sampling.py)."})
    model_type: str | None = field(default=None, metadata={"help": "Image checkpoints: UNet or DiT, checked against "
                                                            "the checkpoint's own (it knows its type)."})

    def __post_init__(self) -> None:
        if self.guidance < 0:
            raise ValueError(f"--guidance must be at least 0 (0: unconditional), got {self.guidance}")
        if self.model_type is not None and self.model_type not in ("UNet", "DiT"):
            raise ValueError(f"--model-type must be UNet or DiT, got {self.model_type!r}")

    def checkpoint(self, given: str | None) -> str | None:
        """--checkpoint, or seed 002's --model-path; both at once is one line."""
        if self.model_path is not None and given is not None and self.model_path != given:
            raise ValueError("give --checkpoint or --model-path (the same flag), not both")
        return self.model_path or given

    def check_type(self, generator: ImageGenerator) -> None:
        built = type(generator.model).__name__.removesuffix("Model")
        if self.model_type is not None and self.model_type != built:
            raise ValueError(f"--model-type {self.model_type}: {generator.checkpoint!r} holds a {built}")


@dataclass
class ImageGenerator:
    model: object
    checkpoint: str
    why: str  # printed as "model: DIR (why)"
    config: DiffusionConfig
    process: GaussianProcess
    bank: object = None  # a CaptionBank (diffusion/image/captions.py) for a --condition text model

    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names or [])


def load_image_generator(given: str | None, flag: str = "--checkpoint") -> ImageGenerator:
    """The image model named by ``flag`` (else results-image/final-model), with its Gaussian process and its EMA."""
    checkpoint, why = resolve_model(given, flag, "image")
    config = load_diffusion_config(checkpoint)
    if config is None or config.objective != "image" or not config.schedule or not config.diffusion_steps:
        raise ModelLoadError(f"{checkpoint!r} has no diffusion_config.json of an image model with the schedule and "
                             f"steps it was trained with; an image model samples only with its own process")
    model = load_model("image", checkpoint)
    if load_saved_ema(model, checkpoint):
        why += "; the EMA of its weights"
    bank = None
    if config.condition == "text":
        from diffusion.image.captions import CaptionBank, load_text_encoder

        bank = CaptionBank(*load_text_encoder(config.text_encoder or "models/masked-base"))
    return ImageGenerator(model.eval(), checkpoint, why, config, GaussianProcess(config.schedule, config.diffusion_steps),
                          bank)


def requested_captions(generator: ImageGenerator, prompt: str | None, digit: str | None,
                       per_class: int) -> list[str] | None:
    """The captions of a text-conditioned model: ``prompt`` repeated, else "a handwritten <digit>" per digit asked for.

    None for a label-conditioned model (a --prompt there is one line)."""
    from diffusion.image.captions import DIGIT_WORDS, TRAIN_TEMPLATES, caption

    if generator.bank is None:
        if prompt is not None:
            raise ValueError(f"--prompt: {generator.checkpoint!r} is conditioned on class labels, not text; "
                             f"use --digit (or train with --condition text)")
        return None
    if prompt is not None:
        if digit is not None:
            raise ValueError("give --prompt or --digit, not both: the caption says which digit")
        return [prompt] * per_class
    if digit in (None, "all"):
        wanted = range(10)
    elif digit in DIGIT_WORDS or (digit.isdigit() and int(digit) < 10):
        wanted = [DIGIT_WORDS.index(digit) if digit in DIGIT_WORDS else int(digit)]
    else:
        raise ValueError(f"--digit {digit}: give 0..9, a name (seven), 'all', or a --prompt")
    return [caption(TRAIN_TEMPLATES[0], label) for label in wanted for _ in range(per_class)]


def requested_labels(generator: ImageGenerator, digit: str | None, per_class: int) -> torch.Tensor | None:
    """(B,) labels: ``per_class`` of the named class, or of every class in order; None for an unconditional model."""
    names = generator.class_names
    classes = generator.model.config.num_classes
    if classes == 0:
        if digit not in (None, "all"):
            raise ValueError(f"--digit {digit}: {generator.checkpoint!r} is an unconditional model (trained without labels)")
        return None
    if digit in (None, "all"):
        return torch.arange(classes).repeat_interleave(per_class)
    if digit in names:
        label = names.index(digit)
    else:
        try:
            label = int(digit)
        except ValueError:
            label = -1
        if not 0 <= label < classes:
            shown = f"0..{classes - 1}" + (f" or a name ({', '.join(names[:3])}, ...)" if names else "")
            raise ValueError(f"--digit {digit}: {generator.checkpoint!r} knows the classes {shown}, or 'all'")
    return torch.full((per_class,), label, dtype=torch.long)


def label_name(generator: ImageGenerator, label: int | None) -> str:
    names = generator.class_names
    if label is None:
        return "sample"
    return f"{label}-{names[label]}" if label < len(names) and names[label] != str(label) else str(label)


def refuse_text_flags(given: set[str], text_only: set[str]) -> None:
    """One line naming the text-checkpoint flags in ``given`` (those of ``text_only``) given to an image checkpoint."""
    flags = sorted(given & text_only)
    if flags:
        raise ValueError(f"{', '.join(flags)} only {'applies' if len(flags) == 1 else 'apply'} to text checkpoints; "
                         f"an image model samples with --digit, --prompt, --guidance, --sampler, --ddim-steps, --eta")


def sampling_options(gaussian, images: ImageSampleArguments):
    """generate.py's --sampler/--ddim-steps/--eta (GaussianSamplingOptions) and --guidance, as ImageSamplingOptions."""
    from diffusion.image.sampling import ImageSamplingOptions

    return ImageSamplingOptions(sampler=gaussian.sampler, ddim_steps=gaussian.ddim_steps, eta=gaussian.eta,
                                guidance=images.guidance)


def requested(generator: ImageGenerator, prompt: str | None, digit: str | None, per_class: int):
    """(labels or None, captions or None): what to draw, for a label- or a text-conditioned model."""
    captions = requested_captions(generator, prompt, digit, per_class)
    return (requested_labels(generator, digit, per_class) if captions is None else None), captions
