"""Sampling Gaussian text diffusion: pure noise in the embedding space -> x_0 -> rounded to tokens.

    options = GaussianSamplingOptions(sampler="ddim", ddim_steps=50, seed=0)
    prompt = gaussian_prompt(tokenizer, lengths=[24, 31], prefix="dog:")
    result = sample(model, process, tokenizer, prompt, options)
    result.texts          # one string per row
    result.trace[i]       # after the i-th model call: step k, nearest token and its rounding probability per position

Every step (DDPM: k = N, N-1, ..., 1; DDIM: the ``ddim_steps`` of ``process.ddim_steps``):

    x0_hat = model(x_k, k, attention_mask, previous x0_hat)     self-conditioning: always the last estimate
    x0_hat = E[argmax(x0_hat . E^T)]                            with --clamp (Diffusion-LM's clamping trick)
    x0_hat = E[w], w ~ softmax(x0_hat . E^T / T)                with --clamp-temperature T (a drawn token instead)
    x_{k_prev} = ddpm_step / ddim_step(x_k, k, x0_hat)          diffusion/gaussian/process.py

Fixed text (with a ``--prefix`` or a ``--text`` template: ``<s>``, the given words and the
final ``</s>``) is held at its clean embedding at every step and in every estimate (DiffuSeq's partial noising,
Gong et al. 2023, which the trainer's ``fixed_text_rate`` trains for); only the other positions
are diffused.  The last estimate is rounded to the nearest token: that is the text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from diffusion.device import synchronize
from diffusion.gaussian.process import GaussianProcess
from diffusion.text.tokens import decode_text

SAMPLERS = ("ddpm", "ddim")
DRAWN_CLAMP_TEMPERATURE = 0.7  # --clamp-temperature's suggested value; benchmarks/quality.py's drawn-clamp row
DEFAULT_DDIM_STEPS = 50  # DDIM's usual "50 steps instead of 1000"; fewer when the model has fewer
MASK_PLACEHOLDER = "[MASK]"


@dataclass
class GaussianSamplingOptions:
    """How a Gaussian checkpoint is sampled; the flags of generate.py and visualize_generation.py for it."""

    sampler: str = field(
        default="ddim",
        metadata={"help": "Gaussian checkpoints: ddpm (every trained step, ancestral) or ddim (--ddim-steps steps)."},
    )
    ddim_steps: int | None = field(
        default=None,
        metadata={"help": f"Gaussian checkpoints, --sampler ddim: steps, from 1 to the trained steps "
                  f"(default {DEFAULT_DDIM_STEPS}, or all when the model has fewer)."},
    )
    eta: float = field(
        default=0.0,
        metadata={"help": "Gaussian checkpoints, --sampler ddim: noise of each step in [0, 1]; 0 is deterministic "
                  "given the start, 1 is DDPM's amount of noise."},
    )
    clamp: bool = field(
        default=False,
        metadata={"help": "Gaussian checkpoints: snap every predicted x0 to the nearest token embedding "
                  "(Diffusion-LM's clamping trick)."},
    )
    clamp_temperature: float | None = field(
        default=None,
        metadata={"help": "Gaussian text checkpoints: snap every predicted x0 to a token drawn from its rounding "
                  f"distribution at this temperature, not to the nearest one (a stochastic --clamp; "
                  f"{DRAWN_CLAMP_TEMPERATURE} is a good start)."},
    )
    no_self_conditioning: bool = field(
        default=False,
        metadata={"help": "Gaussian checkpoints: feed zeros instead of the previous x0 estimate (what a model "
                  "trained with self-conditioning sees on the other half of its training batches)."},
    )

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.ddim_steps is not None and self.ddim_steps < 1:
            raise ValueError(f"--ddim-steps must be at least 1, got {self.ddim_steps}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"--eta must lie in [0, 1], got {self.eta}")
        if self.clamp_temperature is not None and not self.clamp_temperature > 0:
            raise ValueError(f"--clamp-temperature must be above 0, got {self.clamp_temperature}")

    def schedule_of_steps(self, process: GaussianProcess) -> list[tuple[int, int]]:
        """[(k, k_prev), ...] from k = N down to k_prev = 0; a --ddim-steps above N is a ValueError."""
        if self.sampler == "ddpm":
            return [(k, k - 1) for k in range(process.num_steps, 0, -1)]
        ks = process.ddim_steps(self.steps_for(process))
        return list(zip(ks, ks[1:] + [0], strict=True))

    def steps_for(self, process: GaussianProcess) -> int:
        """The DDIM steps in effect: --ddim-steps, else the default or every trained step when fewer."""
        return self.ddim_steps if self.ddim_steps is not None else min(DEFAULT_DDIM_STEPS, process.num_steps)

    def describe(self, process: GaussianProcess) -> str:
        if self.sampler == "ddpm":
            text = f"DDPM, {process.num_steps} steps"
        else:
            text = f"DDIM, {self.steps_for(process)} of {process.num_steps} steps, eta {self.eta:g}"
        if self.clamp_temperature is not None:
            text += f", clamped to drawn tokens (temperature {self.clamp_temperature:g})"
        elif self.clamp:
            text += ", clamped"
        return text + (", no self-conditioning" if self.no_self_conditioning else "")


@dataclass
class GaussianPrompt:
    input_ids: torch.Tensor  # (B, L) long: the fixed tokens; anything where generated (mask id)
    generate: torch.Tensor  # (B, L) bool: True where the sampler fills in a token
    attention_mask: torch.Tensor  # (B, L) long: 1 for the row's positions, 0 past its end


def gaussian_prompt(tokenizer, lengths: list[int], prefix: str | None = None,
                    text: str | None = None, prefix_ids: list[int] | None = None) -> GaussianPrompt:
    """Rows of the given lengths (``<s>`` and ``</s>`` included): all generated, or ``<s> prefix ... </s>``
    with the prefix and both ends fixed, or an infill template.

    Unconditional rows generate every position, the ends too: the trainer noises whole rows
    (all but ``fixed_text_rate`` of them), and the model learns that a row of n positions
    starts with ``<s>`` and ends with ``</s>`` at n - 1.  With ``text``, each ``[MASK]`` is one
    generated position and every row is the template.
    """
    fill = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
    if text is not None:
        if MASK_PLACEHOLDER not in text:
            raise ValueError(f"the --text template has no {MASK_PLACEHOLDER} to fill in")
        pieces = text.split(MASK_PLACEHOLDER)
        ids = [tokenizer.bos_token_id]
        generate = [False]
        for i, piece in enumerate(pieces):
            piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"] if piece else []
            ids += piece_ids
            generate += [False] * len(piece_ids)
            if i < len(pieces) - 1:
                ids.append(fill)
                generate.append(True)
        ids.append(tokenizer.eos_token_id)
        generate.append(False)
        rows, gens = [ids] * len(lengths), [generate] * len(lengths)
    else:
        if prefix_ids is None:
            prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        rows, gens = [], []
        for n in lengths:
            if not prefix_ids:  # unconditional: every position is generated, <s> and </s> too (as trained)
                rows.append([fill] * n)
                gens.append([True] * n)
                continue
            room = n - 2 - len(prefix_ids)
            if room < 1:
                raise ValueError(f"the prefix is {len(prefix_ids)} tokens long; with <s> and </s> it leaves nothing "
                                 f"to generate in a text of {n} tokens: use --max-length of at least "
                                 f"{len(prefix_ids) + 3}")
            rows.append([tokenizer.bos_token_id] + prefix_ids + [fill] * room + [tokenizer.eos_token_id])
            gens.append([False] * (1 + len(prefix_ids)) + [True] * room + [False])
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    generate = torch.zeros((len(rows), width), dtype=torch.bool)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, gen) in enumerate(zip(rows, gens, strict=True)):
        input_ids[i, :len(row)] = torch.tensor(row)
        generate[i, :len(row)] = torch.tensor(gen)
        attention_mask[i, :len(row)] = 1
    return GaussianPrompt(input_ids, generate, attention_mask)


@dataclass
class GaussianStep:
    """The state after one model call, on the CPU: the estimate rounded to tokens."""

    step: int  # k, the diffusion step the model was called at
    ids: torch.Tensor  # (B, L) long: nearest token of every position's x0 estimate
    probs: torch.Tensor  # (B, L) float: its rounding probability (softmax over x0_hat . E^T)
    noise_norm: float  # mean |x_k| over generated positions (how far from the embedding cloud)
    seconds: float = 0.0  # since sampling began, when this state was ready (compare_models.py's race)


@dataclass
class GaussianResult:
    ids: torch.Tensor  # (B, L) long: the final tokens
    texts: list[str]
    trace: list[GaussianStep]
    forward_passes: int
    generate: torch.Tensor  # (B, L) bool
    attention_mask: torch.Tensor  # (B, L) long


def _rounding_logits(model, x0_hat: torch.Tensor, banned: list[int]) -> torch.Tensor:
    """(B, L, d) -> (B, L, V) float logits x0_hat . E^T, -inf at the ``banned`` ids.

    ``banned`` is the tokenizer's ``<unk>``: a word-level vocabulary (data/word-tokenizer) trains it
    as the stand-in for every rare word, and text must not say "<unk>"; the rounding takes the
    nearest real word instead. A byte-level BPE never produces it, so banning it changes nothing there.
    """
    logits = model.rounding_logits(x0_hat).float()
    if banned:
        logits[..., banned] = float("-inf")
    return logits


def _round(model, x0_hat: torch.Tensor, banned: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L, d) -> nearest tokens (B, L) and their rounding probabilities (B, L)."""
    probs = torch.softmax(_rounding_logits(model, x0_hat, banned), dim=-1)
    p, ids = probs.max(dim=-1)
    return ids, p


