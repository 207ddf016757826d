"""Pictures of generation: one PNG frame per decoding step, and the animated GIF.

    pieces = step_pieces(tokens, masked, revealed, kinds)      # one trace step -> what to draw
    frames = render_frames([pieces_0, pieces_1, ...], header="greedy, linear, 10 steps")
    save_gif(frames, "text_diffusion_animation.gif", frame_ms=800)

A frame shows, top to bottom: "Step k / N", a blue bar with the share of generated positions
revealed so far, the text wrapped to the frame (prompt tokens light blue, still-masked positions
grey ``[MASK]``, tokens revealed in this step green with a sparkle, earlier ones white), and a
legend.  Every frame of an animation has the same size: the height is that of the step that
needs the most lines, so the GIF does not jump.

The font is DejaVu Sans from matplotlib's own data folder, so frames look the same on every
machine (Pillow's built-in bitmap font has no sizes, and system fonts differ).  The sparkle is
drawn as a shape because the emoji (U+2728) is in no font matplotlib ships.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw, ImageFont

MASK_TEXT = "[MASK]"
END_TEXT = "\u220e"  # the end of a text ("end of proof"), drawn once in place of the </s> tail
# position kinds (also the viewer's CSS classes, see view_animation.html)
MASK, NEW, REVEALED, PREFIX, END = "mask", "new", "revealed", "prefix", "end"

BACKGROUND = (24, 26, 33)
COLORS = {
    PREFIX: (125, 211, 252),  # light blue: the prompt, never changed by the decoder
    REVEALED: (240, 240, 240),  # white: committed in an earlier step
    NEW: (74, 222, 128),  # green: committed in this step
    MASK: (120, 126, 138),  # grey: still masked
    END: (98, 104, 116),  # dim: where the text ends; nothing after it is part of the text
}
NEW_BACKGROUND = (22, 78, 44)
TITLE_COLOR = (250, 250, 250)
MUTED = (160, 166, 178)
BAR_FILL = (59, 130, 246)  # blue progress bar
BAR_TRACK = (55, 60, 72)
LEGEND = [(PREFIX, "prompt (fixed)"), (NEW, "revealed in this step"), (REVEALED, "revealed earlier"),
          (MASK, "still masked"), (END, "end of text")]


# Gaussian denoising frames: a position's nearest token, coloured by its rounding probability p,
# from dim red (p near 0: still noise) through amber to bright green (p near 1: settled).
ROUNDED = "rounded"
CONFIDENCE_STOPS = [(0.0, (150, 70, 70)), (0.5, (235, 180, 60)), (1.0, (110, 235, 140))]


def confidence_colour(p: float | None) -> tuple[int, int, int]:
    p = min(1.0, max(0.0, p or 0.0))
    for (p0, c0), (p1, c1) in zip(CONFIDENCE_STOPS, CONFIDENCE_STOPS[1:], strict=False):
        if p <= p1:
            w = (p - p0) / (p1 - p0)
            return tuple(round(a + w * (b - a)) for a, b in zip(c0, c1, strict=True))
    return CONFIDENCE_STOPS[-1][1]


FRAME_NAME = re.compile(r"^frame_\d{3,}\.png$")


def position_kinds(prompt, tokenizer, row: int = 0) -> list[str]:
    """Per position of one prompt row: 'generated', 'prefix' (fixed text) or 'special' (<s>, </s>: not drawn).

    prompt: a diffusion/masked/unmasking.py ``Prompt``.  Only the template's own special tokens
    are hidden; a </s> the model draws is shown, since it ends the text (decoding drops what
    follows it).
    """
    special = set(tokenizer.all_special_ids)
    kinds = []
    for token, generated in zip(prompt.input_ids[row].tolist(), prompt.generate[row].tolist(), strict=True):
        kinds.append("generated" if generated else "special" if token in special else "prefix")
    return kinds


@dataclass
class Piece:
    """One position as drawn: its text (no leading space), kind, and whether a space goes before it.

    ``confidence`` (Gaussian denoising frames, kind ROUNDED): the rounding probability of the
    token, which sets its colour.
    """

    text: str
    kind: str
    space_before: bool
    confidence: float | None = None


def step_pieces(tokens: list[str], masked: list[bool], revealed: list[bool], kinds: list[str],
                end_token: str | None = None) -> list[Piece]:
    """One trace step -> the pieces to draw.

    tokens: the step's token strings (``token_strings``: ' word', 'ing', ...); kinds: per position
    'special' (not drawn: the template's <s> and </s>), 'prefix' (fixed text) or 'generated'.
    A byte-level BPE token that starts with a space begins a new word; a [MASK] is always a word
    of its own, so the token after it gets a space too.

    ``end_token`` (the tokenizer's ``</s>``): the first generated position that holds it ends the
    text. It is drawn once, as a quiet end mark, and nothing after it is drawn: decoding drops the
    ``</s>`` tail (diffusion/text/tokens.py), so a picture of it would show end markers, not text.
    """
    pieces: list[Piece] = []
    after_mask = False
    for token, is_masked, is_new, kind in zip(tokens, masked, revealed, kinds, strict=True):
        if kind == "special":
            continue
        if is_masked:
            pieces.append(Piece(MASK_TEXT, MASK, True))
            after_mask = True
            continue
        if kind == "generated" and end_token is not None and token == end_token:
            pieces.append(Piece(END_TEXT, END, True))
            break  # the rest is not part of the text
        # control characters would break the line layout; show a newline as a return arrow
        text = token.replace("\r", "").replace("\n", " \u21b5 ").replace("\t", " ")
        space = text.startswith(" ") or after_mask or not pieces
        text = text.strip() or "\u00b7"  # a token of only spaces still needs a visible mark
        pieces.append(Piece(text, PREFIX if kind == "prefix" else NEW if is_new else REVEALED, space))
        after_mask = False
    return pieces


@cache
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name), size)


@dataclass
class Style:
    width: int = 960
    margin: int = 36
    title_size: int = 28
    text_size: int = 21
    small_size: int = 15
    line_height: int = 36  # text_size * ~1.7: room above each line for the sparkle
    bar_height: int = 14


def layout(pieces: list[Piece], style: Style) -> list[list[tuple[Piece, float]]]:
    """Wrap the pieces into lines no wider than the text column: [[(piece, x), ...], ...].

    Lines break between words; a word wider than a whole line breaks between its tokens.
    """
    f = font(style.text_size)
    space = f.getlength(" ")
    max_width = style.width - 2 * style.margin
    words: list[list[Piece]] = []
    for piece in pieces:
        if piece.space_before or not words:
            words.append([piece])
        else:
            words[-1].append(piece)
    lines: list[list[tuple[Piece, float]]] = [[]]
    x = 0.0
    for word in words:
        widths = [f.getlength(p.text) for p in word]
        start = x + (space if lines[-1] else 0.0)
        if lines[-1] and start + sum(widths) > max_width:
            lines.append([])
            start = 0.0
        x = start
        for piece, w in zip(word, widths, strict=True):
            if lines[-1] and x + w > max_width:  # only for a word longer than a line
                lines.append([])
                x = 0.0
            lines[-1].append((piece, x))
            x += w
    return lines


def _header_height(style: Style) -> int:
    # title, the percentage line, the progress bar, a gap before the text
    return style.margin + style.title_size + 14 + style.small_size + 16 + style.bar_height + 28


def _legend_rows(style: Style) -> list[list[tuple[str, str, float]]]:
    """The legend entries (kind, label, x) in rows that fit the width (one row at the default width)."""
    small = font(style.small_size)
    rows: list[list[tuple[str, str, float]]] = [[]]
    x = 0.0
    for kind, label in LEGEND:
        w = small.getlength(MASK_TEXT if kind == MASK else END_TEXT if kind == END else "word") + 10 + small.getlength(label)
        if rows[-1] and x + w > style.width - 2 * style.margin:
            rows.append([])
            x = 0.0
        rows[-1].append((kind, label, x))
        x += w + 28
    return rows


def _legend_height(style: Style) -> int:
    return 28 + len(_legend_rows(style)) * (style.small_size + 14) + style.margin


def frame_height(n_lines: int, style: Style) -> int:
    return _header_height(style) + max(1, n_lines) * style.line_height + _legend_height(style)


def _sparkle(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, color) -> None:
    """A four-pointed star (the sparkle of the original animation, drawn since no font has it)."""
    inner = r * 0.28
    points = [(cx, cy - r), (cx + inner, cy - inner), (cx + r, cy), (cx + inner, cy + inner),
              (cx, cy + r), (cx - inner, cy + inner), (cx - r, cy), (cx - inner, cy - inner)]
    draw.polygon(points, fill=color)


def _draw_line(draw: ImageDraw.ImageDraw, line: list[tuple[Piece, float]], x0: float, y: float, style: Style) -> None:
    """One wrapped line; a run of new tokens inside one word ('.', '..') shares one green box and sparkle."""
    f = font(style.text_size)
    runs: list[tuple[float, float]] = []  # (left, right) of each run of new pieces
    for piece, x in line:
        if piece.kind != NEW:
            continue
        left, right = x0 + x, x0 + x + f.getlength(piece.text)
        if runs and not piece.space_before and abs(runs[-1][1] - left) < 0.5:
            runs[-1] = (runs[-1][0], right)
        else:
            runs.append((left, right))
    for left, right in runs:
        draw.rounded_rectangle((left - 2, y - 2, right + 2, y + style.text_size + 5), radius=5, fill=NEW_BACKGROUND)
        _sparkle(draw, right + 2, y - 5, 6, COLORS[NEW])
    for piece, x in line:
        colour = confidence_colour(piece.confidence) if piece.kind == ROUNDED else COLORS[piece.kind]
        draw.text((x0 + x, y), piece.text, font=f, fill=colour)


def _draw_title(draw: ImageDraw.ImageDraw, title: str, header: str, style: Style, y: int) -> None:
    """The frame's title at the left and the settings (``header``) right-aligned on its baseline.

    A header too long to fit beside the title is broken at its commas into two lines, the second
    on the baseline, so that it never runs over the title.
    """
    m, small, big = style.margin, font(style.small_size), font(style.title_size, bold=True)
    draw.text((m, y), title, font=big, fill=TITLE_COLOR)
    if not header:
        return
    baseline = y + big.getmetrics()[0]  # level with the title's baseline
    room = style.width - 2 * m - big.getlength(title) - 20
    lines = [header]
    if small.getlength(header) > room and ", " in header:
        parts = header.split(", ")
        cut = max(1, len(parts) // 2)
        while cut < len(parts) - 1 and small.getlength(", ".join(parts[cut:])) > room:
            cut += 1
        lines = [", ".join(parts[:cut]) + ",", ", ".join(parts[cut:])]
    step = style.small_size + 4
    for i, line in enumerate(reversed(lines)):
        draw.text((style.width - m, baseline - i * step), line, font=small, fill=MUTED, anchor="rs")


def render_frame(pieces: list[Piece], step: int, n_steps: int, header: str = "", height: int | None = None,
                 style: Style | None = None) -> Image.Image:
    """One step as an RGB image of ``style.width`` x ``height`` (default: as tall as this step needs)."""
    style = style or Style()
    lines = layout(pieces, style)
    height = height or frame_height(len(lines), style)
    image = Image.new("RGB", (style.width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    m, small = style.margin, font(style.small_size)

    y = m
    _draw_title(draw, f"Step {step} / {n_steps}", header, style, y)
    y += style.title_size + 14

    # The bar: the share of generated positions revealed so far (it follows the schedule, not the step count).
    generated = [p for p in pieces if p.kind not in (PREFIX, END)]  # the text's positions, up to its end
    n_masked = sum(p.kind == MASK for p in generated)
    revealed_share = 1.0 - n_masked / len(generated) if generated else 1.0
    masked_pct = round(100 * (1 - revealed_share))
    label = (f"{masked_pct}% masked \u00b7 {100 - masked_pct}% revealed  "
             f"({len(generated) - n_masked} of {len(generated)} positions)")
    draw.text((m, y), label, font=small, fill=MUTED)
    y += style.small_size + 16
    bar_right = style.width - m
    draw.rounded_rectangle((m, y, bar_right, y + style.bar_height), radius=style.bar_height // 2, fill=BAR_TRACK)
    if revealed_share > 0:
        right = m + max(style.bar_height, (bar_right - m) * revealed_share)
        draw.rounded_rectangle((m, y, right, y + style.bar_height), radius=style.bar_height // 2, fill=BAR_FILL)

    y = _header_height(style)
    for line in lines:
        _draw_line(draw, line, m, y + (style.line_height - style.text_size) // 2, style)
        y += style.line_height

    _draw_legend(draw, height - _legend_height(style) + 28, style)
    return image


def _draw_legend(draw: ImageDraw.ImageDraw, y: float, style: Style) -> None:
    small = font(style.small_size)
    for row in _legend_rows(style):
        for kind, label, x in row:
            x += style.margin
            sample = MASK_TEXT if kind == MASK else END_TEXT if kind == END else "word"
            w = small.getlength(sample)
            if kind == NEW:
                draw.rounded_rectangle((x - 3, y - 2, x + w + 3, y + style.small_size + 4), radius=4, fill=NEW_BACKGROUND)
                _sparkle(draw, x + w + 2, y - 3, 5, COLORS[NEW])
            draw.text((x, y), sample, font=small, fill=COLORS[kind])
            draw.text((x + w + 10, y), label, font=small, fill=MUTED)
        y += style.small_size + 14


def render_frames(steps: list[list[Piece]], header: str = "", style: Style | None = None) -> list[Image.Image]:
    """Every step of one trace, all frames as tall as the step that needs the most lines."""
    style = style or Style()
    n_lines = max(len(layout(pieces, style)) for pieces in steps)
    height = frame_height(n_lines, style)
    return [render_frame(pieces, k, len(steps) - 1, header, height, style) for k, pieces in enumerate(steps)]


def save_gif(frames: list[Image.Image], path: str, frame_ms: int = 800, hold_last: int = 3) -> None:
    """An endlessly looping GIF, every frame ``frame_ms`` long, the last held ``hold_last`` times longer.

    GIF stores delays in hundredths of a second, so ``frame_ms`` is rounded to 10 ms.  Each frame
    gets its own palette from Pillow's quantiser (the frames have few colours: a dark background,
    five text colours and their anti-aliasing).
    """
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * hold_last]
    first, *rest = frames
    # disposal 1 (leave the frame in place): Pillow then stores only the region that changed
    first.save(path, format="GIF", save_all=True, append_images=rest, duration=durations, loop=0, disposal=1,
               optimize=False)


def write_frames(frames: list[Image.Image], folder: str) -> list[str]:
    """frame_000.png ... into folder; frames left from an earlier, longer run are deleted."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"frame_{k:03d}.png") for k in range(len(frames))]
    for stale in set(glob.glob(os.path.join(folder, "frame_*.png"))) - set(paths):
        if FRAME_NAME.match(os.path.basename(stale)):  # only our own numbered frames
            os.remove(stale)
    for frame, path in zip(frames, paths, strict=True):
        frame.save(path, optimize=True)
    return paths


def check_writable(folder: str, flag: str) -> None:
    """One line naming ``flag`` when ``folder`` cannot be written (or created), before any work is done.

    Creates nothing: it checks the folder, or the nearest existing folder above it.
    """
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"cannot write into {folder!r} ({flag}): {existing!r} is a file")
    if not os.access(existing, os.W_OK):
        raise ValueError(f"cannot write into {folder!r} ({flag}): {existing!r} is not writable")


