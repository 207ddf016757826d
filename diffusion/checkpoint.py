"""Checkpoint folders: the typed diffusion_config.json, loading a model by its objective, its usable length.

A checkpoint folder is enough to rebuild a run: the weights (safetensors), the Hugging Face
config, the tokenizer, and ``diffusion_config.json``, which says how the model was trained
(objective, schedule, masking, length).  That file is written and read here only, as a
:class:`DiffusionConfig`:

    config = DiffusionConfig(objective="masked", max_length=64, eos_padding=True)
    config.save("results/final-model")
    config = load_diffusion_config("results/final-model")   # None for a folder without one (a hub model)
    model = load_model(config.objective, "results/final-model")

Format versions: 1 is this one (``"version": 1``).  Files written before versions existed
(no ``"version"`` key) have the same fields and are read as version 1.  An unknown version,
an unknown objective or an unknown key is one clear error, never silently ignored.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields

from diffusion.hub import go_offline_if_unreachable
from diffusion.paths import (
    BUNDLED_CAUSAL_MODEL,
    BUNDLED_GAUSSIAN_MODEL,
    BUNDLED_MASKED_MODEL,
    BUNDLED_MLM_MODEL,
    TRAINED_GAUSSIAN_MODEL,
    TRAINED_IMAGE_MODEL,
    TRAINED_MODEL,
)

CONFIG_NAME = "diffusion_config.json"
EMA_FILE = "ema.safetensors"  # the weight average of --use-ema (diffusion/training.py's EMACallback), in every checkpoint-N
FORMAT_VERSION = 1
# objective -> (what a person calls such a model, the transformers auto class that loads it).
# The Gaussian and image objectives add their rows here.
OBJECTIVES = {
    "masked": ("masked LM", "AutoModelForMaskedLM"),
    "causal": ("causal LM", "AutoModelForCausalLM"),
    "gaussian": ("Gaussian text diffusion model", "AutoModel"),
    "image": ("image diffusion model", "AutoModel"),
}
IMAGE_MODEL_TYPES = {"UNetModel", "DiTModel"}  # what an image checkpoint's AutoModel may load


class ModelLoadError(Exception):
    """A model, tokenizer or checkpoint folder that cannot be loaded; the message is meant for the terminal."""


@dataclass
class DiffusionConfig:
    """How a checkpoint was trained; ``train.py`` writes it beside the weights.

    The masking fields describe the collator of the masked objective (data_collator.py) and are
    None for the causal one, which has no collator of ours.
    """

    objective: str
    max_length: int | None = None  # tokens per example, <s> and </s> included
    # --- masked objective (data_collator.py, config.py's DiffusionArguments) ---
    mask_levels: list[float] | None = None
    rate_sampling: str | None = None  # levels | continuous
    schedule: str | None = None  # a name of diffusion/schedules.py
    mask_rate_per: str | None = None  # example | batch
    prefix_len: int | None = None
    eos_padding: bool = False  # rows padded with maskable </s>: generation defaults to blocks (unmasking.py)
    loss_weighting: str | None = None  # none | elbo
    # --- Gaussian objective (diffusion/gaussian/, config.py's GaussianArguments); schedule above ---
    diffusion_steps: int | None = None  # N: the discrete steps k = 1..N of the Gaussian process
    fixed_text_rate: float | None = None  # share of training rows with clean (given) text
    ema_decay: float | None = None  # the final model's weights are this EMA of the trained ones
    sample_lengths: list[int] | None = None  # training lengths (quantiles): what generation draws from
    # --- image objective (diffusion/image/, config.py's ImageArguments); schedule and diffusion_steps above ---
    image_size: int | None = None  # pixels per side
    channels: int | None = None  # 1 grey, 3 colour
    class_names: list[str] | None = None  # label id -> name; None: an unconditional model
    cond_drop: float | None = None  # label dropout of classifier-free guidance
    condition: str | None = None  # label | text (captions through a frozen text encoder)
    text_encoder: str | None = None  # --condition text: the encoder's folder or hub id
    # --- where it came from ---
    dataset: str | None = None
    trained_from: str | None = None
    global_step: int | None = None
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ModelLoadError(f"{CONFIG_NAME}: unknown objective {self.objective!r}; known: {', '.join(OBJECTIVES)}")
        if self.version != FORMAT_VERSION:
            raise ModelLoadError(f"{CONFIG_NAME}: format version {self.version!r} is not one this toolkit reads "
                                 f"(it reads {FORMAT_VERSION}); update the toolkit, or retrain with this one")

    def to_dict(self) -> dict:
        """The file's content: version and objective first, then the rest in field order."""
        data = asdict(self)
        return {"version": data.pop("version"), "objective": data.pop("objective"), **data}

    def save(self, folder: str) -> str:
        path = os.path.join(folder, CONFIG_NAME)
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
        return path

    @classmethod
    def from_dict(cls, data: dict, source: str = CONFIG_NAME) -> DiffusionConfig:
        if not isinstance(data, dict):
            raise ModelLoadError(f"{source}: expected a JSON object, got {type(data).__name__}")
        data = {"version": FORMAT_VERSION, **data}  # files from before versions: the same fields
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelLoadError(f"{source}: unknown key(s) {', '.join(unknown)} (written by a newer toolkit?)")
        if "objective" not in data:
            raise ModelLoadError(f"{source}: no 'objective'")
        try:
            return cls(**data)
        except ModelLoadError as err:
            raise ModelLoadError(str(err).replace(CONFIG_NAME, source, 1)) from None


