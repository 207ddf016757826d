"""The interactive denoising explorer's library side: which models to offer, one trajectory per setting, a step as rows.

``streamlit run explorer.py`` has a page per kind of model (explorer_pages/); what two of them need,
and what the tests check without a browser, is here, with no Streamlit in it:

    choices = model_choices("image")                         # the folders a page offers, the default first
    folder = find_folder("results-image/final-model")        # a typed path: from here, else from the repository
    check_objective(folder, "image")                         # one line when it holds another kind of model
    generator = load_for("masked", folder)                   # the generator of diffusion/masked/, gaussian/, image/
    run = masked_trajectory(generator, MaskedRequest(prefix="dog:"), DecodeOptions(steps=16))
    run.steps[k].cells                                       # step k as display rows: token, state, probability
    chip_styler(run.steps[k].cells)                          # the same rows as coloured chips (a pandas Styler)

A trajectory is plain data (strings, floats, tensors), computed once per setting: the pages cache it
(``st.cache_data``), so moving the step slider re-displays and never samples again.

Model output stays data, never markup: tokens reach the page only as cell values of a dataframe
and as the text of ``st.code``, which Streamlit shows as text, so a token ``<img src=x onerror=...>``
is printed, not run.  The one place text from outside goes into Streamlit's Markdown (an error that
quotes a typed path) goes through :func:`markdown_literal` first.

The colours are the viewer's (view_animation.html, diffusion/viz/rendering.py): prompt light blue,
revealed in this step green, revealed earlier white, still masked grey, end of text dim; a Gaussian
step's nearest token from red (rounding probability 0) through amber to green (1).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass

import torch

from diffusion.checkpoint import ModelLoadError, check_length, load_diffusion_config, model_folders_in, quiet_loading
from diffusion.paths import (
    BUNDLED_GAUSSIAN_MODEL,
    BUNDLED_MASKED_MODEL,
    REPO_DIR,
    TRAINED_GAUSSIAN_MODEL,
    TRAINED_IMAGE_MODEL,
    TRAINED_MODEL,
)
from diffusion.text.tokens import token_strings
from diffusion.viz.rendering import (
    COLORS,
    END,
    LEGEND,
    MASK,
    MASK_TEXT,
    NEW,
    NEW_BACKGROUND,
    PREFIX,
    REVEALED,
    ROUNDED,
    confidence_colour,
    denoising_pieces,
    step_pieces,
)

# ------------------------------------------------------------------------------------ the pages
KINDS = ("masked", "gaussian", "image")
# kind -> (page file, title, icon), in the order of the navigation; explorer.py builds st.navigation from it.
PAGES = {
    "masked": ("explorer_pages/masked_text.py", "Masked text", ":material/text_fields:"),
    "gaussian": ("explorer_pages/gaussian_text.py", "Gaussian text", ":material/blur_on:"),
    "image": ("explorer_pages/images.py", "Images", ":material/image:"),
}
# What to run when a page finds no model of its kind (the quick tests; times on 2 CPU cores).
TRAIN_COMMANDS = {
    "masked": "python train.py --quick-test",
    "gaussian": "python train.py --quick-test --objective gaussian",
    "image": "python train.py --quick-test --objective image",
}
TRAIN_TIMES = {"masked": " (4.5 min on 2 CPU cores)", "gaussian": "", "image": " (4.5 min on 2 CPU cores)"}
MODEL_NOUNS = {"masked": "masked text", "gaussian": "Gaussian text", "image": "image"}

# The folders each page offers, in the order of preference (the first that exists is the default):
# the user's trained model before the bundled one, as generate.py chooses (diffusion/checkpoint.py's
# DEFAULT_MODELS). Relative paths are looked up from the current folder, then from the repository.
# The image page also offers the other runs the README's commands write (config.py's presets).
CANDIDATES = {
    "masked": [(TRAINED_MODEL, "trained"), (BUNDLED_MASKED_MODEL, "bundled")],
    "gaussian": [(TRAINED_GAUSSIAN_MODEL, "trained"), (BUNDLED_GAUSSIAN_MODEL, "bundled")],
    "image": [(TRAINED_IMAGE_MODEL, ""), ("results-image-unet/final-model", ""), ("results-image-dit/final-model", ""),
              ("results-image-text/final-model", "")],  # the label says the type and the conditioning
}
IMAGE_TYPES = {"UNetModel": "UNet", "DiTModel": "DiT"}  # config.json's architectures -> what people call them
CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


# ----------------------------------------------------------------------------- finding models
@dataclass(frozen=True)
class ModelChoice:
    """One folder a page offers in its model chooser."""

    path: str  # the folder, absolute
    label: str  # as the chooser shows it: 'results/final-model (trained)', 'results-image/checkpoint-800 (step 800, UNet)'
    model_type: str | None = None  # image models: UNet | DiT (from config.json)
    condition: str | None = None  # image models: 'label', 'text', or None (unconditional)


def find_folder(path: str, cwd: str | None = None) -> str | None:
    """The absolute folder ``path`` names: as given (absolute or from ``cwd``), else from the repository; None if neither."""
    path = os.path.expanduser(path.strip())
    if not path:
        return None
    tries = [path] if os.path.isabs(path) else [os.path.join(cwd or os.getcwd(), path), os.path.join(REPO_DIR, path)]
    return next((os.path.abspath(p) for p in tries if os.path.isdir(p)), None)


def shown_path(folder: str, cwd: str | None = None) -> str:
    """A folder as a person types it: relative to ``cwd`` (else to the repository) when inside it, else absolute."""
    for base in (cwd or os.getcwd(), REPO_DIR):
        relative = os.path.relpath(folder, base)
        if not relative.startswith(".."):
            return relative
    return folder


def image_info(folder: str) -> tuple[str | None, str | None]:
    """(UNet | DiT | None, 'label' | 'text' | None) of an image checkpoint, from its two config files."""
    try:
        with open(os.path.join(folder, "config.json")) as f:
            architectures = json.load(f).get("architectures") or []
    except (OSError, ValueError):
        architectures = []
    config = load_diffusion_config(folder)
    condition = None
    if config is not None:
        condition = config.condition or ("label" if config.class_names else None)
    return (IMAGE_TYPES.get(architectures[0]) if architectures else None), condition


def _holds(folder: str, kind: str) -> bool:
    """Whether ``folder`` holds a model of ``kind`` that the page can load (no weights are read)."""
    try:
        config = load_diffusion_config(folder)
    except ModelLoadError:
        return False  # a broken file: not offered (typed in, check_objective says what is wrong with it)
    if config is None:  # a plain masked LM folder (a hub download) has no diffusion_config.json
        return kind == "masked" and os.path.isfile(os.path.join(folder, "config.json"))
    return config.objective == kind


def model_choices(kind: str, cwd: str | None = None) -> list[ModelChoice]:
    """Every folder the ``kind`` page offers, the default first: each candidate that exists, then the
    checkpoint-N folders beside it (the latest first), those of the training run that wrote it."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of model {kind!r}; known: {', '.join(KINDS)}")
    found: list[tuple[str, str]] = []
    for path, why in CANDIDATES[kind]:
        folder = find_folder(path, cwd)
        if folder is None:
            continue
        found.append((folder, why))
        run = os.path.dirname(folder)
        steps = [n for n in model_folders_in(run) if CHECKPOINT_DIR.match(n)]
        found += [(os.path.join(run, n), f"step {CHECKPOINT_DIR.match(n).group(1)}") for n in reversed(steps)]
    choices, seen = [], set()
    for folder, why in found:
        real = os.path.realpath(folder)
        if real in seen or not _holds(folder, kind):
            continue
        seen.add(real)
        model_type, condition = image_info(folder) if kind == "image" else (None, None)
        conditioning = {"label": "labels", "text": "captions"}.get(condition, "unconditional") if kind == "image" else ""
        details = ", ".join(x for x in (why, model_type, conditioning) if x)
        label = f"{shown_path(folder, cwd)} ({details})"
        choices.append(ModelChoice(folder, label, model_type, condition))
    return choices


