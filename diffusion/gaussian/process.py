"""The Gaussian forward and reverse process, once, for tensors of any shape.

    process = GaussianProcess("cosine", num_steps=1000)
    x_t = process.q_sample(x0, k, noise)                      # k: (B,) long steps in 1..N
    x0_hat = process.x0_from_eps(x_t, k, eps_hat)             # whatever the model predicts
    x_prev = process.ddpm_step(x_t, k, x0_hat, noise)         # x_{k-1}
    x_prev = process.ddim_step(x_t, k, k_prev, x0_hat, eta=0.0)

Notation (Ho et al. 2020, "DDPM"; Song et al. 2021, "DDIM"), with the schedule core's continuous
time: the N discrete steps are k = 1..N at times t_k = k / N, and

    alpha_bar[k] = alpha_bar(t_k)   from diffusion/schedules.py, as the product of (1 - beta_i), i <= k
    beta[k]      = 1 - alpha_bar[k] / alpha_bar[k-1]   (schedules.betas_for_alpha_bar, clipped at 0.999)
    alpha_bar[0] = 1                the clean data x_0

    q(x_k | x_0) = N(sqrt(alpha_bar[k]) x_0, (1 - alpha_bar[k]) I)

Index map to diffusers (the test oracle, tests/test_gaussian.py): diffusers numbers its steps
0..N-1 and ``alphas_cumprod[i]`` is the value *after* step i, so its index i is our step k = i + 1
and its timestep 0 is our k = 1.  Its "previous timestep" -1 (``final_alpha_cumprod`` = 1 with
``set_alpha_to_one``) is our k = 0, the clean data.

Everything is computed in float64 from the schedule and cast to the input's dtype.  Tensors of
per-example steps (B,) broadcast over any trailing shape.  Nothing here sees a model: the model
is a plain callable whose prediction (epsilon, x0 or v) is converted with the functions below.
"""

from __future__ import annotations

import torch

from diffusion import schedules

PREDICTIONS = ("epsilon", "x0", "v")  # what a denoiser may be trained to output