def load_diffusion_config(folder: str) -> DiffusionConfig | None:
    """The folder's diffusion_config.json, or None when it has none (a hub model, a foreign folder)."""
    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"cannot read {path}: {err}") from None
    return DiffusionConfig.from_dict(data, source=path)


# --------------------------------------------------------------------------------- loading
def _check_not_a_file(kind: str, name: str) -> None:
    if os.path.isfile(name):
        raise ModelLoadError(f"{name!r} is a file, not a {kind} folder: give the folder that holds its config.json "
                             f"and weights (e.g. results/final-model)")


def model_folders_near(name: str, limit: int = 3) -> list[str]:
    """Folders under the current one (and the bundled models) that hold a model, closest in name to ``name`` first."""
    import difflib
    import glob

    found = {os.path.relpath(os.path.dirname(c)) for pattern in ("*/config.json", "*/*/config.json")
             for c in glob.glob(pattern)}
    found |= {_shown(folder) for folder in (BUNDLED_MASKED_MODEL, BUNDLED_MLM_MODEL, BUNDLED_CAUSAL_MODEL, BUNDLED_GAUSSIAN_MODEL)
              if os.path.isdir(folder)}
    return sorted(found, key=lambda f: (-difflib.SequenceMatcher(None, name, f).ratio(), f))[:limit]