def no_model_line(kind: str) -> str:
    """The one line a page shows when it finds no model of its kind."""
    where = " or ".join(shown_path(p) if os.path.isabs(p) else p for p, _ in CANDIDATES[kind][:2])
    return (f"No {MODEL_NOUNS[kind]} model found (looked for {where}). Train one with "
            f"`{TRAIN_COMMANDS[kind]}`{TRAIN_TIMES[kind]}, or type a checkpoint folder in the sidebar.")


def check_objective(folder: str, kind: str) -> None:
    """A ModelLoadError of one line, naming the right page, when ``folder`` holds no ``kind`` model."""
    config = load_diffusion_config(folder)  # a broken file is its own one-line ModelLoadError
    shown = shown_path(folder)
    if config is None:
        if kind == "masked" and os.path.isfile(os.path.join(folder, "config.json")):
            return  # a masked LM without our settings file (a hub model): loads with defaults
        raise ModelLoadError(f"{shown} holds no diffusion_config.json: it is not a checkpoint of this toolkit "
                             f"(train one with {TRAIN_COMMANDS[kind]})")
    if config.objective != kind:
        where = (f"open it on the {PAGES[config.objective][1]} page" if config.objective in PAGES else
                 "the explorer shows diffusion models only")
        article = lambda word: "an" if word[0] in "aeiou" else "a"
        raise ModelLoadError(f"{shown} holds {article(config.objective)} {config.objective} model, not {article(kind)} "
                             f"{MODEL_NOUNS[kind]} one: {where}")


