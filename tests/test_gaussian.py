"""diffusion/gaussian/process.py against diffusers' schedulers (the test oracle), and its own invariants.

diffusers is a test dependency only: given the same betas (``trained_betas``), its ``add_noise``,
a DDPM step with the same noise and DDIM steps at eta 0 and 1 with the same ``variance_noise``
must agree with ours to 1e-6 in float64.  Index map (process.py's docstring): diffusers' step
index i is our step k = i + 1.
"""

from __future__ import annotations

import diffusers  # a test dependency only (requirements-dev.txt)
import pytest
import torch
import torch.nn.functional as F

from diffusion import schedules
from diffusion.gaussian.process import GaussianProcess, guided

N = 50
SHAPES = [(3, 5, 4), (2, 1, 4, 4)]  # token embeddings (B, L, d) and images (B, C, H, W)



def _in_float64(scheduler, process: GaussianProcess):
    """diffusers stores trained_betas in float32; the comparison is made in float64 (same betas)."""
    scheduler.betas = process.betas[1:].clone()
    scheduler.alphas = 1.0 - scheduler.betas
    scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, dim=0)
    if hasattr(scheduler, "final_alpha_cumprod"):
        scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return scheduler


def _ddpm(process: GaussianProcess):
    return diffusers.DDPMScheduler(num_train_timesteps=N, trained_betas=process.betas[1:].numpy(),
                                   clip_sample=False, prediction_type="epsilon")


