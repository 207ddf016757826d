"""Invariants of the schedule core, for every registered schedule."""

import math

import pytest
import torch

from diffusion import schedules

ALL = schedules.available_schedules()


def test_registry_has_the_documented_schedules():
    assert {"linear", "cosine", "exponential", "sqrt"} <= set(ALL)


def test_sqrt_gives_the_betas_of_diffusion_lm():
    """improved-diffusion's betas_for_alpha_bar with Diffusion-LM's lambda t: 1 - sqrt(t + 0.0001)."""
    n = 2000
    raw = lambda t: 1 - math.sqrt(t + 0.0001)  # noqa: E731
    theirs = [min(1 - raw((i + 1) / n) / raw(i / n), 0.999) for i in range(n)]
    assert torch.allclose(schedules.betas_for_alpha_bar("sqrt", n), torch.tensor(theirs, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_endpoints_exact(name):
    a = schedules.alpha(name, torch.tensor([0.0, 1.0]))
    assert a.tolist() == [1.0, 0.0]
    assert schedules.mask_probability(name, torch.tensor([0.0, 1.0])).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("name", ALL)
def test_alpha_monotone_non_increasing_and_in_unit_interval(name):
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    a = schedules.alpha(name, t)
    assert torch.all(a[1:] <= a[:-1])
    assert torch.all((a >= 0) & (a <= 1))
    assert a[500] < 1 and a[500] > 0  # not a step function


def test_linear_values_and_dtype_cast():
    t = torch.tensor([0.25, 0.5], dtype=torch.float32)
    a = schedules.alpha("linear", t)
    assert a.dtype == torch.float32
    assert a.tolist() == [0.75, 0.5]


def test_cosine_matches_improved_ddpm_formula():
    s = 0.008
    t = 0.3
    f = lambda x: math.cos((x + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    assert float(schedules.alpha("cosine", torch.tensor(t, dtype=torch.float64))) == pytest.approx(f(t) / f(0), rel=1e-12)


def test_unknown_schedule_lists_known_ones():
    with pytest.raises(ValueError) as err:
        schedules.alpha("quadratic-ish", 0.5)
    for name in ALL:
        assert name in str(err.value)


def test_time_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        schedules.alpha("linear", torch.tensor([1.5]))


def test_elbo_weight_linear_is_one_over_t():
    t = torch.tensor([0.1, 0.25, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(schedules.elbo_weight("linear", t), 1 / t)


@pytest.mark.parametrize("name", ALL)
def test_elbo_weight_positive_and_finite(name):
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    w = schedules.elbo_weight(name, t)
    assert torch.all(torch.isfinite(w)) and torch.all(w > 0)


def test_elbo_weight_refuses_t_zero():
    with pytest.raises(ValueError, match="t > 0"):
        schedules.elbo_weight("linear", torch.tensor([0.0, 0.5]))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("steps,length", [(1, 1), (1, 10), (10, 10), (7, 50), (10, 64), (64, 64), (3, 100)])
def test_masked_counts_invariants(name, steps, length):
    counts = schedules.masked_counts(name, steps, length)
    assert len(counts) == steps
    assert counts[-1] == 0
    revealed = [length - counts[0]] + [a - b for a, b in zip(counts, counts[1:], strict=False)]
    assert sum(revealed) == length  # every position is revealed exactly once
    assert min(revealed) >= 1  # every step reveals at least one position


def test_masked_counts_linear_exact():
    assert schedules.masked_counts("linear", 5, 10) == [8, 6, 4, 2, 0]
    assert schedules.masked_counts("linear", 4, 8) == [6, 4, 2, 0]


def test_masked_counts_more_steps_than_positions_refused():
    with pytest.raises(ValueError, match="at most 5 steps"):
        schedules.masked_counts("linear", 6, 5)


@pytest.mark.parametrize("name", ALL)
def test_ddpm_betas_reproduce_alpha_bar(name):
    n = 100
    betas = schedules.betas_for_alpha_bar(name, n)
    assert betas.shape == (n,) and betas.dtype == torch.float64
    assert torch.all(betas >= 0) and torch.all(betas <= 0.999)
    # prod(1 - beta) follows alpha_bar wherever the clip at max_beta did not bite
    cumulative = torch.cumprod(1 - betas, dim=0)
    t = torch.arange(1, n + 1, dtype=torch.float64) / n
    expected = schedules.alpha_bar(name, t)
    unclipped = torch.cumprod((betas < 0.999).double(), dim=0).bool()
    assert torch.allclose(cumulative[unclipped], expected[unclipped], atol=1e-9)


def test_sqrt_quarter_snr_divides_the_signal_to_noise_ratio_of_sqrt_by_four():
    """The shift is input scaling by 0.5 (Chen 2023): SNR'(t) = SNR(t) / 4 at every t, endpoints kept."""
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    snr = lambda a: a / (1 - a)  # noqa: E731
    ratio = snr(schedules.alpha("sqrt-quarter-snr", t)) / snr(schedules.alpha("sqrt", t))
    assert torch.allclose(ratio, torch.full_like(ratio, 0.25), rtol=1e-9)
    # x_t of 0.5 x_0 under sqrt, divided by its standard deviation, is x_t of x_0 under the shift
    a = schedules.alpha("sqrt", t)
    scale = torch.sqrt(0.25 * a + 1 - a)
    assert torch.allclose((0.5 * torch.sqrt(a) / scale) ** 2, schedules.alpha("sqrt-quarter-snr", t), rtol=1e-9)