def folder_stamp(folder: str) -> float:
    """When the folder's model last changed (a retrained model reloads; the pages' caches are keyed on it)."""
    times = [os.path.getmtime(os.path.join(folder, name)) for name in ("config.json", "diffusion_config.json",
                                                                      "model.safetensors", "ema.safetensors")
             if os.path.exists(os.path.join(folder, name))]
    return max(times, default=0.0)


def load_for(kind: str, folder: str):
    """The generator of ``kind`` in ``folder`` (on the CPU), checked first: a wrong kind is one line."""
    check_objective(folder, kind)
    quiet_loading()
    if kind == "masked":
        from diffusion.masked.generation import load_generator

        return load_generator(folder)
    if kind == "gaussian":
        from diffusion.gaussian.generation import load_gaussian_generator

        return load_gaussian_generator(folder)
    from diffusion.image.generation import load_image_generator

    return load_image_generator(folder)


# --------------------------------------------------------------------------- messages and help
# The flags the library's messages name -> the page's widget labels, so "--steps must be at least 1"
# reads '"Steps" must be at least 1' in the explorer ("the --text template has no [MASK]": "the template ...").
WIDGET_LABELS = {flag: f'"{label}"' for flag, label in {
    "--text": "Template", "--prefix": "Prompt", "--max-length": "Length", "--steps": "Steps", "--schedule": "Schedule",
    "--sampling": "Sampling", "--k": "k", "--p": "p", "--temperature": "Temperature", "--remasking": "Remasking",
    "--threshold": "Confidence threshold", "--refine": "Refine", "--block-length": "Block length", "--cache": "Cache",
    "--seed": "Seed", "--sampler": "Sampler", "--ddim-steps": "DDIM steps", "--eta": "eta", "--clamp": "Clamp",
    "--guidance": "Guidance", "--digit": "Digit", "--prompt": "Caption", "--checkpoint": "Checkpoint",
}.items()} | {"--text template": "template"}
# longest first, so "--ddim-steps" is not read as "--d" + ... and "--text template" before "--text"
_FLAG = re.compile("|".join(re.escape(f) for f in sorted(WIDGET_LABELS, key=len, reverse=True)) + r"(?![\w-])")


def for_widgets(message: str) -> str:
    """A library message in the page's words: first line only, each flag named by its widget's label."""
    line = (str(message).strip().splitlines() or ["error"])[0]
    return _FLAG.sub(lambda m: WIDGET_LABELS[m.group()], line)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|:$<>~&=\"'])")


