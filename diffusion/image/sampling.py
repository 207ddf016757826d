"""Sampling images: DDPM or DDIM on the shared Gaussian process, with classifier-free guidance.

    options = ImageSamplingOptions(sampler="ddim", ddim_steps=10, guidance=3.0)
    result = sample_images(model, process, labels, options, seed=0)   # labels (B,) or None
    result.images                      # (B, C, H, W) in [-1, 1]
    result.trace                       # per step: k, x_k and the predicted x_0 (for the GIF)

At every visited step k the model predicts the noise twice, with the label and with the null
label, and the two are mixed (Ho & Salimans 2022; diffusion/gaussian/process.py, ``guided``):

    eps = eps(x_k, k, null) + w (eps(x_k, k, y) - eps(x_k, k, null))

w = 0 is the unconditional model, w = 1 the conditional one, w > 1 pushes further towards the
label. The predicted x_0 = (x_k - sqrt(1 - alpha_bar[k]) eps) / sqrt(alpha_bar[k]) is clipped to
[-1, 1] (the range of the data, as DDPM's sampler does) and the step goes through the same
``ddpm_step`` / ``ddim_step`` as the Gaussian text sampler.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from diffusion.gaussian.process import GaussianProcess, guided
from diffusion.image.captions import NULL_CAPTION

SAMPLERS = ("ddpm", "ddim")


@dataclass
class ImageSamplingOptions:
    sampler: str = field(default="ddim", metadata={"help": "ddpm (every trained step) or ddim (--ddim-steps of them)."})
    ddim_steps: int | None = field(default=None, metadata={
        "help": "Steps of the DDIM sampler. Default: 50, or all the trained steps if fewer."})
    eta: float = field(default=0.0, metadata={"help": "DDIM noise: 0 deterministic, 1 as DDPM."})
    guidance: float = field(default=3.0, metadata={
        "help": "Classifier-free guidance w: 0 unconditional, 1 conditional, more pushes towards the label."})

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"--eta must lie in [0, 1], got {self.eta}")
        if self.guidance < 0:
            raise ValueError(f"--guidance must be at least 0 (0: unconditional), got {self.guidance}")
        if self.ddim_steps is not None and self.ddim_steps < 1:
            raise ValueError(f"--ddim-steps must be at least 1, got {self.ddim_steps}")

    def steps_for(self, process: GaussianProcess) -> int:
        return self.ddim_steps if self.ddim_steps is not None else min(50, process.num_steps)

    def schedule_of_steps(self, process: GaussianProcess) -> list[tuple[int, int]]:
        """[(k, k_prev), ...] from k = N down to k_prev = 0."""
        if self.sampler == "ddpm":
            return [(k, k - 1) for k in range(process.num_steps, 0, -1)]
        ks = process.ddim_steps(self.steps_for(process))
        return list(zip(ks, ks[1:] + [0], strict=True))

    def describe(self, process: GaussianProcess) -> str:
        how = (f"DDPM, {process.num_steps} steps" if self.sampler == "ddpm" else
               f"DDIM, {self.steps_for(process)} of {process.num_steps} steps, eta {self.eta:g}")
        return f"{how}, guidance {self.guidance:g}"



@dataclass
class ImageStep:
    step: int  # k, the step the model was called at
    x_t: torch.Tensor  # (B, C, H, W) the noisy images it saw
    x0_hat: torch.Tensor  # (B, C, H, W) its estimate of the clean images, clipped to [-1, 1]
    seconds: float


@dataclass
class ImageResult:
    images: torch.Tensor  # (B, C, H, W) in [-1, 1]
    labels: torch.Tensor | None  # (B,) the requested labels
    trace: list[ImageStep]
    forward_passes: int


def predict_noise(model, x_t: torch.Tensor, steps: torch.Tensor, labels: torch.Tensor | None,
                  guidance: float, text=None) -> torch.Tensor:
    """The guided noise estimate (B, C, H, W); one batched call holds both branches when they are needed.

    ``text``: for a text-conditioned model, ((states, mask) of the captions, (states, mask) of the null caption).
    """
    if text is not None:
        (states, mask), (null_states, null_mask) = text
        if guidance == 0:
            return model(x_t, steps, None, null_states, null_mask)
        if guidance == 1:
            return model(x_t, steps, None, states, mask)
        both = model(torch.cat([x_t, x_t]), torch.cat([steps, steps]), None, torch.cat([states, null_states]),
                     torch.cat([mask, null_mask]))
        conditional, unconditional = both.chunk(2)
        return guided(conditional, unconditional, guidance)
    if labels is None or model.config.num_classes == 0 or guidance == 0:
        return model(x_t, steps, None)  # the unconditional branch only
    if guidance == 1:
        return model(x_t, steps, labels)
    null = torch.full_like(labels, model.config.null_label)
    both = model(torch.cat([x_t, x_t]), torch.cat([steps, steps]), torch.cat([labels, null]))
    conditional, unconditional = both.chunk(2)
    return guided(conditional, unconditional, guidance)


@torch.no_grad()
def sample_images(model, process: GaussianProcess, labels: torch.Tensor | None, options: ImageSamplingOptions,
                  num_samples: int | None = None, seed: int | None = 0, record_trace: bool = False,
                  captions: list[str] | None = None, bank=None) -> ImageResult:
    """Denoise pure noise into images; ``labels`` (B,) or None (then ``num_samples`` unconditional images).

    A text-conditioned model takes ``captions`` (B,) and the ``bank`` that encodes them
    (diffusion/image/captions.py); guidance then mixes with the null caption ''.
    """
    device = next(model.parameters()).device
    config = model.config
    text = None
    if captions is not None:
        text = (bank.encode(captions, device), bank.encode([NULL_CAPTION] * len(captions), device))
        labels = None
    batch = len(captions) if captions is not None else labels.shape[0] if labels is not None else num_samples
    if batch is None:
        raise ValueError("sample_images needs labels or num_samples")
    shape = (batch, config.in_channels, config.image_size, config.image_size)
    generator = torch.Generator(device="cpu")
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()

    def noise() -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device)

    was_training = model.training
    model.eval()
    labels = labels.to(device) if labels is not None else None
    x = noise()  # x_N
    trace = []
    started = time.perf_counter()
    steps = options.schedule_of_steps(process)
    for k, k_prev in steps:
        ks = torch.full((batch,), k, dtype=torch.long, device=device)
        eps = predict_noise(model, x, ks, labels, options.guidance, text)
        x0_hat = process.x0_from_eps(x, ks, eps).clamp(-1, 1)
        if record_trace:
            trace.append(ImageStep(k, x.cpu(), x0_hat.cpu(), time.perf_counter() - started))
        if options.sampler == "ddpm":
            x = process.ddpm_step(x, k, x0_hat, noise())
        else:
            x = process.ddim_step(x, k, k_prev, x0_hat, options.eta, noise() if options.eta > 0 else None)
    model.train(was_training)
    return ImageResult(x.clamp(-1, 1).cpu(), labels.cpu() if labels is not None else None, trace, len(steps))
