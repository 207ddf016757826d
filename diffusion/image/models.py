"""The two image denoisers by name (``--model-type UNet | DiT``), built fresh for a dataset.

    model = build_image_model("UNet", image_size=8, channels=1, num_classes=10)
    model = build_image_model("DiT", 8, 1, 10, overrides={"depth": "6"})   # --config-overrides depth=6

The defaults of each config (diffusion/image/unet.py, dit.py) are sized for the 8x8 digits on a
CPU: about 1.0M parameters for the UNet and 1.3M for the DiT, so that the two compare at a
similar size.
"""

from __future__ import annotations

import inspect

from diffusion.image.dit import DiTConfig, DiTModel
from diffusion.image.unet import UNetConfig, UNetModel

MODEL_TYPES = {"UNet": (UNetConfig, UNetModel), "DiT": (DiTConfig, DiTModel)}


FROM_THE_DATA = ("image_size", "in_channels", "num_classes", "cross_attention_dim")


def typed_overrides(config_class, overrides: dict[str, str]) -> dict:
    """{'depth': '6'} -> {'depth': 6}, typed like the config's defaults; an unknown key is one line.

    A list is written with x between its numbers (``channel_mults=1x2x2``): commas separate the pairs.
    """
    defaults = config_class()
    fields = [name for name in inspect.signature(config_class.__init__).parameters
              if name not in ("self", "kwargs") and name not in FROM_THE_DATA]
    out = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ValueError(f"--config-overrides: {key!r} is not a field of the {config_class.model_type} config "
                             f"(it has: {', '.join(fields)}); the image size, channels and classes come from the data")
        default = getattr(defaults, key)
        try:
            if isinstance(default, bool):
                out[key] = value.lower() in ("1", "true", "yes")
            elif isinstance(default, int):
                out[key] = int(value)
            elif isinstance(default, float):
                out[key] = float(value)
            elif isinstance(default, list):
                out[key] = [int(v) for v in value.split("x")]
            else:
                out[key] = value
        except ValueError:
            raise ValueError(f"--config-overrides: {key}={value!r} is not a {type(default).__name__}") from None
    return out


def build_image_model(model_type: str, image_size: int, channels: int, num_classes: int,
                      overrides: dict[str, str] | None = None, **fixed):
    """A fresh model; ``fixed``: config fields set by the run, not the user (the caption encoder's width)."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"--model-type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    config_class, model_class = MODEL_TYPES[model_type]
    config = config_class(image_size=image_size, in_channels=channels, num_classes=num_classes,
                          **typed_overrides(config_class, overrides or {}), **fixed)
    return model_class(config)