def markdown_literal(text: str) -> str:
    """``text`` with every Markdown-significant character backslash-escaped, so st.error/st.info show it as typed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def flag_help(options_type, name: str) -> str:
    """A widget's tooltip: the command-line flag of the same setting and its help text (one source for both)."""
    field = {f.name: f for f in dataclasses.fields(options_type)}[name]
    return f"`--{name.replace('_', '-')}`: {field.metadata.get('help', '')}"


# ------------------------------------------------------------------------------- display rows
STATE_NAMES = dict(LEGEND) | {ROUNDED: "nearest token"}  # rendering.py's kinds -> the legend's words


@dataclass(frozen=True)
class Cell:
    """One position as the explorer shows it."""

    position: int  # index in the sequence (<s> is 0)
    token: str  # the token's text, its leading space dropped; '↵' a newline, '·' only spaces
    state: str  # a kind of diffusion/viz/rendering.py: prefix | new | revealed | mask | end | rounded
    prob: float | None  # masked: the committed token's probability; Gaussian: rounding probability; None: not predicted


def shown_token(token: str) -> str:
    """A token's text in a cell: no leading space, visible newlines, a dot for a token of only spaces."""
    text = token.replace("\r", "").replace("\n", " \u21b5 ").replace("\t", " ").strip()
    return text or "\u00b7"


def masked_cells(tokens: list[str], masked: list[bool], revealed: list[bool], kinds: list[str],
                 probs: list[float | None], end_token: str | None) -> list[Cell]:
    """One masked-decoding step -> cells, drawn as the viewer does (diffusion/viz/rendering.py ``step_pieces``).

    kinds: per position 'special' (the template's <s> and </s>: not shown), 'prefix' or 'generated';
    probs: per position the probability its token had when it was committed (None: not predicted).
    The first generated </s> ends the text: it is the last cell (what follows it is dropped).
    """
    cells = []
    for position, (token, is_masked, is_new, kind, p) in enumerate(zip(tokens, masked, revealed, kinds, probs,
                                                                          strict=True)):
        if kind == "special":
            continue
        if is_masked:
            cells.append(Cell(position, MASK_TEXT, MASK, None))
            continue
        if kind == "generated" and end_token is not None and token == end_token:
            cells.append(Cell(position, token, END, p))
            break
        state = PREFIX if kind == "prefix" else NEW if is_new else REVEALED
        cells.append(Cell(position, shown_token(token), state, None if kind == "prefix" else p))
    return cells


def gaussian_cells(tokens: list[str], probs: list[float], kinds: list[str], end_token: str | None) -> list[Cell]:
    """One Gaussian step -> cells: every generated position's nearest token and its rounding probability.

    As the viewer's ``denoising_pieces``: the fixed prompt is light blue, the template's <s> and </s>
    are not shown, and a generated </s> after some text ends it (one at the very start is the <s>
    slot's guess of an unconditional row: shown, not an end).
    """
    cells: list[Cell] = []
    for position, (token, p, kind) in enumerate(zip(tokens, probs, kinds, strict=True)):
        if kind == "special":
            continue
        if kind == "prefix":
            cells.append(Cell(position, shown_token(token), PREFIX, None))
        elif end_token is not None and token == end_token and cells:
            cells.append(Cell(position, token, END, p))
            break
        else:
            cells.append(Cell(position, token if token.startswith("<") and token.endswith(">") else shown_token(token),
                              ROUNDED, p))
    return cells


