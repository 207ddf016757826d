"""The training hyperparameters of every objective, as dataclasses parsed by ``HfArgumentParser``, plus the presets.

    python train.py --help                 # every flag, with its help text
    python train.py --quick-test           # small offline run on the bundled corpus -> results/
    python train.py                        # the full default: roberta-base -> results-full/

Flags may be written with dashes or underscores (``--max-length`` = ``--max_length``); all of
``transformers.TrainingArguments`` is available too (``--learning_rate``, ``--max_steps``,
``--per_device_train_batch_size``, ``--report_to tensorboard``, ...).

A preset is a list of flags placed *before* the user's own, so anything typed on the command
line overrides the preset (argparse keeps the last value of a repeated flag).

The flags of the generating scripts live with them: the decoding flags are
diffusion/masked/unmasking.py's ``DecodeOptions``, shared by generate.py, visualize_generation.py,
compare_models.py and the benchmarks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from transformers import TrainingArguments

from diffusion import schedules
from diffusion.cli import drop_flags, flag_names, flag_value, parse_args
from diffusion.gaussian.sampling import GaussianSamplingOptions
from diffusion.masked.levels import DEFAULT_MASK_LEVELS
from diffusion.paths import BUNDLED_CAUSAL_MODEL, BUNDLED_DATASET, BUNDLED_MLM_MODEL, BUNDLED_WORD_TOKENIZER
from diffusion.text.models import MODEL_PRESETS

MODEL_CONFIG_PRESETS = tuple(MODEL_PRESETS)  # tiny, small

# What every quick test shares: the bundled corpus at 64 tokens, batches of 64 grouped by length, on CPU.
_QUICK_TEST_COMMON = [
    "--output_dir", "results",
    "--max-length", "64",
    "--per_device_train_batch_size", "64",
    "--per_device_eval_batch_size", "128",
    "--train_sampling_strategy", "group_by_length",
    "--weight_decay", "0.01",
    "--adam_beta2", "0.98",
    "--save_total_limit", "2",
    "--use_cpu",
    "--ddp_find_unused_parameters", "false",  # every parameter is used; the search costs a graph walk
]
# The small offline run, a few minutes on 2 CPU cores: the original recipe in miniature. It turns
# the bundled standard masked LM (models/mlm-base: pretrained at 15% masking only, as roberta-base
# was) into a diffusion model with variable masking, and evaluates every level before and after.
# Measured (docs/BENCHMARKS.md, "The quick test"): 500 steps lower the held-out loss at 70-100%
# masking by 0.15-0.34 nats and leave 10-30% within 0.03, in about 4.5 minutes.
QUICK_TEST_ARGS = [
    "--model", BUNDLED_MLM_MODEL,
    *_QUICK_TEST_COMMON,
    # A new objective for this base (it never saw more than 15% masked), so a rate near its
    # pretraining one; not --eos-padding: measured, its </s> targets made every level's held-out
    # text loss worse within these minutes (+0.24 to +1.6 nats in 250 steps) and halved the speed.
    "--learning_rate", "3e-4",
    "--warmup_steps", "0.1",
    "--max_steps", "500",
    "--logging_steps", "25",  # 20 points per training curve
    "--eval_strategy", "steps",
    "--eval_steps", "100",  # and 6 per held-out curve (with the evaluation before training)
    "--max-eval-samples", "500",
    "--save_steps", "500",
]
# The autoregressive quick test: continue the bundled GPT-2-style baseline, which converged on this
# very objective, so only a small rate (a larger one first undoes part of it).
QUICK_TEST_CAUSAL_ARGS = [
    "--model", BUNDLED_CAUSAL_MODEL,
    *_QUICK_TEST_COMMON,
    "--learning_rate", "3e-5",
    "--warmup_steps", "0.05",
    "--max_steps", "200",
    "--logging_steps", "50",
    "--save_steps", "250",
    "--eval_strategy", "no",
    "--max-eval-samples", "1000",
]
# --quick-test --from-scratch, and --quick-test while no bundled base exists: a fresh tiny RoBERTa
# trained for 500 steps, to see what a few CPU minutes give without pretraining (the
# unigram plateau: word frequencies only). A fresh model wants the larger learning rate.
QUICK_TEST_FROM_SCRATCH_ARGS = [
    "--model-config", "tiny",
    *[arg for arg in QUICK_TEST_ARGS[2:] if arg not in ("--adam_beta2", "0.98")],
    "--learning_rate", "1e-3",  # later flags win
    "--max_steps", "500",
]
# A fresh Gaussian denoiser starts its first two blocks as previous/next-token heads: from a random
# init, the first Gaussian base's attention stayed uniform (docs/GAUSSIAN_TEXT.md, "Why the first base
# wrote fragments"; the bundled base has it, the first did not).
GAUSSIAN_INIT = ["--local-attention-init", "--local-attention-layers", "2"]
# ...and reads the bundled corpus word by word (data/word-tokenizer, as models/gaussian-base): with
# the byte-level BPE its samples join sub-word pieces into non-words (docs/GAUSSIAN_TEXT.md, "Words,
# not pieces"). Dropped when --model, --tokenizer, another --dataset or --data-dir is typed: a checkpoint
# keeps its own tokenizer, and a WordNet vocabulary would make other text mostly <unk>.
GAUSSIAN_TOKENIZER = ["--tokenizer", BUNDLED_WORD_TOKENIZER]
# The Gaussian quick test: a fresh tiny denoiser on the bundled corpus -> results-gaussian/, with the
# per-noise-level loss and rounding accuracy before and after (docs/GAUSSIAN_TEXT.md, "The quick
# test"). Not a fine-tune of models/gaussian-base: the base converged on this very corpus with its
# learning rate decayed to zero, and measured on the first base, 400 steps at 1e-4 moved its held-out
# loss by +0.001 to +0.016 and 150 steps at 5e-4 by +0.008 to +0.087 (worse at every level), nothing
# a learner can see. `--model models/gaussian-base --learning_rate 1e-4` still fine-tunes it with this preset.
# Measured: 250 steps take the held-out loss at t = 0.1 from 10.25 to 0.93, in 3 min 1 s on 2 cores.
QUICK_TEST_GAUSSIAN_ARGS = [
    "--model-config", "tiny",
    *GAUSSIAN_INIT,
    *GAUSSIAN_TOKENIZER,
    *_QUICK_TEST_COMMON,
    "--output_dir", "results-gaussian",
    "--weight_decay", "0.0",  # as models/gaussian-base: decay would shrink the embeddings the noise is added to
    "--learning_rate", "1e-3",  # a fresh model wants the larger rate (the base's recipe)
    "--warmup_steps", "0.1",
    "--max_steps", "250",
    "--logging_steps", "25",  # 10 points per training curve
    "--eval_strategy", "steps",
    "--eval_steps", "125",  # and 3 per held-out curve (with the evaluation before training)
    "--max-eval-samples", "300",
    "--save_steps", "250",
]
# python train.py --objective gaussian: a fresh tiny denoiser on the bundled corpus, on a GPU when
# there is one (`python train.py --objective gaussian --epochs 50 --use-ema --amp --sampler ddim --ddim-steps 100`).
FULL_GAUSSIAN_ARGS = [
    "--model-config", "tiny",
    *GAUSSIAN_INIT,
    *GAUSSIAN_TOKENIZER,
    "--output_dir", "results-gaussian-full",
    "--max-length", "64",
    "--per_device_train_batch_size", "64",
    "--per_device_eval_batch_size", "128",
    "--train_sampling_strategy", "group_by_length",
    "--learning_rate", "1e-3",
    "--warmup_steps", "1000",
    "--weight_decay", "0.01",
    "--num_train_epochs", "3",
    "--logging_steps", "100",
    "--eval_strategy", "steps",
    "--eval_steps", "1000",
    "--save_steps", "1000",
    "--save_total_limit", "3",
    "--max-eval-samples", "500",
    "--ddp_find_unused_parameters", "false",
]
# --quick-test --objective image: a UNet from scratch on the bundled 8x8 digits -> results-image/,
# ending with a sample grid (DDIM, guidance 3). Measured: docs/IMAGE_DIFFUSION.md.
QUICK_TEST_IMAGE_ARGS = [
    "--output_dir", "results-image",
    "--model-type", "UNet",
    "--per_device_train_batch_size", "64",
    "--per_device_eval_batch_size", "180",
    "--learning_rate", "1e-3",
    "--warmup_steps", "50",
    "--weight_decay", "0.0",
    "--max_steps", "800",
    "--logging_steps", "20",
    "--eval_strategy", "steps",
    "--eval_steps", "200",
    "--save_steps", "800",
    "--save_total_limit", "2",
    "--use-ema", "--ema-decay", "0.999",
    "--use_cpu",
]
# python train.py --objective image [--model-type DiT]: the same data, longer, on a GPU when there is one;
# seed 002's commands (--epochs 30 --batch-size 8 --lr 0.0001) override the epochs, batch and rate.
FULL_IMAGE_ARGS = [
    "--per_device_train_batch_size", "64",
    "--per_device_eval_batch_size", "180",
    "--learning_rate", "5e-4",
    "--warmup_steps", "200",
    "--weight_decay", "0.0",
    "--num_train_epochs", "100",
    "--logging_steps", "50",
    "--eval_strategy", "epoch",
    "--save_strategy", "epoch",
    "--save_total_limit", "2",
    "--use-ema",
]
# Seed 002's own flag names for the image objective (--epochs is shared with every objective).
IMAGE_SEED_ALIASES = {"--batch-size": "--per_device_train_batch_size", "--lr": "--learning_rate"}
# The flags of the Diffusion-LM-style trainer many users come from (--epochs, --amp, --grad-clip, ...), accepted
# as they are: alias -> this toolkit's flag.
SEED_ALIASES = {"--epochs": "--num_train_epochs", "--grad-clip": "--max_grad_norm",
                "--grad-accum": "--gradient_accumulation_steps", "--ckpt-dir": "--output_dir"}
# The flags that only the Gaussian objective reads, and those that only the masked one reads.
GAUSSIAN_FLAGS = {"--diffusion-steps", "--embedding-dim", "--no-self-conditioning", "--self-conditioning-rate",
                  "--fixed-text-rate", "--sampler", "--ddim-steps"}
MASKED_FLAGS = {"--mask-levels", "--eval-mask-levels", "--rate-sampling", "--mask-rate-per", "--prefix-len",
                "--eos-padding", "--loss-weighting"}
# The full default: fine-tune roberta-base (needs the Hugging Face Hub, or a local copy).
FULL_ARGS = [
    "--model", "roberta-base",
    "--output_dir", "results-full",
    "--max-length", "128",
    "--per_device_train_batch_size", "32",
    "--train_sampling_strategy", "group_by_length",
    "--per_device_eval_batch_size", "64",
    "--learning_rate", "5e-5",
    "--warmup_steps", "0.06",
    "--weight_decay", "0.01",
    "--num_train_epochs", "3",
    "--logging_steps", "100",
    "--eval_strategy", "steps",
    "--eval_steps", "2000",
    "--save_steps", "2000",
    "--save_total_limit", "3",
    "--max-eval-samples", "2000",
    "--ddp_find_unused_parameters", "false",
]


@dataclass
class ModelArguments:
    objective: str = field(
        default="masked",
        metadata={"help": "masked: the diffusion objective (variable-rate masking). causal: a GPT-2-style "
                  "left-to-right model on the same tokenizer and data, the baseline to compare against. "
                  "gaussian: Gaussian noise on learned token embeddings, denoised by a Transformer "
                  "(Diffusion-LM; docs/GAUSSIAN_TEXT.md)."},
    )
    model: str | None = field(
        default=None,
        metadata={"help": "Hub id (roberta-base, gpt2) or local folder, loaded with from_pretrained. "
                  "Leave unset and give --model-config to build a fresh model instead."},
    )
    model_config: str | None = field(
        default=None,
        metadata={"help": "Build a fresh model from a preset config instead of loading one: "
                  f"{' | '.join(MODEL_CONFIG_PRESETS)} (RobertaConfig for masked, GPT2Config for causal)."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Override preset config fields, e.g. 'hidden_size=64,num_hidden_layers=2'."},
    )
    sinusoidal_positions: bool = field(
        default=False,
        metadata={"help": "With --model-config: start the (still learned) position embeddings from the sinusoids of "
                  "Vaswani et al. 2017 instead of random vectors. Neighbouring positions are then one rotation "
                  "apart, so attention to the next or previous token is easy to learn; from a random table an "
                  "encoder can spend thousands of steps attending uniformly (measured: models/masked-base/README.md)."},
    )
    local_attention_init: bool = field(
        default=False,
        metadata={"help": "With --model-config and --objective masked or gaussian: start the first layer's heads "
                  "as previous/next-token heads (offsets -1, +1, -2, +2) over a position channel, instead of "
                  "attending uniformly (see diffusion/text/models.py and diffusion/gaussian/model.py, "
                  "init_local_attention). All weights still train. The bundled masked base uses it, and a fresh "
                  "Gaussian denoiser starts with it (its presets): without it a CPU-sized encoder predicts word "
                  "frequencies for thousands of steps."},
    )
    local_attention_layers: int = field(
        default=1,
        metadata={"help": "With --local-attention-init: how many layers, from the first, start with offset heads."},
    )
    pre_layer_norm: bool = field(
        default=False,
        metadata={"help": "With --model-config and --objective masked: build RoBERTa with the layer norm before "
                  "each sublayer (RobertaPreLayerNorm, fairseq's --encoder-normalize-before). It trains stably "
                  "at a higher learning rate from scratch (Xiong et al. 2020); the bundled base uses it."},
    )
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "Tokenizer id or folder. Default: the --model's own, else the bundled data/tokenizer."},
    )

    def __post_init__(self) -> None:
        if self.objective not in ("masked", "causal", "gaussian"):
            raise ValueError(f"--objective must be 'masked', 'causal' or 'gaussian', got {self.objective!r}")
        if self.model_config is not None and self.model_config not in MODEL_CONFIG_PRESETS:
            raise ValueError(f"--model-config must be one of {', '.join(MODEL_CONFIG_PRESETS)}, got {self.model_config!r}")
        if self.model is not None and self.model_config is not None:
            raise ValueError("give either --model (load weights) or --model-config (fresh model), not both")
        if self.model is None and self.model_config is None:
            raise ValueError("no model: give --model NAME_OR_DIR or --model-config tiny|small")
        if self.sinusoidal_positions and self.model_config is None:
            raise ValueError("--sinusoidal-positions only applies to a fresh model (--model-config)")
        if self.local_attention_init and (self.model_config is None or self.objective not in ("masked", "gaussian")):
            raise ValueError("--local-attention-init only applies to a fresh masked or gaussian model "
                             "(--model-config, --objective masked|gaussian)")
        if self.pre_layer_norm and (self.model_config is None or self.objective != "masked"):
            raise ValueError("--pre-layer-norm only applies to a fresh masked model (--model-config, --objective masked)")
        if self.config_overrides is not None:
            if self.model_config is None:
                raise ValueError("--config-overrides only applies with --model-config")
            self.config_overrides_dict()  # validates the format

    def config_overrides_dict(self) -> dict[str, str]:
        """'a=1,b=x' -> {'a': '1', 'b': 'x'} (values are typed later against the config)."""
        pairs = {}
        for item in (self.config_overrides or "").split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--config-overrides wants key=value pairs separated by commas, got {item!r}")
            pairs[key.strip()] = value.strip()
        return pairs


@dataclass
class DataArguments:
    dataset: str = field(
        default=BUNDLED_DATASET,
        metadata={"help": f"'{BUNDLED_DATASET}' (the bundled offline corpus), a hub id "
                  "(roneneldan/TinyStories), or a local .txt/.jsonl/.json/.csv/.parquet file or folder of them."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Config name of a hub dataset."})
    text_column: str = field(default="text", metadata={"help": "Column that holds the text."})
    data_dir: str | None = field(
        default=None,
        metadata={"help": "Train on a folder of source code instead: every file with one of --extensions, "
                  "found recursively, is one document. Overrides --dataset."},
    )
    extensions: str = field(default=".py", metadata={"help": "Comma-separated file endings for --data-dir, e.g. .py,.go,.js"})
    max_length: int = field(default=128, metadata={"help": "Tokens per example, special tokens included."})
    packing: bool = field(
        default=False,
        metadata={"help": "Concatenate documents and cut them into --max-length blocks (for long texts). "
                  "Default: one document per example, truncated."},
    )
    validation_split_percentage: float = field(
        default=2.0, metadata={"help": "Held-out share when the dataset has no validation split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only this many training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on only this many examples."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenisation."})

    def __post_init__(self) -> None:
        if self.max_length < 4:
            raise ValueError(f"--max-length must be at least 4, got {self.max_length}")
        if not 0 < self.validation_split_percentage < 50:
            raise ValueError(f"--validation-split-percentage must lie in (0, 50), got {self.validation_split_percentage}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")

    def extension_list(self) -> list[str]:
        exts = [e.strip() for e in self.extensions.split(",") if e.strip()]
        return [e if e.startswith(".") else "." + e for e in exts]


@dataclass
class DiffusionArguments:
    mask_levels: list[float] = field(
        default_factory=lambda: list(DEFAULT_MASK_LEVELS),
        metadata={"help": "Masking levels drawn in training and reported in evaluation, each in (0, 1]."},
    )
    eval_mask_levels: list[float] | None = field(
        default=None,
        metadata={"help": "Levels reported in evaluation, if not --mask-levels: e.g. train at 0.15 as BERT/RoBERTa "
                  "do and still see the loss at every level from 0.1 to 1.0."},
    )
    rate_sampling: str = field(
        default="levels",
        metadata={"help": "levels: draw the mask rate from --mask-levels. continuous: t ~ U[eps, 1], rate = 1 - alpha(t)."},
    )
    schedule: str = field(
        default="linear",
        metadata={"help": f"Noise schedule for --rate-sampling continuous, and the alpha_bar(t) of --objective "
                  f"gaussian (default there: sqrt-quarter-snr, or the loaded checkpoint's): "
                  f"{', '.join(schedules.available_schedules())}."},
    )
    mask_rate_per: str = field(
        default="example",
        metadata={"help": "example: a rate per example (smoother). batch: one rate per batch (the original recipe)."},
    )
    prefix_len: int = field(default=0, metadata={"help": "Never mask the first N text tokens (train to continue a prompt)."})
    eos_padding: bool = field(
        default=False,
        metadata={"help": "Pad every example to --max-length with </s> that are attended and masked like text (LLaDA's "
                  "SFT padding), so the model learns where a text ends: generation then ends its texts, and "
                  "--threshold decoding commits the </s> tail in a few passes. Costs more per step (full-width rows)."},
    )
    loss_weighting: str = field(
        default="none",
        metadata={"help": "none: mean cross-entropy over masked tokens. elbo: weight each example by "
                  "-alpha'(t)/(1-alpha(t)) (1/t for linear), the MDLM / LLaDA bound."},
    )
    eval_before_training: bool = field(
        default=True, metadata={"help": "Evaluate once before training, so the final table shows the change."}
    )

    def __post_init__(self) -> None:
        bad = [level for level in self.mask_levels if not 0.0 < level <= 1.0]
        if bad or not self.mask_levels:
            raise ValueError(f"--mask-levels must be numbers in (0, 1], got {self.mask_levels}")
        self.mask_levels = sorted(set(float(level) for level in self.mask_levels))
        if self.eval_mask_levels is not None:
            if not self.eval_mask_levels or any(not 0.0 < level <= 1.0 for level in self.eval_mask_levels):
                raise ValueError(f"--eval-mask-levels must be numbers in (0, 1], got {self.eval_mask_levels}")
            self.eval_mask_levels = sorted(set(float(level) for level in self.eval_mask_levels))
        if self.rate_sampling not in ("levels", "continuous"):
            raise ValueError(f"--rate-sampling must be 'levels' or 'continuous', got {self.rate_sampling!r}")
        schedules.get_schedule(self.schedule)
        if self.mask_rate_per not in ("example", "batch"):
            raise ValueError(f"--mask-rate-per must be 'example' or 'batch', got {self.mask_rate_per!r}")
        if self.prefix_len < 0:
            raise ValueError(f"--prefix-len must be >= 0, got {self.prefix_len}")
        if self.loss_weighting not in ("none", "elbo"):
            raise ValueError(f"--loss-weighting must be 'none' or 'elbo', got {self.loss_weighting!r}")


@dataclass
class GaussianArguments:
    """The flags of --objective gaussian (diffusion/gaussian/); the schedule is --schedule."""

    diffusion_steps: int = field(
        default=1000,
        metadata={"help": "N, the discrete steps of the Gaussian process (a loaded Gaussian checkpoint keeps its own)."},
    )
    embedding_dim: int | None = field(
        default=None,
        metadata={"help": "With --model-config: the size d of the learned token embeddings that are diffused "
                  "(default 64, measured in docs/GAUSSIAN_TEXT.md; Diffusion-LM used 16-128)."},
    )
    no_self_conditioning: bool = field(
        default=False,
        metadata={"help": "With --model-config: build the denoiser without the self-conditioning input (Chen et al. 2022)."},
    )
    self_conditioning_rate: float = field(
        default=0.5, metadata={"help": "Share of training batches that feed a first pass's x0 estimate back in."}
    )
    fixed_text_rate: float = field(
        default=0.5,
        metadata={"help": "Share of training rows in which a prefix or scattered tokens stay clean and unscored, "
                  "so that the model continues (--prefix) and fills in (--text) given text."},
    )
    sampler: str = field(
        default="ddim", metadata={"help": "ddpm | ddim: the sampler of the texts written during training."}
    )
    ddim_steps: int | None = field(
        default=None,
        metadata={"help": "Steps of --sampler ddim for the texts written during training (default 50, or all when fewer)."},
    )

    def __post_init__(self) -> None:
        if self.diffusion_steps < 1:
            raise ValueError(f"--diffusion-steps must be at least 1, got {self.diffusion_steps}")
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ValueError(f"--embedding-dim must be at least 1, got {self.embedding_dim}")
        for name in ("self_conditioning_rate", "fixed_text_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must lie in [0, 1], got {getattr(self, name)}")
        GaussianSamplingOptions(sampler=self.sampler, ddim_steps=self.ddim_steps)  # the sampler's own checks


@dataclass
class ImageArguments:
    """The flags of --objective image (diffusion/image/; docs/IMAGE_DIFFUSION.md)."""

    objective: str = field(default="image", metadata={"help": "image: this parser's objective."})
    model: str | None = field(
        default=None, metadata={"help": "An image checkpoint folder to continue training (default: a fresh --model-type)."})
    model_type: str = field(default="UNet", metadata={"help": "The denoiser to build: UNet or DiT."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "Override fields of the model's config, e.g. 'base_channels=64,channel_mults=1x2x2'."})
    dataset: str = field(
        default="digits",
        metadata={"help": "digits (scikit-learn's bundled 8x8 handwritten digits, offline), a folder of images, or a "
                  "Hugging Face image dataset (ylecun/mnist)."},
    )
    image_column: str = field(default="image", metadata={"help": "Column that holds the images."})
    label_column: str = field(default="label", metadata={"help": "Column that holds the class labels ('none': unconditional)."})
    image_size: int | None = field(
        default=None, metadata={"help": "Pixels per side every image is resized to (default: the dataset's own)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most N training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most N held-out images."})
    schedule: str = field(
        default="cosine",
        metadata={"help": f"alpha_bar(t) of the Gaussian process: {', '.join(schedules.available_schedules())}."})
    diffusion_steps: int = field(default=1000, metadata={"help": "N, the discrete steps of the Gaussian process."})
    cond_drop: float = field(
        default=0.1, metadata={"help": "Share of training images whose label (or caption) is replaced by the null "
                               "one (classifier-free guidance needs the unconditional model too)."})
    condition: str = field(
        default="label", metadata={"help": "label: a class label per image. text: a caption made from the label with "
                                   "templates, read by a frozen --text-encoder through cross-attention (UNet only)."})
    text_encoder: str = field(
        default="models/masked-base", metadata={"help": "With --condition text: the frozen encoder of the captions, a "
                                                "masked LM folder or hub id (e.g. a CLIP text model, with internet)."})
    sampler: str = field(default="ddim", metadata={"help": "Sampler of the grids written in and after training: ddpm, ddim."})
    ddim_steps: int = field(default=50, metadata={"help": "DDIM steps of those grids."})
    guidance: float = field(default=3.0, metadata={"help": "Classifier-free guidance of those grids."})
    eval_before_training: bool = field(
        default=True, metadata={"help": "Evaluate once before training, so the final table shows the change."})

    def __post_init__(self) -> None:
        if self.model_type not in ("UNet", "DiT"):
            raise ValueError(f"--model-type must be UNet or DiT, got {self.model_type!r}")
        if self.label_column.lower() == "none":
            self.label_column = None
        if self.image_size is not None and self.image_size < 4:
            raise ValueError(f"--image-size must be at least 4, got {self.image_size}")
        schedules.get_schedule(self.schedule)
        if self.diffusion_steps < 1:
            raise ValueError(f"--diffusion-steps must be at least 1, got {self.diffusion_steps}")
        if not 0.0 <= self.cond_drop < 1.0:
            raise ValueError(f"--cond-drop must lie in [0, 1), got {self.cond_drop}")
        if self.sampler not in ("ddpm", "ddim"):
            raise ValueError(f"--sampler must be ddpm or ddim, got {self.sampler!r}")
        if not 1 <= self.ddim_steps <= self.diffusion_steps:
            raise ValueError(f"--ddim-steps must lie in 1..{self.diffusion_steps} (the trained steps), got {self.ddim_steps}")
        if self.guidance < 0:
            raise ValueError(f"--guidance must be at least 0 (0: unconditional), got {self.guidance}")
        if self.condition not in ("label", "text"):
            raise ValueError(f"--condition must be label or text, got {self.condition!r}")
        if self.condition == "text" and self.model_type != "UNet":
            raise ValueError("--condition text: only the UNet has cross-attention blocks; use --model-type UNet")

    def overrides_dict(self) -> dict[str, str]:
        return ModelArguments.config_overrides_dict(self)


DASHBOARD_SAMPLE_EVERY = 50  # --dashboard's sample refresh, in steps, unless --sample-every says otherwise


@dataclass
class RunArguments:
    quick_test: bool = field(
        default=False,
        metadata={"help": "The small offline preset of the --objective, a few CPU minutes on the bundled corpus (see "
                  "the top of config.py): masked turns models/mlm-base into a diffusion model -> results/, causal "
                  "continues models/causal-base, gaussian trains a fresh denoiser -> results-gaussian/, image a "
                  "fresh UNet -> results-image/."},
    )
    from_scratch: bool = field(
        default=False,
        metadata={"help": "With --quick-test (masked, causal): start from a random init of the same architecture "
                  "instead of the bundled base, to see what a few CPU minutes learn without pretraining."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Delete an earlier run in --output_dir and start afresh."}
    )
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in --output_dir."})
    use_ema: bool = field(
        default=False,
        metadata={"help": "Keep an exponential moving average of the weights (saved in every checkpoint as "
                  "ema.safetensors); the final model is the average. Any objective."},
    )
    ema_decay: float = field(default=0.9999, metadata={"help": "Decay of --use-ema, warmed up as min(decay, (1+n)/(10+n))."})
    sample_every: int | None = field(
        default=None,
        metadata={"help": "Write a few generated texts to the log, OUTPUT/samples.jsonl and TensorBoard every N "
                  "steps (default: at every evaluation; 0: never). Any objective."},
    )
    num_sample_texts: int = field(default=3, metadata={"help": "Texts per --sample-every."})
    dashboard: bool = field(
        default=False,
        metadata={"help": "Train behind a live window (Tkinter): epoch, step, loss, learning rate and status, the "
                  "loss of every level as it trains, and the latest sample (every --sample-every steps, default "
                  f"{DASHBOARD_SAMPLE_EVERY} with the window). Closing it stops at the next step with a "
                  "checkpoint that --resume continues. Any objective; needs a display."},
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"--ema-decay must lie in (0, 1), got {self.ema_decay}")
        if self.sample_every is not None and self.sample_every < 0:
            raise ValueError(f"--sample-every must be >= 0, got {self.sample_every}")
        if self.num_sample_texts < 1:
            raise ValueError(f"--num-sample-texts must be at least 1, got {self.num_sample_texts}")
        if self.from_scratch and not self.quick_test:
            raise ValueError("--from-scratch changes the --quick-test preset; give both, or use --model-config tiny")
        if self.overwrite_output_dir and self.resume:
            raise ValueError("--resume continues the run in --output_dir; --overwrite-output-dir deletes it: pick one")


def check_cross_fields(data: DataArguments, diffusion: DiffusionArguments) -> None:
    """Checks that span two dataclasses."""
    # <s> + prefix + at least one maskable token + </s>
    if data.max_length < diffusion.prefix_len + 3:
        raise ValueError(
            f"--max-length {data.max_length} leaves nothing to mask after --prefix-len {diffusion.prefix_len}: "
            f"use --max-length of at least {diffusion.prefix_len + 3}"
        )


def expand_seed_aliases(argv: list[str]) -> list[str]:
    """The aliases in this toolkit's words: --epochs 50 -> --num_train_epochs 50, --amp -> --fp16/--bf16 true."""
    out = []
    for arg in argv:
        flag, sep, value = arg.partition("=")
        name = flag.replace("_", "-")
        if name in SEED_ALIASES:
            out.append(SEED_ALIASES[name] + (sep + value if sep else ""))
        elif name == "--amp":
            import torch

            # Mixed precision: float16 with loss scaling on a GPU without bfloat16, else bfloat16; on a
            # machine without a GPU, CPU autocast in bfloat16 (Trainer wants --use_cpu said for that).
            if not torch.cuda.is_available():
                out += ["--bf16", value if sep else "true", "--use_cpu", "true"]
            else:
                out += ["--fp16" if not torch.cuda.is_bf16_supported() else "--bf16", value if sep else "true"]
        else:
            out.append(arg)
    return out