def model_folders_in(parent: str) -> list[str]:
    """The subfolders of ``parent`` that hold a model, in step order (checkpoint-500 before checkpoint-1000)."""
    if not parent or not os.path.isdir(parent):
        return []
    names = [n for n in os.listdir(parent) if os.path.isfile(os.path.join(parent, n, "config.json"))]
    return sorted(names, key=lambda n: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", n)])


def _shown(path: str) -> str:
    """A path as a person types it here: relative when below the current folder, else absolute."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _looks_local(name: str) -> bool:
    """A name that cannot be a Hub id ("org/name"): a path or a file name."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.path.splitext(name)[1] in (
        ".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".json")


def _load_error(kind: str, name: str, err: Exception, offline_hint: str = "") -> ModelLoadError:
    first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    if os.path.isdir(name):
        return ModelLoadError(f"cannot load a {kind} from folder {name!r}: {first_line}")
    # A folder next to existing ones (results/checkpoint-1000 after a 500-step run): name those.
    parent = os.path.dirname(os.path.normpath(os.path.expanduser(name)))
    siblings = model_folders_in(parent)
    near = model_folders_near(name)
    listed = (f"; {parent}/ holds {', '.join(siblings)}" if siblings else
              f"; folders that hold a model: {', '.join(near)}" if near else "")
    if _looks_local(name):
        return ModelLoadError(f"{kind} folder {name!r} does not exist{listed}")
    bundled = _shown(BUNDLED_CAUSAL_MODEL if kind == "causal LM" else BUNDLED_MASKED_MODEL)
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if offline and "/" in name:  # "results-full/final-model" or "org/model": no such folder, no Hub to ask
        return ModelLoadError(f"{kind} folder {name!r} does not exist, and offline it cannot be a Hugging Face Hub "
                              f"id either{listed}")
    return ModelLoadError(f"cannot load {kind} {name!r} from the Hugging Face Hub ({first_line}). "
                          f"Offline, use the bundled {bundled}{offline_hint}, or pass a local folder")


def load_tokenizer(name_or_dir: str, offline_hint: str = ""):
    """``AutoTokenizer.from_pretrained`` with one-line errors (``offline_hint``: the caller's other offline option)."""
    from transformers import AutoTokenizer

    _check_not_a_file("tokenizer", name_or_dir)
    if not os.path.isdir(name_or_dir):
        go_offline_if_unreachable()
    try:
        return AutoTokenizer.from_pretrained(name_or_dir)
    except Exception as err:  # OSError, ValueError, huggingface_hub errors...
        raise _load_error("tokenizer", name_or_dir, err, offline_hint) from None


def model_class(objective: str):
    """The transformers auto class of an objective (``AutoModelForMaskedLM`` for masked)."""
    import transformers

    if objective == "gaussian":
        import diffusion.gaussian.model  # noqa: F401  (registers GaussianTextModel with AutoConfig / AutoModel)
    if objective == "image":
        import diffusion.image.dit  # noqa: F401  (registers DiTModel)
        import diffusion.image.unet  # noqa: F401  (registers UNetModel)
    return getattr(transformers, OBJECTIVES[objective][1])


def load_model(objective: str, name_or_dir: str, offline_hint: str = ""):
    """The objective's ``AutoModelFor...from_pretrained(name_or_dir)`` with one-line errors."""
    kind = OBJECTIVES[objective][0]
    _check_not_a_file(kind, name_or_dir)
    if not os.path.isdir(name_or_dir):
        go_offline_if_unreachable()
    try:
        model = model_class(objective).from_pretrained(name_or_dir)
    except ValueError as err:
        # AutoModel raises ValueError("Unrecognized configuration class ...") for the wrong kind of model.
        if "Unrecognized configuration class" in str(err):
            raise ModelLoadError(f"{name_or_dir!r} is not a {kind} (its config has no {kind} head)") from None
        raise _load_error(kind, name_or_dir, err, offline_hint) from None
    except Exception as err:
        raise _load_error(kind, name_or_dir, err, offline_hint) from None
    if objective == "gaussian" and type(model).__name__ != "GaussianTextModel":  # AutoModel loads any encoder
        raise ModelLoadError(f"{name_or_dir!r} is not a {kind} (its config is a {model.config.model_type!r})")
    if objective == "image" and type(model).__name__ not in IMAGE_MODEL_TYPES:
        raise ModelLoadError(f"{name_or_dir!r} is not a {kind} (its config is a {model.config.model_type!r})")
    return model


def quiet_loading() -> None:
    """Hide transformers' "Loading weights" bars: noise for models that load in a blink.

    The generation scripts call it in ``main``; importing a module never changes logging.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


# ------------------------------------------------------------------------------ which folder
# What a script uses when no model is named: the first of these that exists, with the line that says why.
DEFAULT_MODELS = {
    "masked": [(TRAINED_MODEL, "your trained model (python train.py --quick-test)"),
               (BUNDLED_MASKED_MODEL, "the bundled pretrained model; train your own with python train.py --quick-test")],
    "causal": [(BUNDLED_CAUSAL_MODEL, "the bundled causal baseline")],
    "gaussian": [(TRAINED_GAUSSIAN_MODEL, "your trained model (python train.py --quick-test --objective gaussian)"),
                 (BUNDLED_GAUSSIAN_MODEL, "the bundled Gaussian model; train your own with "
                                          "python train.py --quick-test --objective gaussian")],
    "image": [(TRAINED_IMAGE_MODEL, "your trained model (python train.py --quick-test --objective image)")],
}
TRAIN_HINTS = {
    "masked": "train one with python train.py --quick-test",
    "causal": "train one with python train.py --quick-test --objective causal --output_dir results-gpt2",
    "gaussian": "train one with python train.py --quick-test --objective gaussian",
    "image": "train one with python train.py --quick-test --objective image (5 minutes on a CPU)",
}


def resolve_model(given: str | None, flag: str, objective: str, extra_hint: str = "") -> tuple[str, str]:
    """(model, why): ``given`` if set, else the first existing folder of ``DEFAULT_MODELS[objective]``."""
    if given:
        return given, f"from {flag}"
    candidates = DEFAULT_MODELS[objective]
    for folder, why in candidates:
        if os.path.isdir(folder):
            return folder, why
    where = " or ".join(folder for folder, _ in candidates)
    raise ModelLoadError(f"no {flag} given and no model at {where}: {TRAIN_HINTS[objective]}, "
                         f"or pass {flag} DIR{extra_hint}")


# ----------------------------------------------------------------------------- usable length
def _position_embedding(model):
    """The learned position table of a transformers model, or None (rotary, ALiBi, ...)."""
    get = getattr(model, "get_position_embeddings", None)
    if callable(get):
        try:
            table = get()
        except (NotImplementedError, AttributeError):
            table = None
        if table is not None and hasattr(table, "num_embeddings"):
            return table
    for name, module in model.named_modules():
        if name.split(".")[-1] in ("position_embeddings", "wpe", "embed_positions") and hasattr(module, "num_embeddings"):
            return module
    return None


def usable_length(model) -> int | None:
    """How many tokens one sequence of ``model`` may hold, special tokens included (None: no limit known).

    RoBERTa and its relatives number positions from ``pad_token_id + 1`` (the padding position
    is reserved), so their table of P rows holds P - pad_token_id - 1 tokens; they mark it by
    giving the position embedding a ``padding_idx``.  BERT and GPT-2 number from 0: P tokens.
    The offset is read from the model's own table, so it holds for every such architecture
    (roberta, roberta-prelayernorm, xlm-roberta, camembert, ...) without a list of model types.
    """
    table = _position_embedding(model)
    if table is not None:
        offset = table.padding_idx + 1 if table.padding_idx is not None else 0
        return table.num_embeddings - offset
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def check_length(length: int, model, name: str, what: str = "--max-length") -> None:
    """One clear line when ``length`` tokens do not fit ``model``."""
    usable = usable_length(model)
    if usable is not None and length > usable:
        raise ValueError(f"{what} {length} is longer than the {usable} positions {name!r} was built for")


def checkpoint_objective(given: str | None, default: str = "masked") -> str:
    """The objective of a folder's diffusion_config.json; ``default`` for no folder (the scripts' own
    default model) or one without the file (a hub model)."""
    config = load_diffusion_config(given) if given and os.path.isdir(given) else None
    return config.objective if config is not None else default


def load_checkpoint(name: str, objective: str, flag: str = "--checkpoint"):
    """(model, tokenizer, DiffusionConfig or None) of a folder or hub id that must hold an ``objective`` model.

    The folder's diffusion_config.json is read (and its version checked) before any weights load,
    and a checkpoint of another objective is one line that says which it is.
    """
    config = load_diffusion_config(name) if os.path.isdir(name) else None
    if config is not None and config.objective != objective:
        raise ModelLoadError(f"{flag} {name!r} holds a {config.objective} model ({OBJECTIVES[config.objective][0]}); "
                             f"this needs a {objective} one ({OBJECTIVES[objective][0]})")
    return load_model(objective, name), load_tokenizer(name), config


def load_saved_ema(model, folder: str) -> bool:
    """Copy a checkpoint-N folder's EMA (``ema.safetensors``) into ``model``'s weights; False if it has none.

    For sampling a checkpoint of a ``--use-ema`` run: its average, as the final model (which holds
    the average as its weights) would be.
    """
    path = os.path.join(folder, EMA_FILE)
    if not os.path.isfile(path):
        return False
    from safetensors.torch import load_file

    averaged = load_file(path)
    for name, p in model.named_parameters():
        if name in averaged:
            p.data.copy_(averaged[name].to(p.dtype))
    return True