class TokenStrings:
    """diffusion/text/tokens.py ``token_strings`` with each id decoded once: a DDPM trace of 1,000 steps x 64
    positions asks for the same few hundred ids 64,000 times."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.known: dict[int, str] = {}

    def __call__(self, ids: list[int]) -> list[str]:
        for i in ids:
            if i not in self.known:
                self.known[i] = token_strings(self.tokenizer, [i])[0]
        return [self.known[i] for i in ids]


def pieces_line(pieces) -> str:
    """Rendering pieces as one line of text (the viewer's line: [MASK] where masked, ∎ where the text ends)."""
    return "".join((" " if piece.space_before and i else "") + piece.text for i, piece in enumerate(pieces))


def cells_frame(cells: list[Cell]):
    """The table under the chips: one row per position (position, token, state, probability)."""
    import pandas as pd

    return pd.DataFrame({"position": [c.position for c in cells], "token": [c.token for c in cells],
                         "state": [STATE_NAMES[c.state] for c in cells],
                         "probability": [c.prob for c in cells]})


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


CHIP_BACKGROUND = "#181a21"  # the viewer's page (view_animation.html --bg)
MUTED = "#a0a6b2"


def cell_css(cell: Cell) -> str:
    """The CSS of a chip: the viewer's colour of its state (a Gaussian token: of its rounding probability)."""
    colour = _hex(confidence_colour(cell.prob)) if cell.state == ROUNDED else _hex(COLORS[cell.state])
    background = _hex(NEW_BACKGROUND) if cell.state == NEW else CHIP_BACKGROUND
    return f"color: {colour}; background-color: {background}"


def chip_styler(cells: list[Cell], per_row: int = 12):
    """Cells as chips: a pandas Styler of rows of ``per_row`` tokens, each with a row of probabilities under it.

    Row labels say the positions ('0-11') and 'p'; a cell is a token's text as a value, coloured by CSS
    on the cell (the viewer's colours), so no token is ever markup.
    """
    import pandas as pd

    rows, css, index = [], [], []
    for start in range(0, len(cells), per_row):
        line = cells[start:start + per_row]
        pad = [""] * (per_row - len(line))
        rows.append([c.token for c in line] + pad)
        rows.append([("" if c.prob is None else f"{c.prob:.2f}") for c in line] + pad)
        css.append([cell_css(c) for c in line] + [f"background-color: {CHIP_BACKGROUND}"] * len(pad))
        css.append([f"color: {MUTED}; background-color: {CHIP_BACKGROUND}"] * per_row)
        first, last = line[0].position, line[-1].position
        index += [f"{first}-{last}", f"p {first}-{last}"]
    frame = pd.DataFrame(rows, index=index, columns=[f"+{i}" for i in range(per_row)])
    styles = pd.DataFrame(css, index=index, columns=frame.columns)
    return frame.style.apply(lambda _: styles, axis=None)


LEGEND_SAMPLES = {MASK: MASK_TEXT, END: "</s>"}  # what a legend swatch shows; other states: 'word'


def legend_styler(states: list[str], confidences: list[float] = (0.0, 0.5, 1.0)):
    """The viewer's legend as one row: each column named after a state, its cell a sample in that state's colours.

    A Gaussian step's state ROUNDED becomes one column per rounding probability in ``confidences``
    ('nearest token, p = 0.5'), each sample in the colour of that probability.
    """
    import pandas as pd

    cells, names = [], []
    for state in states:
        if state == ROUNDED:
            cells += [Cell(0, "word", ROUNDED, p) for p in confidences]
            names += [f"nearest token, p = {p:g}" for p in confidences]
        else:
            cells.append(Cell(0, LEGEND_SAMPLES.get(state, "word"), state, None))
            names.append(STATE_NAMES[state])
    frame = pd.DataFrame([[c.token for c in cells]], columns=names)
    styles = pd.DataFrame([[cell_css(c) for c in cells]], columns=names)
    return frame.style.apply(lambda _: styles, axis=None)


# --------------------------------------------------------------------------------- text trajectories
@dataclass(frozen=True)
class StepView:
    """One step of a trajectory, ready to show."""

    index: int  # the slider's value
    title: str  # 'step 3 of 16'
    detail: str  # what changed: '4 revealed, 12 still masked' / 'k = 500 of 1000, t = 0.500, ...'
    text: str  # the sequence at this step as one line ([MASK] where masked)
    cells: tuple[Cell, ...]


@dataclass
class TextTrajectory:
    """Every step of one sampled text, as the slider shows them."""

    settings: str  # the decoder's settings as one line
    forward_passes: int
    seconds: float
    text: str  # the final text
    steps: list[StepView]

    @property
    def first(self) -> int:
        return self.steps[0].index

    @property
    def last(self) -> int:
        return self.steps[-1].index


@dataclass(frozen=True)
class MaskedRequest:
    """What to unmask: a prompt to continue (``length`` tokens with <s> and </s>) or a template's [MASK]s."""

    prefix: str | None = None
    template: str | None = None
    length: int = 32


def masked_trajectory(generator, request: MaskedRequest, options):
    """Decode one sequence with diffusion/masked/unmasking.py ``decode`` and keep every step as a StepView.

    ``options``: DecodeOptions; its block length None means the model's default (blocks of 8 after
    --eos-padding), 0 none; the cache follows the blocks (diffusion/masked/cache.py).  Step 0 is the
    start (every generated position masked), step k the state after the k-th forward pass.
    """
    import time

    from diffusion.masked.cache import resolve_cache
    from diffusion.masked.unmasking import build_prompt, decode, resolve_block_length
    from diffusion.viz.rendering import position_kinds

    model, tokenizer = generator.model, generator.tokenizer
    block = resolve_block_length(options.block_length, generator.config)
    options = dataclasses.replace(options, block_length=block, cache=resolve_cache(options.cache, block, model))
    if request.template is not None:
        if not request.template.strip():
            raise ValueError("the template is empty: write a text with a [MASK] for each token to fill in")
        prompt = build_prompt(tokenizer, text=request.template)
    else:
        prompt = build_prompt(tokenizer, prefix=request.prefix or None, max_length=request.length)
    check_length(prompt.input_ids.shape[1], model, shown_path(generator.checkpoint),
                 "the template's length" if request.template is not None else "--max-length")
    started = time.perf_counter()
    result = decode(model, tokenizer, prompt, options)
    seconds = time.perf_counter() - started

    kinds = position_kinds(prompt, tokenizer)
    strings = TokenStrings(tokenizer)
    n_generated = int(prompt.generate[0].sum())
    committed: list[float | None] = [None] * len(kinds)  # each position's probability when it was last committed
    steps = []
    last = len(result.trace) - 1
    for k, step in enumerate(result.trace):
        ids, masked, revealed = step.ids[0].tolist(), step.masked[0].tolist(), step.revealed[0].tolist()
        for position, (new, p) in enumerate(zip(revealed, step.probs[0].tolist(), strict=True)):
            if new:
                committed[position] = p if p > 0 else None  # 0: filled after the text ended, not predicted
        tokens = strings(ids)
        cells = masked_cells(tokens, masked, revealed, kinds, committed, tokenizer.eos_token)
        still = sum(1 for m, kind in zip(masked, kinds, strict=True) if m and kind == "generated")
        detail = ("the start: every generated position masked" if k == 0 else
                  f"{sum(revealed)} revealed in this step, {still} of {n_generated} still masked")
        line = pieces_line(step_pieces(tokens, masked, revealed, kinds, tokenizer.eos_token))
        steps.append(StepView(k, f"step {k} of {last}", detail, line, tuple(cells)))
    return TextTrajectory(options.describe(), result.forward_passes, seconds, result.texts[0], steps)


@dataclass(frozen=True)
class GaussianRequest:
    """What to denoise: a prompt to continue (empty: unconditional) in ``length`` tokens (0: drawn as trained)."""

    prefix: str | None = None
    length: int = 0
    seed: int = 0


def gaussian_trajectory(generator, request: GaussianRequest, options):
    """Sample one text with diffusion/gaussian/sampling.py ``sample`` and keep every model call as a StepView.

    ``options``: GaussianSamplingOptions.  Step i (1..N) is the i-th model call, at diffusion step k:
    each position's nearest token to the estimate x0_hat and its rounding probability.
    """
    import time

    from diffusion.gaussian.generation import check_sample_length
    from diffusion.gaussian.sampling import gaussian_prompt, lengths_after_prompt, sample, sample_lengths

    model, tokenizer, process = generator.model, generator.tokenizer, generator.process
    options.schedule_of_steps(process)  # more DDIM steps than trained: one line before any work
    prefix_ids = tokenizer(request.prefix, add_special_tokens=False)["input_ids"] if request.prefix else []
    if request.length:
        lengths = [request.length]
    elif prefix_ids:
        # drawn from the training lengths, with room for at least one generated token after the prompt
        longest = max(generator.config.max_length or 64, len(prefix_ids) + 3)
        lengths = lengths_after_prompt(generator.config, 1, len(prefix_ids), longest, request.seed)
    else:
        lengths = sample_lengths(generator.config, None, 1, seed=request.seed)
    prompt = gaussian_prompt(tokenizer, lengths, prefix_ids=prefix_ids)
    check_sample_length(generator, prompt.input_ids.shape[1])
    started = time.perf_counter()
    result = sample(model, process, tokenizer, prompt, options, seed=request.seed, record_trace=True)
    seconds = time.perf_counter() - started

    n = int(prompt.attention_mask[0].sum())
    special = set(tokenizer.all_special_ids)
    generate = prompt.generate[0, :n].tolist()
    kinds = ["generated" if g else "special" if token in special else "prefix"
             for token, g in zip(prompt.input_ids[0, :n].tolist(), generate, strict=True)]
    steps = []
    fixed_ids = prompt.input_ids[0, :n]
    strings = TokenStrings(tokenizer)
    for i, step in enumerate(result.trace, start=1):
        # the fixed text is shown as given (as the final text is), not as its rounding
        ids = torch.where(prompt.generate[0, :n], step.ids[0, :n], fixed_ids)
        tokens = strings(ids.tolist())
        probs = step.probs[0, :n].tolist()
        mean_p = sum(p for p, g in zip(probs, generate, strict=True) if g) / max(1, sum(generate))
        alpha_bar = float(process.alpha_bar[step.step])
        detail = (f"diffusion step k = {step.step} of {process.num_steps}, t = {step.step / process.num_steps:.3f}, "
                  f"sqrt(alpha_bar) = {math.sqrt(alpha_bar):.3f}, mean |x_k| = {step.noise_norm:.2f}, "
                  f"mean rounding probability {mean_p:.2f}")
        line = pieces_line(denoising_pieces(tokens, probs, kinds, tokenizer.eos_token))
        steps.append(StepView(i, f"step {i} of {len(result.trace)}", detail, line,
                              tuple(gaussian_cells(tokens, probs, kinds, tokenizer.eos_token))))
    return TextTrajectory(options.describe(process), result.forward_passes, seconds, result.texts[0], steps)


# ------------------------------------------------------------------------------------- images
ALL_DIGITS = "all"


@dataclass(frozen=True)
class ImageRequest:
    """What to draw: a class ('all': one row of every class) or a caption (text-conditioned models)."""

    digit: str = ALL_DIGITS  # a label id ('7'), a class name ('seven') or 'all'
    caption: str | None = None
    per_class: int = 1
    seed: int = 0


@dataclass
class ImageTrajectory:
    """Every model call of one image sampling: the noisy x_t it saw and its predicted x_0."""

    settings: str
    forward_passes: int
    seconds: float
    num_steps: int  # N, the trained diffusion steps
    columns: list[str]  # what each image is of: 'seven', or its caption
    ks: list[int]  # diffusion step k of each call
    signal: list[float]  # sqrt(alpha_bar[k]) of each call: how much of x_0 is left in x_t
    x_t: torch.Tensor  # (S, B, C, H, W): the input of each call
    x0_hat: torch.Tensor  # (S, B, C, H, W): its estimate of the clean images, in [-1, 1]

    @property
    def first(self) -> int:
        return 1

    @property
    def last(self) -> int:
        return len(self.ks)

    def title(self, i: int) -> str:
        return f"step {i} of {self.last}"

    def detail(self, i: int) -> str:
        k = self.ks[i - 1]
        return (f"diffusion step k = {k} of {self.num_steps}, t = {k / self.num_steps:.3f}, "
                f"sqrt(alpha_bar) = {self.signal[i - 1]:.3f}")

    def frame(self, i: int, max_width: int = 960):
        """Step i (1..S) as one picture: x_t above the predicted x_0, pixels enlarged without smoothing."""
        from diffusion.viz.images import denoising_frame

        k = self.ks[i - 1]
        batch, size = self.x_t.shape[1], self.x_t.shape[-1]
        # the largest whole-number enlargement that fits: the browser then shows it at its own size, unsmoothed
        scale = max(2, min(16, (max_width - 160) // (batch * (size + 1))))
        return denoising_frame(self.x_t[i - 1], self.x0_hat[i - 1], k, self.num_steps, k / self.num_steps,
                               scale=scale, header=self.settings)


def class_options(generator) -> list[tuple[str, str]]:
    """(value, label) of the classes an image model draws: ('all', 'all ten'), ('7', '7 (seven)'), ...

    A text-conditioned model draws digits from captions ("a handwritten seven"), so it offers the
    digits too; an unconditional model offers only 'all'.
    """
    from diffusion.image.captions import DIGIT_WORDS

    names = generator.class_names
    if generator.bank is not None:  # captions name digits ("a handwritten seven"), whatever the labels were
        names = names or DIGIT_WORDS
    classes = generator.model.config.num_classes or (len(names) if generator.bank is not None else 0)
    options = [(ALL_DIGITS, f"all {classes}" if classes != 10 else "all ten")] if classes else [(ALL_DIGITS, "any")]
    for label in range(classes):
        name = names[label] if label < len(names) else str(label)
        options.append((str(label), f"{label} ({name})" if name != str(label) else str(label)))
    return options


def image_conditions(generator, request: ImageRequest):
    """(labels (B,) or None, captions or None, column names) for ``request``, each refusal one line."""
    from diffusion.image.generation import label_name, requested

    caption = (request.caption or "").strip() or None
    digit = None if request.digit == ALL_DIGITS else request.digit
    if caption is not None and generator.bank is None:
        raise ValueError(f"{shown_path(generator.checkpoint)} is conditioned on class labels, not on text: clear the "
                         f"caption and choose a digit (captions need a --condition text checkpoint)")
    if caption is not None and digit is not None:
        raise ValueError("give a caption or a digit, not both: the caption says which digit (choose 'all ten' "
                         "to draw from the caption)")
    if generator.bank is None and generator.model.config.num_classes == 0 and digit is not None:
        raise ValueError(f"{shown_path(generator.checkpoint)} is an unconditional model (trained without labels): "
                         f"it cannot draw a chosen digit; choose 'any'")
    labels, captions = requested(generator, caption, digit, request.per_class)
    if captions is not None:
        columns = list(captions)
    elif labels is not None:
        columns = [label_name(generator, int(y)) for y in labels]
    else:
        columns = [f"sample {i + 1}" for i in range(10 * request.per_class)]
    return labels, captions, columns


def image_trajectory(generator, request: ImageRequest, options):
    """Sample with diffusion/image/sampling.py ``sample_images``, recording x_t and the predicted x_0 of every call.

    ``options``: ImageSamplingOptions (sampler, DDIM steps, eta, guidance).
    """
    import time

    from diffusion.image.sampling import sample_images

    if request.per_class < 1:
        raise ValueError(f"images per class must be at least 1, got {request.per_class}")
    options.schedule_of_steps(generator.process)  # more DDIM steps than trained: one line before any work
    labels, captions, columns = image_conditions(generator, request)
    started = time.perf_counter()
    result = sample_images(generator.model, generator.process, labels, options, num_samples=len(columns),
                           seed=request.seed, record_trace=True, captions=captions, bank=generator.bank)
    seconds = time.perf_counter() - started
    return ImageTrajectory(options.describe(generator.process), result.forward_passes, seconds,
                           generator.process.num_steps, columns, [s.step for s in result.trace],
                           [math.sqrt(float(generator.process.alpha_bar[s.step])) for s in result.trace],
                           torch.stack([s.x_t for s in result.trace]), torch.stack([s.x0_hat for s in result.trace]))


def trajectory(kind: str, generator, request, options):
    """The trajectory of ``kind`` (the pages' one cached call)."""
    return {"masked": masked_trajectory, "gaussian": gaussian_trajectory, "image": image_trajectory}[kind](
        generator, request, options)