def expand_config_file(argv: list[str]) -> list[str]:
    """``--config FILE.yaml`` -> the file's flags in its place (so flags typed after it win).

    The file maps flag names to values, as ``HfArgumentParser.parse_yaml_file`` reads them
    (``learning_rate: 1e-4``, ``use_ema: true``, ``mask_levels: [0.5, 1.0]``); configs/ holds examples.
    """
    out, i = [], 0
    while i < len(argv):
        flag, sep, inline = argv[i].partition("=")
        if flag != "--config":
            out.append(argv[i])
            i += 1
            continue
        path = inline if sep else (argv[i + 1] if i + 1 < len(argv) else None)
        i += 1 if sep else 2
        if not path:
            raise ValueError("--config: expected a YAML file")
        if not os.path.isfile(path):
            raise ValueError(f"--config {path!r}: no such file")
        import yaml

        try:
            with open(path) as f:
                values = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"--config {path!r} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise ValueError(f"--config {path!r} must map flag names to values, got a {type(values).__name__}")
        for key, value in values.items():
            out.append(f"--{key}")
            if isinstance(value, list):
                out += [str(v) for v in value]
            elif isinstance(value, bool):
                out.append("true" if value else "false")
            elif value is not None:
                out.append(str(value))
    return out


def no_pinning_without_accelerator(training, given: set[str]) -> None:
    """Pinned memory only speeds up copies to a GPU; on a machine without one (and without --use_cpu
    said) torch warns about it at every DataLoader, so it is switched off unless asked for."""
    import torch

    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6; before, CUDA is the one that pins
    present = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    if "--dataloader-pin-memory" not in given and (training.use_cpu or not present):
        training.dataloader_pin_memory = False