def write_all_or_nothing(frames: list[Image.Image], frames_dir: str, gif_path: str, frame_ms: int,
                         texts: dict[str, str]) -> list[str]:
    """The frames, the GIF and the text files (path -> content) of one command: all of them, or none.

    Everything is written under temporary names first and renamed at the end, so a failure (a full
    disk, a read-only folder) leaves the earlier outputs as they were.  Returns the frame paths.
    """
    staged: list[tuple[str, str]] = []  # (temporary, final)
    frames_tmp = frames_dir.rstrip("/") + ".tmp"
    try:
        for folder in {os.path.dirname(os.path.abspath(p)) for p in [frames_dir, gif_path, *texts]}:
            os.makedirs(folder, exist_ok=True)
        shutil.rmtree(frames_tmp, ignore_errors=True)
        write_frames(frames, frames_tmp)
        staged.append((frames_tmp, frames_dir))
        save_gif(frames, gif_path + ".tmp", frame_ms=frame_ms)
        staged.append((gif_path + ".tmp", gif_path))
        for path, content in texts.items():
            with open(path + ".tmp", "w") as f:
                f.write(content)
            staged.append((path + ".tmp", path))
    except OSError as err:
        for tmp, _ in staged:
            shutil.rmtree(tmp, ignore_errors=True) if os.path.isdir(tmp) else os.remove(tmp)
        shutil.rmtree(frames_tmp, ignore_errors=True)
        where = os.path.dirname(err.filename) if isinstance(err.filename, str) else frames_dir
        raise ValueError(f"cannot write into {where!r}: {err.strerror or err}; nothing was written") from None
    for tmp, final in staged:
        if os.path.isdir(final) and os.path.isdir(tmp):
            # keep files that are not ours (write_frames deletes only numbered frames)
            for name in os.listdir(final):
                if not FRAME_NAME.match(name) and not os.path.exists(os.path.join(tmp, name)):
                    os.replace(os.path.join(final, name), os.path.join(tmp, name))
            shutil.rmtree(final)
        os.replace(tmp, final)
    return [os.path.join(frames_dir, os.path.basename(p)) for p in sorted(os.listdir(frames_dir)) if FRAME_NAME.match(p)]