@pytest.mark.parametrize("schedule", schedules.available_schedules())
def test_alphas_cumprod_and_add_noise_match_diffusers(schedule):
    process = GaussianProcess(schedule, N)
    oracle = _ddpm(process)
    # diffusers' alphas_cumprod[i] (its own float32) is the value after step i: our alpha_bar[i + 1],
    # which is the schedule core's alpha_bar at t = (i + 1) / N.
    assert torch.allclose(oracle.alphas_cumprod.double(), process.alpha_bar[1:], atol=1e-6)
    t = torch.arange(1, N + 1, dtype=torch.float64) / N
    assert torch.allclose(process.alpha_bar[1:-1], schedules.alpha_bar(schedule, t)[:-1], atol=1e-9)
    oracle = _in_float64(oracle, process)
    g = torch.Generator().manual_seed(0)
    for shape in SHAPES:
        x0, noise = torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)
        i = torch.randint(0, N, (shape[0],), generator=g)
        expected = oracle.add_noise(x0, noise, i)
        assert torch.allclose(process.q_sample(x0, i + 1, noise), expected, atol=1e-6)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_a_ddpm_step_with_the_same_noise_matches_diffusers(schedule):
    process = GaussianProcess(schedule, N)
    oracle = _in_float64(_ddpm(process), process)
    oracle.set_timesteps(N)
    g = torch.Generator().manual_seed(1)
    for shape in SHAPES:
        x_t = torch.randn(shape, generator=g, dtype=torch.float64)
        eps = torch.randn(shape, generator=g, dtype=torch.float64)
        for i in (N - 1, N // 2, 1, 0):  # i = 0: the last step, which adds no noise
            seed = 100 + i
            expected = oracle.step(eps, i, x_t, generator=torch.Generator().manual_seed(seed)).prev_sample
            noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
            x0 = process.x0_from_eps(x_t, i + 1, eps)
            got = process.ddpm_step(x_t, i + 1, x0, noise)
            assert torch.allclose(got, expected, atol=1e-6), (shape, i)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_sampling_matches_diffusers_at_eta_0_and_1(eta):
    """A whole 10-step DDIM run (diffusers' "trailing" spacing is our grid: N, N - N/n, ..., N/n),
    with a fixed fake denoiser and the same variance_noise at every step."""
    process = GaussianProcess("cosine", N)
    oracle = diffusers.DDIMScheduler(num_train_timesteps=N, trained_betas=process.betas[1:].numpy(),
                                     clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
    oracle = _in_float64(oracle, process)
    oracle.set_timesteps(10)
    ours = process.ddim_steps(10)
    assert [int(t) + 1 for t in oracle.timesteps] == ours  # diffusers' timestep t is our step t + 1
    g = torch.Generator().manual_seed(2)
    shape = SHAPES[0]
    x_ours = x_theirs = torch.randn(shape, generator=g, dtype=torch.float64)
    eps_of = lambda x, k: torch.tanh(x) * 0.5 + 0.01 * k  # noqa: E731  a deterministic stand-in for a model
    for n, k in enumerate(ours):
        k_prev = ours[n + 1] if n + 1 < len(ours) else 0
        noise = torch.randn(shape, generator=g, dtype=torch.float64)
        x_theirs = oracle.step(eps_of(x_theirs, k), k - 1, x_theirs, eta=eta, variance_noise=noise).prev_sample
        x0 = process.x0_from_eps(x_ours, k, eps_of(x_ours, k))
        x_ours = process.ddim_step(x_ours, k, k_prev, x0, eta=eta, noise=noise)
        assert torch.allclose(x_ours, x_theirs, atol=1e-6), (eta, k)


def test_q_sample_has_the_mean_and_variance_of_its_formula():
    process = GaussianProcess("linear", 100)
    x0 = torch.full((20000, 2), 3.0, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for k in (10, 50, 100):
        x = process.q_sample(x0, k, noise)
        a = float(process.alpha_bar[k])
        assert float(x.mean()) == pytest.approx(3.0 * a ** 0.5, abs=0.03)
        assert float(x.var()) == pytest.approx(1.0 - a, abs=0.03)


def test_conversions_invert_each_other_for_every_shape():
    process = GaussianProcess("cosine", N)
    g = torch.Generator().manual_seed(4)
    for shape in SHAPES:
        x0, eps = torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)
        k = torch.randint(1, N + 1, (shape[0],), generator=g)
        x_t = process.q_sample(x0, k, eps)
        assert torch.allclose(process.x0_from_eps(x_t, k, eps), x0, atol=1e-8)
        assert torch.allclose(process.eps_from_x0(x_t, k, x0), eps, atol=1e-6)
        assert torch.allclose(process.x0_from_v(x_t, k, process.v_from(x0, k, eps)), x0, atol=1e-8)
        assert torch.allclose(process.x0_from("x0", x_t, k, x0), x0)


def test_ddim_at_eta_0_is_deterministic_and_eta_1_one_step_is_the_ddpm_posterior():
    process = GaussianProcess("linear", N)
    x_t, x0 = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    a = process.ddim_step(x_t, 20, 10, x0, eta=0.0)
    assert torch.equal(a, process.ddim_step(x_t, 20, 10, x0, eta=0.0))
    noise = torch.randn(2, 3, dtype=torch.float64)
    assert torch.allclose(process.ddim_step(x_t, 20, 19, x0, eta=1.0, noise=noise),
                          process.ddpm_step(x_t, 20, x0, noise), atol=1e-10)
    # k_prev = 0 lands on the predicted clean data exactly.
    assert torch.allclose(process.ddim_step(x_t, 5, 0, x0, eta=0.0), x0, atol=1e-12)


def test_bad_steps_and_eta_are_refused():
    process = GaussianProcess("linear", N)
    x = torch.zeros(1, 2)
    for call, message in ((lambda: process.ddim_steps(0), "1..50"), (lambda: process.ddim_steps(N + 1), "1..50"),
                          (lambda: process.ddim_step(x, 10, 5, x, eta=1.5, noise=x), r"\[0, 1\]"),
                          (lambda: process.ddpm_step(x, N + 1, x, x), "1..50"),
                          (lambda: process.x0_from("score", x, 1, x), "epsilon, x0, v")):
        with pytest.raises(ValueError, match=message):
            call()


def test_classifier_free_guidance_mix():
    cond, uncond = torch.tensor([2.0]), torch.tensor([1.0])
    assert guided(cond, uncond, 1.0).item() == 2.0 and guided(cond, uncond, 0.0).item() == 1.0
    assert guided(cond, uncond, 3.0).item() == 4.0


# ----------------------------------------------------------------------------- the denoiser
def _tiny(trained_modulation: bool = True, **overrides):
    """A small denoiser; with step_conditioning="adaln" its zero-initialised modulations are drawn at
    random (``trained_modulation``), as training leaves them, so that the step reaches the output."""
    from diffusion.gaussian.model import GaussianTextConfig, GaussianTextModel

    torch.manual_seed(0)
    config = GaussianTextConfig(vocab_size=40, embedding_dim=8, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=12,
                                hidden_dropout_prob=0.0, condition_dim=16, **overrides)
    model = GaussianTextModel(config).eval()
    if trained_modulation and config.step_conditioning == "adaln":
        with torch.no_grad():
            for layer in [block.adaln for block in model.blocks] + [model.adaln_out]:
                layer.weight.normal_(0, 0.3)
    return model


def test_adaln_zero_starts_every_block_as_the_identity_so_the_step_is_not_yet_seen():
    """adaLN-Zero (DiT): gates, shifts and scales start at zero, so at initialisation the output is
    output_down(LN(input_up(x) + positions)) at every step; and the step never enters the token stream."""
    model = _tiny(trained_modulation=False, step_conditioning="adaln")
    x_t = torch.randn(2, 6, 8)
    with torch.no_grad():
        first = model(x_t, torch.tensor([1, 2]))
        assert torch.allclose(model(x_t, torch.tensor([90, 40])), first, atol=1e-6)
        stream = model.input_up(torch.cat([x_t, torch.zeros_like(x_t)], -1)) + model.position_embeddings.weight[:6]
        assert torch.allclose(model.output_down(model.norm_out(stream)), first, atol=1e-5)
    assert model.step_mlp[-1].out_features == 16 and model.blocks[0].adaln.in_features == 16  # condition_dim


def test_new_models_condition_on_the_step_by_adaln_and_old_configs_keep_adding_it():
    from transformers import AutoTokenizer

    from diffusion.gaussian.model import GaussianTextConfig, build_gaussian_model
    from diffusion.paths import BUNDLED_TOKENIZER

    built = build_gaussian_model("tiny", AutoTokenizer.from_pretrained(BUNDLED_TOKENIZER), max_length=16)
    assert built.config.step_conditioning == "adaln" and not hasattr(built, "encoder")
    config = _tiny().config.to_dict()
    del config["step_conditioning"]  # as in config.json files written before the option
    assert GaussianTextConfig.from_dict(config).step_conditioning == "add"
    with pytest.raises(ValueError, match="step_conditioning"):
        GaussianTextConfig(step_conditioning="film")


def test_local_attention_init_points_the_first_blocks_heads_at_the_neighbours():
    """--local-attention-init for the Gaussian denoiser: each head of the shaped blocks starts on its
    offset (-1, +1, -2, +2) at a noisy input, the next block near uniform; the token path writes
    nothing into the position channel; the "add" conditioning (no adaLN blocks) is refused."""
    import math

    from transformers import AutoTokenizer

    from diffusion.adaln import modulate
    from diffusion.gaussian.model import build_gaussian_model, init_local_attention, step_embedding
    from diffusion.paths import BUNDLED_TOKENIZER
    from diffusion.text.models import LOCAL_ATTENTION_OFFSETS

    torch.manual_seed(0)
    model = build_gaussian_model("tiny", AutoTokenizer.from_pretrained(BUNDLED_TOKENIZER), max_length=24,
                                 local_attention_layers=1).eval()
    x_t, steps = torch.randn(2, 20, 64), torch.tensor([500, 900])

    def attention(block, h, c):  # (B, heads, L, L), as AdaLNBlock.attention computes it
        shift, scale = block.adaln(F.silu(c)).chunk(6, dim=-1)[:2]
        q, k, _ = block.qkv(modulate(block.norm1(h), shift, scale)).chunk(3, dim=-1)
        q, k = (t.view(2, 20, block.num_heads, -1).transpose(1, 2) for t in (q, k))
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)

    with torch.no_grad():
        h = model.input_up(torch.cat([x_t, torch.zeros_like(x_t)], -1)) + model.position_embeddings.weight[:20]
        c = model.step_mlp(step_embedding(steps, model.config.hidden_size))
        first = attention(model.blocks[0], h, c)
        second = attention(model.blocks[1], model.blocks[0](h, c), c)
    queries = torch.arange(3, 17)
    for head, offset in enumerate(LOCAL_ATTENTION_OFFSETS):
        assert first[:, head, queries, queries + offset].min() > 0.5, (head, offset)
    assert second[:, 0, queries, queries - 1].max() < 0.3
    channel = 2 * (model.config.hidden_size // model.config.num_attention_heads // 2)
    assert model.input_up[-1].weight[:channel].abs().max() == 0 and model.input_up[-1].bias[:channel].abs().max() == 0
    with pytest.raises(ValueError, match="adaln"):
        init_local_attention(_tiny(step_conditioning="add"))


@pytest.mark.parametrize("conditioning", ["add", "adaln"])
def test_the_denoiser_predicts_x0_of_the_input_shape_ignores_padding_and_shows_its_attention(conditioning):
    model = _tiny(step_conditioning=conditioning)
    x_t, steps = torch.randn(2, 10, 8), torch.tensor([3, 40])
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    with torch.no_grad():
        out = model(x_t, steps, mask)
        assert out.shape == (2, 10, 8) and model.rounding_logits(out).shape == (2, 10, 40)
        changed = x_t.clone()
        changed[1, 6:] = 5.0  # padding positions: the real ones must not see them
        again = model(changed, steps, mask)
        assert torch.allclose(again[1, :6], out[1, :6], atol=1e-6) and torch.equal(again[0], out[0])
        assert not torch.allclose(model(x_t, steps + 1, mask), out)  # the step is an input
        # Self-conditioning: the previous x0 estimate is an input too (zeros when absent).
        assert not torch.allclose(model(x_t, steps, mask, self_condition=torch.randn(2, 10, 8)), out)
        assert torch.allclose(model(x_t, steps, mask, self_condition=torch.zeros(2, 10, 8)), out)
        # output_attentions: every layer's weights, (B, heads, L, L), the output unchanged
        again, attentions = model(x_t, steps, mask, output_attentions=True)
    assert torch.allclose(again, out, atol=1e-5) and len(attentions) == 2
    for weights in attentions:
        assert weights.shape == (2, 2, 10, 10) and torch.allclose(weights.sum(-1), torch.ones(2, 2, 10), atol=1e-5)
        assert weights[1, :, :, 6:].abs().max() == 0  # padded keys get no weight


@pytest.mark.parametrize("conditioning", ["add", "adaln"])
def test_given_text_is_marked_by_step_zero_and_old_configs_keep_one_step_per_row(conditioning):
    """given_text_at_step_zero: the given positions are called at step 0, the others at k; a config
    saved before the option loads without it and keeps the (B,) steps, so its outputs do not change."""
    model = _tiny(given_text_at_step_zero=True, step_conditioning=conditioning)
    steps = torch.tensor([7, 30])
    given = torch.tensor([[True, False, False, True], [False, True, False, False]])
    assert torch.equal(model.position_steps(steps, given), torch.tensor([[0, 7, 7, 0], [30, 0, 30, 30]]))
    assert torch.equal(model.position_steps(steps, None), steps)
    x_t = torch.randn(2, 4, 8)
    with torch.no_grad():
        # one step per row is the same as that step at every position
        assert torch.allclose(model(x_t, steps), model(x_t, steps[:, None].expand(2, 4)), atol=1e-6)
        marked = model(x_t, model.position_steps(steps, given))
        assert not torch.allclose(marked, model(x_t, steps))  # the mark is an input
    old = _tiny()
    assert not old.config.given_text_at_step_zero and torch.equal(old.position_steps(steps, given), steps)
    config = old.config.to_dict()
    del config["given_text_at_step_zero"]  # as in config.json files written before the option
    from diffusion.gaussian.model import GaussianTextConfig

    assert GaussianTextConfig.from_dict(config).given_text_at_step_zero is False


@pytest.mark.parametrize("conditioning", ["add", "adaln"])
def test_the_denoiser_reloads_through_automodel_with_identical_outputs(tmp_path, conditioning):
    from transformers import AutoConfig, AutoModel

    from diffusion.gaussian.model import GaussianTextModel

    model = _tiny(step_conditioning=conditioning)
    model.save_pretrained(tmp_path / "m")
    assert AutoConfig.from_pretrained(tmp_path / "m").model_type == "gaussian-text-diffusion"
    loaded = AutoModel.from_pretrained(tmp_path / "m").eval()
    assert isinstance(loaded, GaussianTextModel)
    x_t, steps = torch.randn(1, 7, 8), torch.tensor([11])
    with torch.no_grad():
        # equal weights (checked bitwise); the outputs agree to float rounding, since CPU attention
        # (scaled_dot_product_attention) may take another kernel for the loaded, memory-mapped tensors
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True))
        assert torch.allclose(loaded(x_t, steps), model(x_t, steps), rtol=0, atol=1e-6)