def parse_image_train_args(argv: list[str]):
    """-> (ImageArguments, RunArguments, TrainingArguments) for --objective image."""
    renamed = []
    for arg in expand_config_file(list(argv)):
        flag, sep, value = arg.partition("=")
        renamed.append(IMAGE_SEED_ALIASES.get(flag.replace("_", "-"), flag) + sep + value)
    argv = expand_seed_aliases(renamed)
    given = flag_names(argv)
    foreign = sorted(given & (GAUSSIAN_FLAGS - {"--diffusion-steps", "--sampler", "--ddim-steps"} | MASKED_FLAGS
                              | {"--max-length", "--model-config", "--text-column", "--packing", "--tokenizer"}))
    if foreign:
        verb = "applies" if len(foreign) == 1 else "apply"
        raise ValueError(f"{', '.join(foreign)} only {verb} to the text objectives, not --objective image")
    if "--quick-test" in given:
        preset = list(QUICK_TEST_IMAGE_ARGS)
    else:
        model_type = flag_value(argv, "--model-type") or "UNet"
        preset = ["--output_dir", f"results-image-{model_type.lower()}", *FULL_IMAGE_ARGS]
    image, run, training = parse_args((ImageArguments, RunArguments, TrainingArguments), preset + list(argv))
    if run.from_scratch:
        raise ValueError("--from-scratch: the image quick test always trains from scratch (there is no bundled image base)")
    run.note = None
    no_pinning_without_accelerator(training, given)
    return image, run, training


