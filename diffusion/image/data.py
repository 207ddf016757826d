"""Image datasets: rows of ``image`` (a PIL image) and ``label`` (int, optional ``caption``), pixels in [-1, 1].

The offline default is scikit-learn's bundled handwritten digits (``--dataset digits``): 1,797
images of 8x8 pixels with 17 grey levels (0..16), ten classes, installed with scikit-learn, no
download. The held-out split is fixed: 10% of every class (180 images), chosen with seed 0.
With a network, any Hugging Face image dataset works the same way (``--dataset ylecun/mnist``),
as does a local folder of images (``--dataset path/to/folder``, datasets' ``imagefolder``, the
sub-folder names as labels); ``--image-column``, ``--label-column`` and ``--caption-column`` name
the columns, ``--image-size`` the side every image is resized to.

Pixels: a grey image is (1, H, W), a colour one (3, H, W), scaled from 0..255 to [-1, 1]
(x / 127.5 - 1), the range of the Gaussian process's clean data x_0 (DDPM, Ho et al. 2020).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_dataset
from datasets import Image as ImageFeature
from PIL import Image

from diffusion.hub import go_offline_if_unreachable
from diffusion.image.pixels import to_pixels
from diffusion.text.data import DataError

DIGITS = "digits"
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
HELD_OUT_FRACTION = 0.1
SPLIT_SEED = 0


def load_digits_dataset() -> DatasetDict:
    """scikit-learn's 8x8 digits as ``train`` (1,617) and ``validation`` (180), stratified by label."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8): 0..16 -> 0..255
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=DIGIT_NAMES)})
    dataset = Dataset.from_dict({"image": [Image.fromarray(a, mode="L") for a in grey],
                                 "label": digits.target.tolist()}, features=features)
    split = dataset.train_test_split(test_size=HELD_OUT_FRACTION, seed=SPLIT_SEED, stratify_by_column="label")
    return DatasetDict(train=split["train"], validation=split["test"])


def load_image_datasets(dataset: str = DIGITS, image_column: str = "image", label_column: str | None = "label",
                        caption_column: str | None = None, cache_dir: str | None = None) -> DatasetDict:
    """``train`` and ``validation`` splits with the columns renamed to ``image``, ``label``, ``caption``.

    ``label_column`` None: no labels (an unconditional model). A dataset without a validation
    split gets one as the digits do (10%, seed 0).
    """
    if dataset == DIGITS:
        raw = load_digits_dataset()
    elif os.path.isdir(dataset):
        raw = load_dataset("imagefolder", data_dir=dataset, cache_dir=cache_dir)
    elif os.path.exists(dataset):
        raise DataError(f"{dataset!r} is a file; an image dataset is a folder of images, a Hugging Face Hub id, "
                        f"or --dataset {DIGITS} (the bundled 8x8 digits)")
    else:
        go_offline_if_unreachable()
        try:
            raw = load_dataset(dataset, cache_dir=cache_dir)
        except Exception as err:  # ConnectionError, DatasetNotFoundError, ...: one line for the terminal
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"could not load image dataset {dataset!r} from the Hugging Face Hub ({first_line[:200]}). "
                            f"Offline, use the bundled digits (--dataset {DIGITS}) or a local folder of images") from None
    if "train" not in raw:
        raise DataError(f"image dataset {dataset!r} has no 'train' split")
    columns = raw["train"].column_names
    wanted = {"image": (image_column, "--image-column"), "label": (label_column, "--label-column"),
              "caption": (caption_column, "--caption-column")}
    for column, flag in wanted.values():
        if column is not None and column not in columns:
            raise DataError(f"no column {column!r} in {dataset!r}; its columns are: {', '.join(columns)} (use {flag})")
    image_feature = raw["train"].features[image_column]
    if not isinstance(image_feature, ImageFeature):
        raise DataError(f"column {image_column!r} of {dataset!r} holds {type(image_feature).__name__}, not images "
                        f"(use --image-column)")
    if label_column is not None and not isinstance(raw["train"].features[label_column], (ClassLabel, Value)):
        raise DataError(f"column {label_column!r} of {dataset!r} is not a class label (use --label-column)")

    if "validation" not in raw:
        if "test" in raw:
            raw["validation"] = raw.pop("test")
        else:
            split = raw["train"].train_test_split(test_size=HELD_OUT_FRACTION, seed=SPLIT_SEED)
            raw = DatasetDict(train=split["train"], validation=split["test"])
    keep = {column: name for name, (column, _) in wanted.items() if column is not None}
    out = {}
    for split_name in ("train", "validation"):
        part = raw[split_name].select_columns(list(keep))
        out[split_name] = part.rename_columns({c: n for c, n in keep.items() if c != n})
    return DatasetDict(out)


def num_classes(data: DatasetDict) -> int:
    """How many labels the data has (0 without a ``label`` column)."""
    if "label" not in data["train"].column_names:
        return 0
    feature = data["train"].features["label"]
    if isinstance(feature, ClassLabel):
        return feature.num_classes
    return int(max(data["train"]["label"])) + 1


def class_names(data: DatasetDict) -> list[str]:
    feature = data["train"].features.get("label")
    return list(feature.names) if isinstance(feature, ClassLabel) else [str(i) for i in range(num_classes(data))]


class ImageCollator:
    """Rows of ``image`` (+ ``label``) -> ``pixel_values`` (B, C, H, W) in [-1, 1] and ``labels`` (B,) long.

    The noise, the steps and the label dropout are drawn by the trainer, on the model's device.
    """

    def __init__(self, image_size: int, channels: int):
        self.image_size = image_size
        self.channels = channels

    def __call__(self, examples) -> dict[str, torch.Tensor]:
        pixels = torch.stack([to_pixels(example["image"], self.image_size, self.channels) for example in examples])
        batch = {"pixel_values": pixels}
        if "label" in examples[0]:
            batch["labels"] = torch.tensor([int(example["label"]) for example in examples], dtype=torch.long)
        return batch
