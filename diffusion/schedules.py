"""The schedule core: every noise schedule of the toolkit, in one place.

Convention (used everywhere in this project)
--------------------------------------------
Time is continuous, ``t`` in ``[0, 1]``.  ``alpha(t)`` is the fraction of signal kept:

    alpha(0) = 1   clean data
    alpha(1) = 0   pure noise (every token masked / pure Gaussian noise)

and ``alpha`` is non-increasing in ``t``.  Integer step indices never enter this module
silently: a caller with N discrete steps converts with ``t_k = k / N`` explicitly.

How the three modalities use it
-------------------------------
* Masked text (training): a time ``t ~ U[eps, 1]`` is drawn per example (:func:`training_time`
  maps the collator's uniform draw to it), and each maskable token is masked with probability
  ``1 - alpha(t)`` (:func:`mask_probability`).  The continuous-time ELBO weight is
  ``-alpha'(t) / (1 - alpha(t))`` (:func:`elbo_weight`; MDLM, Sahoo et al. 2024, eq. 10),
  which is ``1 / t`` for the linear schedule (the LLaDA loss, Nie et al. 2025).
* Masked text (generation): with N steps over L positions, the number still masked after
  step k follows ``L * (1 - alpha(t))`` at ``t = 1 - k/N`` (:func:`masked_counts`).
* Gaussian embeddings and images: ``x_t = sqrt(alpha_bar(t)) x_0 + sqrt(1 - alpha_bar(t)) eps``
  with ``alpha_bar = alpha``; discrete DDPM betas come from :func:`betas_for_alpha_bar`
  (as ``betas_for_alpha_bar`` in openai/improved-diffusion).

The registry is append-only: add a schedule, never change what an existing name means,
since trained checkpoints record the schedule by name.  All math runs in float64 and is
cast to the caller's dtype at the end.  Nothing here sees a model or draws random numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

AlphaFn = Callable[[torch.Tensor], torch.Tensor]  # float64 t in [0, 1] -> float64 alpha(t)

_REGISTRY: dict[str, AlphaFn] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_schedule(name: str, description: str) -> Callable[[AlphaFn], AlphaFn]:
    """Decorator adding ``alpha(t)`` under ``name``. Names are never re-used."""

    def decorator(fn: AlphaFn) -> AlphaFn:
        if name in _REGISTRY:
            raise ValueError(f"schedule {name!r} is already registered")
        _REGISTRY[name] = fn
        _DESCRIPTIONS[name] = description
        return fn

    return decorator


@register_schedule("linear", "alpha(t) = 1 - t: the mask rate grows linearly with t")
def _linear(t: torch.Tensor) -> torch.Tensor:
    return 1.0 - t


# Improved DDPM (Nichol & Dhariwal 2021, eq. 17): alpha_bar(t) = f(t) / f(0) with
# f(t) = cos^2(((t + s) / (1 + s)) * pi / 2) and s = 0.008, so alpha is flat near t = 0
# (little noise is added at first) and steep near the end.
_COSINE_S = 0.008


@register_schedule("cosine", "improved-DDPM cosine: slow at both ends, fast in the middle")
def _cosine(t: torch.Tensor) -> torch.Tensor:
    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.cos((x + _COSINE_S) / (1 + _COSINE_S) * math.pi / 2) ** 2

    return f(t) / f(torch.zeros_like(t))


# Exponential decay of the signal, renormalised so that alpha(1) = 0 exactly:
# alpha(t) = (exp(-k t) - exp(-k)) / (1 - exp(-k)).  With k = 5 most of the signal is gone
# by t = 0.5; in generation that means most tokens are revealed in the last steps.
_EXP_K = 5.0


@register_schedule("exponential", "alpha(t) = normalised exp(-5 t): signal decays fast early")
def _exponential(t: torch.Tensor) -> torch.Tensor:
    return (torch.exp(-_EXP_K * t) - math.exp(-_EXP_K)) / (1 - math.exp(-_EXP_K))


# Diffusion-LM (Li et al. 2022, Appendix A): alpha_bar(t) = 1 - sqrt(t + s), s = 1e-4, for Gaussian
# diffusion over embeddings. The noise rises steeply at once (alpha_bar(0.01) = 0.91), so even
# early steps are hard enough to teach the model; with the cosine schedule most steps are
# nearly clean and the rounding of embeddings to tokens learns little. Divided by its value at
# t = 0 so that alpha(0) = 1 exactly, and 0 from t = 1 - s on (where 1 - sqrt(t + s) would go
# negative): the ratios alpha_bar(t_i+1) / alpha_bar(t_i), hence the DDPM betas, are Diffusion-LM's.
_SQRT_S = 1e-4


@register_schedule("sqrt", "Diffusion-LM: alpha_bar(t) = 1 - sqrt(t + 1e-4), noisy from the first steps")
def _sqrt(t: torch.Tensor) -> torch.Tensor:
    return ((1.0 - torch.sqrt(t + _SQRT_S)) / (1.0 - math.sqrt(_SQRT_S))).clamp_min(0.0)


# The same curve with the signal-to-noise ratio alpha_bar / (1 - alpha_bar) divided by 4 at every t:
# alpha_bar' = alpha_bar / (alpha_bar + 4 (1 - alpha_bar)).  Scaling x_0 by 0.5 before noising does
# the same (Chen 2023, "On the Importance of Noise Scheduling for Diffusion Models"; Hoogeboom et al.
# 2023 shift the SNR for larger images the same way).  Why: a token is recognisable from its own
# noisy vector when d * SNR is large, so the bigger the embedding, the more of sqrt's steps are
# solved without reading the context.  With d = 64 under sqrt, d * SNR is still 26 at t = 0.5;
# shifted by 4 it is 6.6, what sqrt gives Diffusion-LM's 16 dimensions (docs/GAUSSIAN_TEXT.md,
# "Why the first base wrote fragments").
_QUARTER = 0.25


@register_schedule("sqrt-quarter-snr", "sqrt with the signal-to-noise ratio divided by 4: for 64-dimensional embeddings")
def _sqrt_quarter_snr(t: torch.Tensor) -> torch.Tensor:
    a = _sqrt(t)
    return a * _QUARTER / (a * _QUARTER + (1.0 - a))


def available_schedules() -> list[str]:
    """Names of the registered schedules, in registration order."""
    return list(_REGISTRY)


def describe_schedule(name: str) -> str:
    """One-line description of a registered schedule."""
    get_schedule(name)
    return _DESCRIPTIONS[name]


def get_schedule(name: str) -> AlphaFn:
    """The raw float64 ``alpha`` function; unknown names list the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_schedules())
        raise ValueError(f"unknown schedule {name!r}; known schedules: {known}") from None