def check_objective_flags(objective: str, given: set[str]) -> None:
    """Flags of another objective are an error that says so, never ignored."""
    foreign = sorted(given & (MASKED_FLAGS if objective == "gaussian" else GAUSSIAN_FLAGS))
    if foreign:
        owner = "masked" if objective == "gaussian" else "gaussian"
        verb = "applies" if len(foreign) == 1 else "apply"
        raise ValueError(f"{', '.join(foreign)} only {verb} to --objective {owner}, not {objective}")


def parse_train_args(argv: list[str]):
    """-> (ModelArguments, DataArguments, DiffusionArguments, GaussianArguments, RunArguments, TrainingArguments)."""
    argv = expand_seed_aliases(expand_config_file(list(argv)))
    given = flag_names(argv)
    note = None
    objective = flag_value(argv, "--objective") or "masked"
    check_objective_flags(objective, given)
    if "--quick-test" in given and objective == "gaussian":
        preset = QUICK_TEST_GAUSSIAN_ARGS  # always a fresh denoiser, unless --model names one (see the preset)
    elif "--quick-test" in given:
        base = BUNDLED_CAUSAL_MODEL if objective == "causal" else BUNDLED_MLM_MODEL
        # A fresh --model-config is a from-scratch run too (a larger learning rate suits it).
        from_scratch = bool(given & {"--from-scratch", "--model-config"})
        if not from_scratch and not os.path.isdir(base) and "--model" not in given:
            note = f"note: no bundled base at {base}; the quick test trains from scratch instead"
            from_scratch = True
        if from_scratch:
            preset = QUICK_TEST_FROM_SCRATCH_ARGS
        else:
            preset = QUICK_TEST_CAUSAL_ARGS if objective == "causal" else QUICK_TEST_ARGS
    else:
        preset = FULL_GAUSSIAN_ARGS if objective == "gaussian" else FULL_ARGS
    # --model and --model-config exclude each other: the one the user typed replaces the preset's.
    if given & {"--model", "--model-config"}:
        drop = {"--model", "--model-config", "--pre-layer-norm"}
        if "--model" in given:  # the Gaussian presets' init shapes a fresh denoiser only
            drop |= {"--local-attention-init", "--local-attention-layers"}
        preset = drop_flags(preset, drop)
    other_text = "--data-dir" in given or flag_value(argv, "--dataset") not in (None, BUNDLED_DATASET)
    if other_text or given & {"--model", "--tokenizer"}:  # the Gaussian presets' word vocabulary (see above)
        preset = drop_flags(preset, {"--tokenizer"})
    model, data, diffusion, gaussian, run, training = parse_args(
        (ModelArguments, DataArguments, DiffusionArguments, GaussianArguments, RunArguments, TrainingArguments),
        preset + list(argv))
    check_cross_fields(data, diffusion)
    if model.objective == "gaussian" and model.model is not None and given & {"--embedding-dim", "--no-self-conditioning"}:
        raise ValueError("--embedding-dim and --no-self-conditioning build a fresh denoiser: give --model-config, "
                         "not --model")
    run.note = note  # printed by train.py with the model line, once everything has loaded
    # Which of the Gaussian process's settings were typed (a loaded checkpoint's own are used otherwise).
    gaussian.given = {name for name in ("--schedule", "--diffusion-steps") if name in given}
    no_pinning_without_accelerator(training, flag_names(argv))
    return model, data, diffusion, gaussian, run, training