def _draw(model, x0_hat: torch.Tensor, temperature: float, generator: torch.Generator,
          banned: list[int]) -> torch.Tensor:
    """(B, L, d) -> (B, L) tokens drawn from softmax(x0_hat . E^T / temperature), on the CPU.

    The argmax of --clamp picks, at high noise, the corpus's most frequent tokens everywhere
    ("a a of of the the"); a draw keeps the estimate's uncertainty, as the masked sampler's
    categorical draw does (docs/GAUSSIAN_TEXT.md, "Sampling variants, measured").
    """
    probs = torch.softmax(_rounding_logits(model, x0_hat, banned) / temperature, dim=-1).cpu()  # (B, L, V)
    return torch.multinomial(probs.flatten(0, 1), 1, generator=generator).view(probs.shape[:-1])


@torch.no_grad()
def sample(model, process: GaussianProcess, tokenizer, prompt: GaussianPrompt, options: GaussianSamplingOptions,
           seed: int | None = 0, record_trace: bool = True) -> GaussianResult:
    """Denoise the prompt's generated positions from pure noise (see the module docstring)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu")
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    was_training = model.training
    model.eval()
    ids = prompt.input_ids.to(device)
    mask = prompt.attention_mask.to(device)
    gen = prompt.generate.to(device)[..., None]  # (B, L, 1)
    fixed = model.embed(ids)  # (B, L, d): the clean embeddings of the fixed text
    # Only <unk> is never written (_rounding_logits), not all of diffusion/text/tokens.py's banned_ids:
    # an unconditional row generates its own <s> and </s> (gaussian_prompt).
    banned = [] if tokenizer.unk_token_id is None else [tokenizer.unk_token_id]
    shape = fixed.shape

    def noise() -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device=device, dtype=fixed.dtype)

    x = torch.where(gen, noise(), fixed)  # x_N: pure noise where generated
    synchronize(device)
    started = time.perf_counter()
    estimate = None
    trace = []
    steps = options.schedule_of_steps(process)
    for k, k_prev in steps:
        ks = model.position_steps(torch.full((shape[0],), k, dtype=torch.long, device=device), ~gen[..., 0])
        x = torch.where(gen, x, fixed)  # partial noising: the fixed text stays clean
        x0_hat = model(x, ks, mask, estimate)  # (B, L, d)
        if options.clamp_temperature is not None:
            x0_hat = model.embed(_draw(model, x0_hat, options.clamp_temperature, generator, banned).to(device))
        elif options.clamp:
            x0_hat = model.embed(_round(model, x0_hat, banned)[0])
        x0_hat = torch.where(gen, x0_hat, fixed)
        estimate = None if options.no_self_conditioning else x0_hat
        if record_trace:
            rounded, probs = _round(model, x0_hat, banned)
            norm = float(x.norm(dim=-1)[prompt.generate.to(device)].mean()) if prompt.generate.any() else 0.0
            synchronize(device)
            trace.append(GaussianStep(k, rounded.cpu(), probs.cpu(), norm, time.perf_counter() - started))
        if options.sampler == "ddpm":
            x = process.ddpm_step(x, k, x0_hat, noise())
        else:
            x = process.ddim_step(x, k, k_prev, x0_hat, options.eta, noise() if options.eta > 0 else None)
    final, _ = _round(model, x0_hat, banned)
    final = torch.where(prompt.generate.to(device), final, ids).cpu()
    model.train(was_training)
    texts = [decode_text(tokenizer, row[:int(n)].tolist()) for row, n in zip(final, prompt.attention_mask.sum(1),
                                                                               strict=True)]
    return GaussianResult(final, texts, trace, len(steps), prompt.generate, prompt.attention_mask)


def length_quantiles(lengths, n: int = 21) -> list[int]:
    """The 0%, 5%, ..., 100% quantiles of the training rows' lengths: what ``sample_lengths`` draws from."""
    values = torch.tensor(sorted(int(x) for x in lengths), dtype=torch.float64)
    return [int(round(float(q))) for q in torch.quantile(values, torch.linspace(0, 1, n, dtype=torch.float64))]