def test_with_self_conditioning_it_still_trains():
    """x0-MSE plus the rounding cross-entropy, a no-grad first pass feeding x0 back on every other
    step (Analog Bits): 150 steps on 4 short rows bring the loss down and round most tokens right."""
    model = _tiny().train()
    process = GaussianProcess("sqrt", 100)
    ids = torch.randint(4, 40, (4, 10), generator=torch.Generator().manual_seed(5))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(6)
    losses = []
    for step in range(150):
        x0 = model.embed(ids)
        k = torch.randint(1, 21, (4,), generator=g)  # low noise: where rounding must become exact
        x_t = process.q_sample(x0, k, torch.randn(x0.shape, generator=g))
        previous = None
        if step % 2:
            with torch.no_grad():
                previous = model(x_t, k)
        x0_hat = model(x_t, k, self_condition=previous)
        loss = F.mse_loss(x0_hat, x0) + F.cross_entropy(model.rounding_logits(x0_hat).flatten(0, 1), ids.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    with torch.no_grad():
        x0 = model.embed(ids)
        x_t = process.q_sample(x0, torch.full((4,), 5), torch.randn(x0.shape, generator=g))
        accuracy = (model.rounding_logits(model(x_t, torch.full((4,), 5))).argmax(-1) == ids).float().mean()
    assert accuracy > 0.5
