"""Gaussian diffusion, for tensors of any shape: token embeddings (B, L, d) and images (B, C, H, W).

    process.py   THE Gaussian process: q_sample, the conversions between epsilon, x0 and v, the
                 DDPM posterior step, the DDIM step with eta, the classifier-free-guidance mix

Its alpha_bar comes from diffusion/schedules.py and nowhere else.
"""