def sample_lengths(diffusion_config, max_length: int | None, n: int, seed: int | None = 0) -> list[int]:
    """Lengths of ``n`` texts to generate, ``<s>`` and ``</s>`` included.

    Given ``max_length`` (--max-length): every text has it.  Else drawn from the training
    lengths the checkpoint records (``sample_lengths``: its quantiles), so texts are as long as
    the corpus's are; a checkpoint without them generates 64 positions.
    """
    quantiles = getattr(diffusion_config, "sample_lengths", None) if diffusion_config is not None else None
    if max_length is not None or not quantiles:
        return [max_length or 64] * n
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    # between two neighbouring quantiles, uniformly: a piecewise-linear inverse CDF
    u = torch.rand(n, generator=generator, dtype=torch.float64) * (len(quantiles) - 1)
    low = u.floor().long().clamp(max=len(quantiles) - 2)
    q = torch.tensor(quantiles, dtype=torch.float64)
    values = q[low] + (u - low) * (q[low + 1] - q[low])
    return [max(3, int(round(float(v)))) for v in values]


def trace_lines(tokenizer, result: GaussianResult, row: int, process: GaussianProcess, n_lines: int = 10) -> list[str]:
    """About ``n_lines`` evenly spaced steps of one row's trace, each as its rounded text (for --show-steps)."""
    if not result.trace:
        return []
    n = int(result.attention_mask[row].sum())
    picks = sorted({round(i * (len(result.trace) - 1) / max(1, n_lines - 1)) for i in range(n_lines)})
    lines = []
    for i in picks:
        step = result.trace[i]
        text = decode_text(tokenizer, step.ids[row, :n].tolist())
        confidence = float(step.probs[row, :n].mean())
        lines.append(f"k {step.step:>4} (t {step.step / process.num_steps:.2f}, mean p {confidence:.2f}): {text}")
    return lines


def lengths_after_prompt(diffusion_config, n: int, prompt_tokens: int, max_length: int, seed: int | None = 0) -> list[int]:
    """Row lengths (``<s>`` and ``</s>`` included) for continuing a prompt of ``prompt_tokens`` tokens:
    drawn from the training lengths, kept in [prompt + 3, ``max_length``] (at least one generated token).

    A Gaussian row has no end-of-text decision of its own, its length is it; drawing it from the
    corpus gives texts as long as the corpus's, as the other generators' are when they end.
    """
    drawn = sample_lengths(diffusion_config, None, n, seed=seed)
    return [min(max(length, prompt_tokens + 3), max_length) for length in drawn]