class GaussianProcess:
    """Coefficients of a schedule discretised into ``num_steps`` steps, and the steps of both samplers."""

    def __init__(self, schedule: str, num_steps: int, max_beta: float = 0.999):
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.schedule, self.num_steps = schedule, num_steps
        betas = schedules.betas_for_alpha_bar(schedule, num_steps, max_beta)  # (N,) float64, beta_1 .. beta_N
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])  # (N+1,): index k, beta[0] = 0
        self.alpha_bar = torch.cumprod(1.0 - self.betas, dim=0)  # (N+1,): alpha_bar[0] = 1

    # ----------------------------------------------------------------- coefficients
    def _at(self, values: torch.Tensor, k, like: torch.Tensor) -> torch.Tensor:
        """values[k] shaped to broadcast against ``like`` (B, ...), in its dtype and device."""
        k = torch.as_tensor(k, dtype=torch.long)
        if k.min() < 0 or k.max() > self.num_steps:
            raise ValueError(f"steps must lie in 0..{self.num_steps}, got {k.min().item()}..{k.max().item()}")
        v = values[k]  # () or (B,)
        if v.dim() == 1:
            v = v.view(-1, *([1] * (like.dim() - 1)))
        return v.to(dtype=like.dtype, device=like.device)

    def check_steps(self, k) -> None:
        """A step outside 1..N is a ValueError naming the range."""
        k = torch.as_tensor(k)
        if k.numel() and (k.min() < 1 or k.max() > self.num_steps):
            raise ValueError(f"steps must lie in 1..{self.num_steps}, got {k.min().item()}..{k.max().item()}")

    # ----------------------------------------------------------------- forward process
    def q_sample(self, x0: torch.Tensor, k, noise: torch.Tensor) -> torch.Tensor:
        """x_k = sqrt(alpha_bar[k]) x_0 + sqrt(1 - alpha_bar[k]) noise  (DDPM eq. 4)."""
        a = self._at(self.alpha_bar, k, x0)
        return a.sqrt() * x0 + (1.0 - a).sqrt() * noise

    # ----------------------------------------------------------------- what a model predicts
    def x0_from_eps(self, x_t: torch.Tensor, k, eps: torch.Tensor) -> torch.Tensor:
        a = self._at(self.alpha_bar, k, x_t)
        return (x_t - (1.0 - a).sqrt() * eps) / a.sqrt()

    def eps_from_x0(self, x_t: torch.Tensor, k, x0: torch.Tensor) -> torch.Tensor:
        a = self._at(self.alpha_bar, k, x_t)
        return (x_t - a.sqrt() * x0) / (1.0 - a).sqrt()

    def v_from(self, x0: torch.Tensor, k, eps: torch.Tensor) -> torch.Tensor:
        """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022, "Progressive distillation")."""
        a = self._at(self.alpha_bar, k, x0)
        return a.sqrt() * eps - (1.0 - a).sqrt() * x0

    def x0_from_v(self, x_t: torch.Tensor, k, v: torch.Tensor) -> torch.Tensor:
        a = self._at(self.alpha_bar, k, x_t)
        return a.sqrt() * x_t - (1.0 - a).sqrt() * v

    def x0_from(self, prediction: str, x_t: torch.Tensor, k, output: torch.Tensor) -> torch.Tensor:
        """The model's output read as ``prediction`` (epsilon | x0 | v), turned into x0."""
        if prediction == "epsilon":
            return self.x0_from_eps(x_t, k, output)
        if prediction == "v":
            return self.x0_from_v(x_t, k, output)
        if prediction == "x0":
            return output
        raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(PREDICTIONS)}")

    # ----------------------------------------------------------------- reverse process
    def posterior(self, x_t: torch.Tensor, k, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, variance) of q(x_{k-1} | x_k, x_0) (DDPM eq. 6-7), for k in 1..N.

        mean = sqrt(alpha_bar[k-1]) beta[k] / (1 - alpha_bar[k]) x_0
             + sqrt(alpha[k]) (1 - alpha_bar[k-1]) / (1 - alpha_bar[k]) x_k,      alpha[k] = 1 - beta[k]
        variance = (1 - alpha_bar[k-1]) / (1 - alpha_bar[k]) beta[k]   ("fixed small", 0 at k = 1)
        """
        self.check_steps(k)
        k = torch.as_tensor(k, dtype=torch.long)
        a_t, a_prev = self._at(self.alpha_bar, k, x_t), self._at(self.alpha_bar, k - 1, x_t)
        beta = self._at(self.betas, k, x_t)
        mean = (a_prev.sqrt() * beta / (1.0 - a_t)) * x0 + ((1.0 - beta).sqrt() * (1.0 - a_prev) / (1.0 - a_t)) * x_t
        variance = (1.0 - a_prev) / (1.0 - a_t) * beta
        return mean, variance

    def ddpm_step(self, x_t: torch.Tensor, k, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Ancestral sampling: x_{k-1} = posterior mean + sqrt(variance) noise (no noise at k = 1)."""
        mean, variance = self.posterior(x_t, k, x0)
        return mean + variance.clamp_min(0).sqrt() * noise

    def ddim_step(self, x_t: torch.Tensor, k, k_prev, x0: torch.Tensor, eta: float = 0.0,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        """x_{k_prev} from x_k (k_prev < k, k_prev may be 0: the clean data), DDIM eq. 12.

        sigma^2 = eta^2 (1 - alpha_bar[k_prev]) / (1 - alpha_bar[k]) (1 - alpha_bar[k] / alpha_bar[k_prev])
        x_prev  = sqrt(alpha_bar[k_prev]) x_0 + sqrt(1 - alpha_bar[k_prev] - sigma^2) eps + sigma noise

        eta = 0 is deterministic; eta = 1 with k_prev = k - 1 is the DDPM posterior step.
        """
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        self.check_steps(k)
        k_prev = torch.as_tensor(k_prev, dtype=torch.long)
        if torch.any(k_prev >= torch.as_tensor(k)) or k_prev.min() < 0:
            raise ValueError("k_prev must lie in 0..k-1")
        a_t, a_prev = self._at(self.alpha_bar, k, x_t), self._at(self.alpha_bar, k_prev, x_t)
        eps = (x_t - a_t.sqrt() * x0) / (1.0 - a_t).sqrt()
        sigma = eta * ((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)).clamp_min(0).sqrt()
        out = a_prev.sqrt() * x0 + (1.0 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
        if eta > 0:
            if noise is None:
                raise ValueError("ddim_step with eta > 0 needs noise")
            out = out + sigma * noise
        return out

    def ddim_steps(self, n: int) -> list[int]:
        """The n steps a DDIM sampler visits, from N down: k = N, N - N/n, ..., as evenly spaced as integers allow.

        Each is followed by the next in the list, the last by 0 (the clean data).
        """
        if not 1 <= n <= self.num_steps:
            raise ValueError(f"--ddim-steps must lie in 1..{self.num_steps} (the trained steps), got {n}")
        grid = torch.linspace(self.num_steps, 0, n + 1, dtype=torch.float64)[:-1]
        return [int(round(float(k))) for k in grid]


def guided(conditional: torch.Tensor, unconditional: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): uncond + scale * (cond - uncond); scale 1 is the conditional."""
    return unconditional + scale * (conditional - unconditional)