def _as_time(t: torch.Tensor | float) -> tuple[torch.Tensor, torch.dtype]:
    """float64 copy of ``t`` (checked to lie in [0, 1]) and the dtype to cast back to."""
    t = torch.as_tensor(t)
    out_dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
    t64 = t.to(torch.float64)
    if t64.numel() and (t64.min() < 0 or t64.max() > 1):
        raise ValueError(f"diffusion time must lie in [0, 1], got values in [{t64.min():.4g}, {t64.max():.4g}]")
    return t64, out_dtype


def training_time(u: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Training times ``t = eps + (1 - eps) u`` in ``[eps, 1]`` from uniform draws ``u`` in ``[0, 1)``.

    The caller draws ``u`` with its own seeded generator (the schedule never samples, so a
    checkpointed generator state is all a resumed run needs).  ``eps > 0`` keeps ``t`` away from 0,
    where the ELBO weight ``-alpha'(t) / (1 - alpha(t))`` diverges (MDLM, Sahoo et al. 2024).
    """
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    u = torch.as_tensor(u, dtype=torch.float64)
    return eps + (1.0 - eps) * u


def alpha(name: str, t: torch.Tensor | float) -> torch.Tensor:
    """Fraction of signal kept at time ``t`` (same shape as ``t``); exact at the endpoints."""
    fn = get_schedule(name)
    t64, out_dtype = _as_time(t)
    a = fn(t64).clamp(0.0, 1.0)
    # Pin the endpoints: float rounding (cos(pi/2) = 6e-17) must not leave a token unmasked.
    a = torch.where(t64 == 0, torch.ones_like(a), a)
    a = torch.where(t64 == 1, torch.zeros_like(a), a)
    return a.to(out_dtype)


def alpha_bar(name: str, t: torch.Tensor | float) -> torch.Tensor:
    """Gaussian companions: the cumulative signal variance, which *is* ``alpha`` here."""
    return alpha(name, t)


def mask_probability(name: str, t: torch.Tensor | float) -> torch.Tensor:
    """Training: the probability that a token is masked at time ``t``, ``1 - alpha(t)``."""
    return 1.0 - alpha(name, t)


def elbo_weight(name: str, t: torch.Tensor | float) -> torch.Tensor:
    """Continuous-time ELBO weight ``-alpha'(t) / (1 - alpha(t))`` of masked diffusion.

    MDLM (Sahoo et al. 2024) writes the negative ELBO as
    ``E_t [ w(t) * sum_{masked} -log p(x_0 | x_t) ]`` with this ``w``.  For ``linear`` it is
    exactly ``1 / t``, the weighting of LLaDA.  The derivative is taken by autograd in float64,
    so a new schedule needs no hand-written derivative.  ``t`` must be > 0.
    """
    fn = get_schedule(name)
    t64, out_dtype = _as_time(t)
    if t64.numel() and t64.min() <= 0:
        raise ValueError("elbo_weight needs t > 0 (the weight diverges at t = 0)")
    with torch.enable_grad():  # callers may be inside torch.no_grad() (evaluation)
        t64 = t64.detach().clone().requires_grad_(True)
        a = fn(t64)
        (da_dt,) = torch.autograd.grad(a.sum(), t64)
    w = -da_dt / (1.0 - a)
    return w.detach().to(out_dtype)


def masked_counts(name: str, num_steps: int, length: int) -> list[int]:
    """Generation: how many of ``length`` positions are still masked after each of ``num_steps``.

    Step k (1-based) ends at ``t_k = 1 - k / num_steps``; the target count is
    ``round(length * (1 - alpha(t_k)))``.  Two rules are then enforced: every step reveals at
    least one position, and the last step reveals all (the list ends with 0).  The list is
    strictly decreasing, so step k reveals ``counts[k-2] - counts[k-1]`` positions (``length``
    standing for ``counts[-1]`` before the first step).  Needs ``1 <= num_steps <= length``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if length == 0:
        return [0] * num_steps
    if num_steps > length:
        raise ValueError(
            f"{num_steps} steps cannot each reveal at least one of {length} positions; use at most {length} steps"
        )
    t = torch.tensor([1.0 - k / num_steps for k in range(1, num_steps + 1)], dtype=torch.float64)
    targets = torch.round(length * mask_probability(name, t)).long().tolist()
    counts: list[int] = []
    previous = length
    for k, target in enumerate(targets, start=1):
        still_to_come = num_steps - k  # each later step must still reveal >= 1 position
        c = min(target, previous - 1)
        c = max(c, still_to_come)
        counts.append(c)
        previous = c
    return counts


def betas_for_alpha_bar(name: str, num_steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """Discrete DDPM betas (float64, shape (num_steps,)) from the continuous ``alpha_bar``.

    ``beta_i = 1 - alpha_bar(t_{i+1}) / alpha_bar(t_i)`` with ``t_i = i / num_steps``, clipped at
    ``max_beta`` to keep the last step finite (improved-diffusion, ``betas_for_alpha_bar``).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    t = torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float64)
    a = alpha_bar(name, t)
    betas = 1.0 - a[1:] / a[:-1].clamp_min(1e-300)
    return betas.clamp(0.0, max_beta)
