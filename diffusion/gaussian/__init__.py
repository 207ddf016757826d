"""Gaussian diffusion, for tensors of any shape: token embeddings (B, L, d) and images (B, C, H, W).

    process.py   THE Gaussian process: q_sample, the conversions between epsilon, x0 and v, the
                 DDPM posterior step, the DDIM step with eta, the classifier-free-guidance mix
    model.py     the denoiser of Gaussian text: a PreTrainedModel over learned token embeddings,
                 registered with AutoConfig / AutoModel when this package is imported

Its alpha_bar comes from diffusion/schedules.py and nowhere else.
"""

from diffusion.gaussian import model  # noqa: F401  (registers the model with AutoConfig / AutoModel)