# ------------------------------------------------------------------ Gaussian denoising frames
def denoising_pieces(tokens: list[str], probs: list[float], kinds: list[str], end_token: str | None = None) -> list[Piece]:
    """One step of a Gaussian trace -> pieces: every generated position's nearest token, coloured by ``probs``.

    kinds: per position 'generated', 'prefix' (fixed text, light blue) or 'special' (the
    template's <s> and </s>: not drawn).  A generated ``</s>`` ends the text, as in the masked
    frames; a generated ``<s>`` or padding token is drawn as a dot (it is dropped from the text), except in
    the first generated slot of an unconditional row, where ``<s>`` is the start the model was taught.
    """
    pieces: list[Piece] = []
    for token, p, kind in zip(tokens, probs, kinds, strict=True):
        if kind == "special":
            continue
        special = token.startswith("<") and token.endswith(">")  # <s>, </s>, <pad>, <mask>: not text
        if kind == "generated" and not pieces and (special or token == end_token):
            continue  # an unconditional row's <s> slot (its <s>, or a </s> guess): the text starts after it
        if kind == "generated" and end_token is not None and token == end_token:
            pieces.append(Piece(END_TEXT, END, True))
            break
        text = token.replace("\r", "").replace("\n", " \u21b5 ").replace("\t", " ")
        space = text.startswith(" ") or not pieces
        text = text.strip() or "\u00b7"
        if special:
            text, space = "\u00b7", True
        pieces.append(Piece(text, PREFIX if kind == "prefix" else ROUNDED, space, confidence=p))
    return pieces


