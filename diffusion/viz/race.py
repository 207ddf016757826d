"""The race: diffusion and the autoregressive baseline on one wall-clock timeline, frame by frame.

* ``timed_decode``: the diffusion decoder (diffusion/masked/unmasking.py) with the time at which
  every step's state was ready (the causal side times its tokens itself: diffusion/text/causal.py).
* ``diffusion_panel`` / ``causal_panel`` / ``render_comparison``: a shared wall-clock timeline cut
  into equal time slices; every frame shows both models as they stood at that moment, the
  diffusion model on top (all positions refined together), GPT-2 below (one token after another);
  ``gaussian_panel`` adds a Gaussian sampler's lane (its estimate rounded to tokens, coloured by
  rounding probability as in diffusion/viz/rendering.py's denoising frames).

    result, step_times, seconds = timed_decode(model, tokenizer, prompt, options)
    causal = generate_causal(gpt2, gpt2_tokenizer, causal_context(gpt2_tokenizer, "A dog is"), 30)
    times = frame_times(max(seconds, causal.seconds), 40)
    frames = render_comparison([diffusion_panel(...), causal_panel(...)], times)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from PIL import Image, ImageDraw

from diffusion.device import synchronize
from diffusion.masked.unmasking import DecodeOptions, DecodeResult, Prompt, decode
from diffusion.text.causal import CausalResult
from diffusion.text.tokens import token_strings
from diffusion.viz import rendering
from diffusion.viz.rendering import MUTED, TITLE_COLOR, Piece, Style, font, step_pieces


# -------------------------------------------------------------------------- the diffusion side
def timed_decode(model, tokenizer, prompt: Prompt, options: DecodeOptions) -> tuple[DecodeResult, list[float], float]:
    """decode(), and for every trace entry the seconds after which it was ready (entry 0: 0.0).

    The decoder stamps each state as it records it (Step.seconds), whatever kind of pass made it
    (a full pass, or a cached block pass that never calls the model as a whole).
    """
    device = next(model.parameters()).device
    synchronize(device)
    started = time.perf_counter()
    result = decode(model, tokenizer, prompt, options)
    synchronize(device)
    seconds = time.perf_counter() - started
    step_times = [0.0] + [min(step.seconds, seconds) for step in result.trace[1:]]
    if len(step_times) > 1:
        step_times[-1] = seconds  # the last state counts as ready when decode() returns, with its texts
    return result, step_times, seconds


# ------------------------------------------------------------------------------- the timeline
def frame_times(total: float, n_frames: int) -> list[float]:
    """``n_frames`` equally spaced moments from 0 to ``total`` seconds (both included)."""
    if n_frames < 2:
        raise ValueError(f"--num-frames must be at least 2, got {n_frames}")
    return [total * j / (n_frames - 1) for j in range(n_frames)]


def _state_at(event_times: list[float], t: float) -> int:
    """How many events happened by time t (event i at ``event_times[i]``)."""
    return sum(e <= t + 1e-12 for e in event_times)


@dataclass
class PanelFrame:
    pieces: list[Piece]
    status: str  # "0.42 s · step 3 / 10 · 24 / 60 tokens · 3 forward passes"
    share: float  # of the side's tokens done, for its bar


@dataclass
class Panel:
    title: str  # "Diffusion (masked LM): masked-base"
    note: str  # a line under the title ('' for none), e.g. GPT-2's left-context-only warning
    frames: list[PanelFrame]


def _clock(t: float, total: float) -> str:
    return f"{min(t, total):.2f} s" + (" \u00b7 done" if t >= total else "")


def diffusion_panel(title: str, note: str, tokenizer, trace, step_times: list[float], kinds: list[str],
                    times: list[float], row: int = 0, forward_passes: int | None = None) -> Panel:
    """The diffusion model at each moment of ``times``: its latest finished step of ``trace`` (row ``row``).

    Its status counts the text's tokens only: the generated positions before the first committed
    ``</s>`` (the tail after it is dropped, and drawn as one end mark).  ``forward_passes`` (the
    decoder's count) caps the passes shown: the step that fills an ended text's tail is no pass.
    """
    n_steps = len(trace) - 1
    total = step_times[-1]
    frames, previous = [], 0
    for t in times:
        s = _state_at(step_times[1:], t)  # steps finished by t
        now, before = trace[s], trace[previous]
        revealed = (before.masked[row] & ~now.masked[row]).tolist()  # new since the previous frame
        ids, masked = now.ids[row].tolist(), now.masked[row].tolist()
        pieces = step_pieces(token_strings(tokenizer, ids), masked, revealed, kinds, tokenizer.eos_token)
        done, n_text = _text_counts(ids, masked, kinds, tokenizer.eos_token_id)
        status = (f"{_clock(t, total)} \u00b7 step {s} / {n_steps} \u00b7 {done} / {n_text} tokens "
                  f"\u00b7 {s if forward_passes is None else min(s, forward_passes)} forward passes")
        frames.append(PanelFrame(pieces, status, done / n_text if n_text else 1.0))
        previous = s
    return Panel(title, note, frames)


def gaussian_panel(title: str, note: str, tokenizer, trace, seconds: float, kinds: list[str], times: list[float],
                   row: int = 0) -> Panel:
    """The Gaussian sampler at each moment of ``times``: its latest estimate, every generated position's
    nearest token coloured by its rounding probability (diffusion/gaussian/sampling.py's trace)."""
    step_times = [step.seconds for step in trace]
    frames = []
    for t in times:
        s = _state_at(step_times, t)  # model calls finished by t
        if s == 0:  # before the first call: pure noise, nothing to round yet
            pieces = rendering.denoising_pieces(["\u00b7"] * len(kinds), [0.0] * len(kinds), kinds)
            status = f"{_clock(t, seconds)} \u00b7 pure noise \u00b7 0 / {len(trace)} forward passes"
        else:
            step = trace[s - 1]
            pieces = rendering.denoising_pieces(token_strings(tokenizer, step.ids[row].tolist()),
                                                step.probs[row].tolist(), kinds, tokenizer.eos_token)
            generated = [p.confidence for p in pieces if p.kind == rendering.ROUNDED]
            mean_p = sum(generated) / len(generated) if generated else 1.0
            status = (f"{_clock(t, seconds)} \u00b7 k = {step.step} \u00b7 {s} / {len(trace)} forward passes "
                      f"\u00b7 mean rounding probability {mean_p:.2f}")
        frames.append(PanelFrame(pieces, status, s / len(trace) if trace else 1.0))
    return Panel(title, note, frames)


def _text_counts(ids: list[int], masked: list[bool], kinds: list[str], eos_id: int | None) -> tuple[int, int]:
    """(revealed, all) generated positions of one row up to its first committed end of text."""
    done = count = 0
    for token, is_masked, kind in zip(ids, masked, kinds, strict=True):
        if kind != "generated":
            continue
        if not is_masked and token == eos_id:
            break
        count += 1
        done += not is_masked
    return done, count


def causal_panel(title: str, note: str, tokenizer, context: list[int], result: CausalResult, times: list[float],
                 row: int = 0) -> Panel:
    """The causal model at each moment of ``times``: the context and the tokens drawn by then (row ``row``).

    Counts the text's tokens only (the end of text it draws last is not one).
    """
    generated = result.ids[row].tolist()
    n_total = result.lengths[row]
    special = set(tokenizer.all_special_ids)
    context_kinds = ["special" if i in special else "prefix" for i in context]
    frames, previous = [], 0
    for t in times:
        n = _state_at(result.token_times, t)
        ids = context + generated[:n]
        kinds = context_kinds + ["generated"] * n
        revealed = [False] * len(context) + [previous <= j for j in range(n)]
        pieces = step_pieces(token_strings(tokenizer, ids), [False] * len(ids), revealed, kinds, tokenizer.eos_token)
        status = f"{_clock(t, result.seconds)} \u00b7 {min(n, n_total)} / {n_total} tokens \u00b7 {n} forward passes"
        frames.append(PanelFrame(pieces, status, min(n, n_total) / n_total if n_total else 1.0))
        previous = n
    return Panel(title, note, frames)


# ---------------------------------------------------------------------------------- the frames
# Vertical rhythm of a frame (pixels); the text sizes come from rendering.Style.
_GAP = 26


def _panel_header_height(panel: Panel, style: Style) -> int:
    # title, status line, bar, the optional note, a gap before the text
    return style.text_size + 10 + style.small_size + 12 + style.bar_height + 14 + (style.small_size + 10 if panel.note else 0)


def _frame_header_height(style: Style) -> int:
    return style.margin + style.title_size + 14 + style.small_size + 14 + style.bar_height + _GAP


def _bar(draw: ImageDraw.ImageDraw, x0: float, x1: float, y: float, share: float, style: Style, fill) -> None:
    r = style.bar_height // 2
    draw.rounded_rectangle((x0, y, x1, y + style.bar_height), radius=r, fill=rendering.BAR_TRACK)
    if share > 0:
        draw.rounded_rectangle((x0, y, x0 + max(style.bar_height, (x1 - x0) * min(share, 1.0)), y + style.bar_height),
                               radius=r, fill=fill)


TIME_FILL = (250, 204, 21)  # the shared clock's bar: amber, apart from the blue token bars


def fit_width(draw, text: str, font_, width: float) -> str:
    """``text``, cut at the end with an ellipsis if it is wider than ``width`` pixels (a long settings title)."""
    if draw.textlength(text, font=font_) <= width:
        return text
    while text and draw.textlength(text + "\u2026", font=font_) > width:
        text = text[:-1]
    return text.rstrip(" ,\u00b7") + "\u2026"


def render_comparison(panels: list[Panel], times: list[float], style: Style | None = None,
                      title: str = "Diffusion vs autoregressive") -> list[Image.Image]:
    """One RGB frame per moment of ``times``; every frame has the same size.

    Each panel is as tall as its own longest text over all frames, so neither half jumps.
    """
    style = style or Style()
    lines = [max(len(rendering.layout(f.pieces, style)) for f in panel.frames) for panel in panels]
    height = (_frame_header_height(style) + sum(_panel_header_height(p, style) + max(1, n) * style.line_height + _GAP
                                                for p, n in zip(panels, lines, strict=True))
              + rendering._legend_height(style))
    total = times[-1] if times else 0.0
    images = []
    for j, t in enumerate(times):
        image = Image.new("RGB", (style.width, height), rendering.BACKGROUND)
        draw = ImageDraw.Draw(image)
        m, small, right = style.margin, font(style.small_size), style.width - style.margin
        y = m
        draw.text((m, y), title, font=font(style.title_size, bold=True), fill=TITLE_COLOR)
        y += style.title_size + 14
        draw.text((m, y), f"wall clock {t:.2f} s of {total:.2f} s \u00b7 frame {j + 1} / {len(times)}", font=small,
                  fill=MUTED)
        y += style.small_size + 14
        _bar(draw, m, right, y, t / total if total else 1.0, style, TIME_FILL)
        y = _frame_header_height(style)
        for panel, n_lines in zip(panels, lines, strict=True):
            frame = panel.frames[j]
            draw.line((m, y - _GAP // 2, right, y - _GAP // 2), fill=rendering.BAR_TRACK, width=1)
            title_font = font(style.text_size, bold=True)
            draw.text((m, y), fit_width(draw, panel.title, title_font, right - m), font=title_font, fill=TITLE_COLOR)
            y += style.text_size + 10
            draw.text((m, y), frame.status, font=small, fill=MUTED)
            y += style.small_size + 12
            _bar(draw, m, right, y, frame.share, style, rendering.BAR_FILL)
            y += style.bar_height + 14
            if panel.note:
                draw.text((m, y), panel.note, font=small, fill=(251, 146, 60))  # orange: a caveat
                y += style.small_size + 10
            for line in rendering.layout(frame.pieces, style):
                # the renderer's own line drawing (green box and sparkle for new tokens)
                rendering._draw_line(draw, line, m, y + (style.line_height - style.text_size) // 2, style)
                y += style.line_height
            y += (max(1, n_lines) - len(rendering.layout(frame.pieces, style))) * style.line_height + _GAP
        rendering._draw_legend(draw, height - rendering._legend_height(style) + 28, style)
        images.append(image)
    return images