def _draw_confidence_legend(draw: ImageDraw.ImageDraw, y: float, style: Style) -> None:
    small = font(style.small_size)
    x = style.margin
    draw.text((x, y), "word", font=small, fill=COLORS[PREFIX])
    x += small.getlength("word") + 10
    draw.text((x, y), "prompt (fixed)", font=small, fill=MUTED)
    x += small.getlength("prompt (fixed)") + 28
    draw.text((x, y), "nearest token, rounding probability", font=small, fill=MUTED)
    x += small.getlength("nearest token, rounding probability") + 10
    for i, label in enumerate(("0", "0.5", "1")):
        p = i / 2
        draw.text((x, y), "word", font=small, fill=confidence_colour(p))
        x += small.getlength("word") + 4
        draw.text((x, y), label, font=small, fill=MUTED)
        x += small.getlength(label) + 14
    x += 14
    draw.text((x, y), END_TEXT, font=small, fill=COLORS[END])
    draw.text((x + small.getlength(END_TEXT) + 10, y), "end of text", font=small, fill=MUTED)


def render_denoising_frames(steps: list[list[Piece]], labels: list[tuple[str, float]], header: str = "",
                            style: Style | None = None) -> list[Image.Image]:
    """Frames of a Gaussian trace: per step its title (``labels[i] = ("k = 1000, t = 1.00", signal)``), a bar
    with the share of signal sqrt(alpha_bar) in x_k, and the rounded text.  All frames are one size."""
    style = style or Style()
    n_lines = max(len(layout(pieces, style)) for pieces in steps)
    height = frame_height(n_lines, style)
    frames = []
    for pieces, (title, signal) in zip(steps, labels, strict=True):
        image = Image.new("RGB", (style.width, height), BACKGROUND)
        draw = ImageDraw.Draw(image)
        m, small = style.margin, font(style.small_size)
        y = m
        _draw_title(draw, title, header, style, y)
        y += style.title_size + 14
        rounded = [p.confidence for p in pieces if p.kind == ROUNDED]
        mean_p = sum(rounded) / len(rounded) if rounded else 1.0
        draw.text((m, y), f"signal sqrt(alpha_bar) = {signal:.2f} \u00b7 mean rounding probability {mean_p:.2f}",
                  font=small, fill=MUTED)
        y += style.small_size + 16
        right = style.width - m
        draw.rounded_rectangle((m, y, right, y + style.bar_height), radius=style.bar_height // 2, fill=BAR_TRACK)
        if signal > 0:
            end = m + max(style.bar_height, (right - m) * signal)
            draw.rounded_rectangle((m, y, end, y + style.bar_height), radius=style.bar_height // 2, fill=BAR_FILL)
        y = _header_height(style)
        for line in layout(pieces, style):
            _draw_line(draw, line, m, y + (style.line_height - style.text_size) // 2, style)
            y += style.line_height
        _draw_confidence_legend(draw, height - _legend_height(style) + 28, style)
        frames.append(image)
    return frames
