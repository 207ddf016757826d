"""Every argument of train.py, as dataclasses parsed by ``HfArgumentParser``, plus the presets.

    python train.py --help                 # every flag, with its help text
    python train.py --quick-test           # small offline run on the bundled corpus -> results/
    python train.py                        # the full default: roberta-base -> results-full/

Flags may be written with dashes or underscores (``--max-length`` = ``--max_length``); all of
``transformers.TrainingArguments`` is available too (``--learning_rate``, ``--max_steps``,
``--per_device_train_batch_size``, ``--report_to tensorboard``, ...).

A preset is a list of flags placed *before* the user's own, so anything typed on the command
line overrides the preset (argparse keeps the last value of a repeated flag).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments

from data_collator import DEFAULT_MASK_LEVELS
from diffusion import schedules

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
BUNDLED_DATASET = "wordnet"  # data/wordnet/{train,validation}.jsonl.gz
BUNDLED_TOKENIZER = os.path.join(REPO_DIR, "data", "tokenizer")
MODEL_CONFIG_PRESETS = ("tiny", "small")
TRAINED_MODEL = "results/final-model"  # what --quick-test writes
# The small pretrained masked model shipped with the repository (see models/README.md).
BUNDLED_MASKED_MODEL = os.path.join(REPO_DIR, "models", "masked-base")
# Its autoregressive baseline: GPT-2 architecture, same tokenizer, data and budget (models/causal-base/README.md).
BUNDLED_CAUSAL_MODEL = os.path.join(REPO_DIR, "models", "causal-base")

# The small offline run, a few minutes on 2 CPU cores: fine-tune the bundled pretrained base
# (models/masked-base, made by train.py itself, see its README.md) with variable masking.
QUICK_TEST_ARGS = [
    "--model", BUNDLED_MASKED_MODEL,
    "--output_dir", "results",
    "--max-length", "64",
    # The base learned in its last 2,000 steps where a text ends (</s> padding as targets); the quick
    # test keeps that objective, or generation would lose the end of its texts again.
    "--eos-padding",
    "--per_device_train_batch_size", "64",
    "--per_device_eval_batch_size", "128",
    "--train_sampling_strategy", "group_by_length",
    # The base was pretrained with this very objective (variable masking) for 26,000 steps and its
    # learning rate decayed to 0: only a small rate continues it without undoing part of it.
    # Measured (docs/BENCHMARKS.md): on the 24,000-step base, 3e-5 for 700 steps lowered the held-out
    # loss or left it equal at 9 of 10 masking levels, 1e-4 raised it at 9 of 10; on this base 3e-5
    # for 200 steps lowers it at 4 levels and leaves it equal at 6. 200 steps, since rows padded to
    # 64 cost about 3x the steps of length-grouped ones (1.4 against 4.5 steps/s): ~4 minutes in all.
    "--learning_rate", "3e-5",
    "--warmup_steps", "0.05",
    "--weight_decay", "0.01",
    "--adam_beta2", "0.98",
    "--max_steps", "200",
    "--logging_steps", "50",
    "--save_steps", "250",
    "--save_total_limit", "2",
    "--eval_strategy", "no",
    "--max-eval-samples", "1000",
    "--use_cpu",
    "--ddp_find_unused_parameters", "false",  # every parameter is used; the search costs a graph walk
]
# --quick-test --from-scratch, and --quick-test while no bundled base exists: a fresh tiny RoBERTa
# trained for 500 steps, to see what a few CPU minutes give without pretraining (the
# unigram plateau: word frequencies only). A fresh model wants the larger learning rate.
QUICK_TEST_FROM_SCRATCH_ARGS = [
    "--model-config", "tiny",
    *[arg for arg in QUICK_TEST_ARGS[2:] if arg not in ("--adam_beta2", "0.98", "--eos-padding")],
    "--learning_rate", "1e-3",  # later flags win
    "--max_steps", "500",
]
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
                  "left-to-right model on the same tokenizer and data, the baseline to compare against."},
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
        metadata={"help": "With --model-config and --objective masked: start the first layer's heads as "
                  "previous/next-token heads (offsets -1, +1, -2, +2) over a position channel, instead of "
                  "attending uniformly (see diffusion/modeling.py, init_local_attention). All weights still "
                  "train. The bundled base uses it: without it a CPU-sized encoder predicts word frequencies "
                  "for thousands of steps."},
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
        if self.objective not in ("masked", "causal"):
            raise ValueError(f"--objective must be 'masked' or 'causal', got {self.objective!r}")
        if self.model_config is not None and self.model_config not in MODEL_CONFIG_PRESETS:
            raise ValueError(f"--model-config must be one of {', '.join(MODEL_CONFIG_PRESETS)}, got {self.model_config!r}")
        if self.model is not None and self.model_config is not None:
            raise ValueError("give either --model (load weights) or --model-config (fresh model), not both")
        if self.model is None and self.model_config is None:
            raise ValueError("no model: give --model NAME_OR_DIR or --model-config tiny|small")
        if self.sinusoidal_positions and self.model_config is None:
            raise ValueError("--sinusoidal-positions only applies to a fresh model (--model-config)")
        if self.local_attention_init and (self.model_config is None or self.objective != "masked"):
            raise ValueError("--local-attention-init only applies to a fresh masked model (--model-config, --objective masked)")
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
        metadata={"help": f"Noise schedule for --rate-sampling continuous: {', '.join(schedules.available_schedules())}."},
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
class RunArguments:
    quick_test: bool = field(
        default=False,
        metadata={"help": "The small offline preset: fine-tune the bundled base models/masked-base on the bundled "
                  "corpus for 200 steps -> results/ (see the top of config.py)."},
    )
    from_scratch: bool = field(
        default=False,
        metadata={"help": "With --quick-test: start from a random init of the same architecture instead of the "
                  "bundled base, to see what a few CPU minutes learn without pretraining."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Delete an earlier run in --output_dir and start afresh."}
    )
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in --output_dir."})

    def __post_init__(self) -> None:
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


@dataclass
class GenerateArguments:
    """Flags of generate.py (and of the scripts built on it)."""

    checkpoint: str | None = field(
        default=None,
        metadata={"help": f"Model folder or hub id. Default: {TRAINED_MODEL} if it exists, else the bundled model."},
    )
    prefix: str | None = field(default=None, metadata={"help": "Fixed text to continue (kept unchanged)."})
    prompt: str | None = field(default=None, metadata={"help": "Same as --prefix."})
    text: str | None = field(
        default=None,
        metadata={"help": "Infill template: each [MASK] is one token to generate, e.g. 'The [MASK] sat on the [MASK].'"},
    )
    max_length: int | None = field(
        default=None, metadata={"help": "Tokens per sequence incl. <s> and </s>. Default: the length the model was trained at."}
    )
    steps: int = field(default=10, metadata={"help": "Denoising steps (forward passes; fewer with --threshold)."})
    schedule: str = field(
        default="linear",
        metadata={"help": f"How many positions stay masked after each step: {', '.join(schedules.available_schedules())}."},
    )
    sampling: str = field(default="greedy", metadata={"help": "greedy | topk | nucleus"})
    k: int = field(default=50, metadata={"help": "Candidates for --sampling topk."})
    p: float = field(default=0.9, metadata={"help": "Probability mass for --sampling nucleus, in (0, 1]."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature (0 = greedy)."})
    remasking: str = field(
        default="low-confidence",
        metadata={"help": "Which masked positions are committed each step: low-confidence (surest first) | random."},
    )
    refine: bool = field(
        default=False,
        metadata={"help": "Re-predict every generated position at every step and re-mask the least confident "
                  "(the original recipe: committed tokens may still change)."},
    )
    threshold: float | None = field(
        default=None,
        metadata={"help": "Also commit every prediction with probability above this (parallel decoding, Fast-dLLM)."},
    )
    block_length: int | None = field(
        default=None,
        metadata={"help": "Semi-autoregressive: unmask blocks of this many positions, left to right. Default: 8 for "
                  "a model trained with --eos-padding, else none; 0 turns blocks off."},
    )
    num_samples: int = field(default=3, metadata={"help": "Sequences to generate (one batch)."})
    seed: int = field(default=0, metadata={"help": "Random seed: the same seed gives the same output."})
    show_steps: bool = field(default=False, metadata={"help": "Print every step, with the masks still visible."})
    json: bool = field(default=False, metadata={"help": "Print machine-readable JSON (texts and the full trace)."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, mps... Default: cuda if available."})

    def __post_init__(self) -> None:
        if self.prompt is not None:
            if self.prefix is not None and self.prefix != self.prompt:
                raise ValueError("--prompt and --prefix are the same flag; give one")
            self.prefix = self.prompt
        if self.prefix is not None and self.text is not None:
            raise ValueError("give either --prefix (continue a prompt) or --text (fill a template), not both")
        if self.max_length is not None and self.max_length < 3:
            raise ValueError(f"--max-length must be at least 3, got {self.max_length}")
        if self.num_samples < 1:
            raise ValueError(f"--num-samples must be at least 1, got {self.num_samples}")
        _check_block_length(self.block_length)

    def decode_options(self):
        from diffusion.unmasking import DecodeOptions

        return DecodeOptions(steps=self.steps, schedule=self.schedule, sampling=self.sampling, k=self.k, p=self.p,
                             temperature=self.temperature, remasking=self.remasking, refine=self.refine,
                             threshold=self.threshold, block_length=self.block_length or None, seed=self.seed)


def parse_generate_args(argv: list[str]) -> GenerateArguments:
    (args,) = HfArgumentParser(GenerateArguments).parse_args_into_dataclasses(args=list(argv))
    args.decode_options()  # validates --steps, --k, --p, --temperature, ... now
    return args


@dataclass
class VisualizeArguments(GenerateArguments):
    """Flags of visualize_generation.py: every decoding flag of generate.py, plus the pictures'."""

    num_samples: int = field(default=1, metadata={"help": "Always 1: the animation follows one sequence."})
    show_steps: bool = field(default=False, metadata={"help": "Also print every step in the terminal."})
    json: bool = field(default=False, metadata={"help": "Not here: the trace goes to animation_data.js (generate.py --json)."})
    frame_ms: int = field(
        default=800, metadata={"help": "Milliseconds per frame in the GIF and the viewer (the last frame stays 3x)."}
    )
    output: str = field(
        default=".",
        metadata={"help": "Folder for text_diffusion_animation.gif, visualization_frames/ and animation_data.js."},
    )
    width: int = field(default=960, metadata={"help": "Frame width in pixels (the height follows the text)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_samples != 1:
            raise ValueError(f"the animation follows one sequence: --num-samples must be 1, got {self.num_samples} "
                             "(generate.py --num-samples N --show-steps prints several)")
        if self.json:
            raise ValueError("--json is generate.py's; visualize_generation.py writes the same trace to animation_data.js")
        # GIF delays are in 1/100 s, and browsers play delays under 20 ms as 100 ms.
        if self.frame_ms < 20:
            raise ValueError(f"--frame-ms must be at least 20, got {self.frame_ms}")
        if self.width < 480:
            raise ValueError(f"--width must be at least 480 pixels, got {self.width}")


def parse_visualize_args(argv: list[str]) -> VisualizeArguments:
    (args,) = HfArgumentParser(VisualizeArguments).parse_args_into_dataclasses(args=list(argv))
    args.decode_options()  # validates --steps, --k, --p, --temperature, ... now
    return args


def _flag_names(argv: list[str]) -> set[str]:
    """{'--max-length', ...} for the flags in argv, normalised to dashes."""
    return {a.split("=", 1)[0].replace("_", "-") for a in argv if a.startswith("--")}


def _drop_flags(argv: list[str], names: set[str]) -> list[str]:
    """argv without the named flags and their values."""
    out, skip = [], False
    for arg in argv:
        if skip and not arg.startswith("--"):
            continue
        skip = arg.startswith("--") and arg.split("=", 1)[0].replace("_", "-") in names
        if not skip:
            out.append(arg)
    return out


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in argv (the last one wins), else None."""
    value = None
    for i, arg in enumerate(argv):
        flag, sep, inline = arg.partition("=")
        if flag.replace("_", "-") == name:
            value = inline if sep else (argv[i + 1] if i + 1 < len(argv) else None)
    return value


def parse_train_args(argv: list[str]):
    """-> (ModelArguments, DataArguments, DiffusionArguments, RunArguments, TrainingArguments)."""
    given = _flag_names(argv)
    note = None
    if "--quick-test" in given:
        causal = _flag_value(argv, "--objective") == "causal"
        base = BUNDLED_CAUSAL_MODEL if causal else BUNDLED_MASKED_MODEL
        # A fresh --model-config is a from-scratch run too (a larger learning rate suits it).
        from_scratch = bool(given & {"--from-scratch", "--model-config"})
        if not from_scratch and not os.path.isdir(base) and "--model" not in given:
            note = f"note: no bundled base at {base}; the quick test trains from scratch instead"
            from_scratch = True
        if from_scratch:
            preset = QUICK_TEST_FROM_SCRATCH_ARGS
        else:
            # The autoregressive quick test fine-tunes the bundled GPT-2-style baseline instead.
            preset = [base if arg == BUNDLED_MASKED_MODEL else arg for arg in QUICK_TEST_ARGS]
    else:
        preset = FULL_ARGS
    # --model and --model-config exclude each other: the one the user typed replaces the preset's.
    if given & {"--model", "--model-config"}:
        preset = _drop_flags(preset, {"--model", "--model-config", "--pre-layer-norm"})
    parser = HfArgumentParser((ModelArguments, DataArguments, DiffusionArguments, RunArguments, TrainingArguments))
    model, data, diffusion, run, training = parser.parse_args_into_dataclasses(args=preset + list(argv))
    check_cross_fields(data, diffusion)
    run.note = note  # printed by train.py with the model line, once everything has loaded
    return model, data, diffusion, run, training


# ----------------------------------------------------------------------------------------------
# compare_models.py and benchmarks/quality.py: the diffusion model against its GPT-2 baseline.
def _check_block_length(block_length: int | None) -> None:
    if block_length is not None and block_length < 0:
        raise ValueError(f"--block-length must be at least 1 (or 0 for none), got {block_length}")


def _check_decoding_flags(steps: int, schedule: str, sampling: str, k: int, p: float, temperature: float) -> None:
    from diffusion.sampling import check_sampling_args

    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    schedules.get_schedule(schedule)
    check_sampling_args(sampling, k, p, temperature)


@dataclass
class CompareArguments:
    """Flags of compare_models.py."""

    roberta_checkpoint: str | None = field(
        default=None,
        metadata={"help": f"The diffusion side: masked LM folder or hub id. Default: {TRAINED_MODEL} if it exists, "
                  "else the bundled models/masked-base."},
    )
    gpt2_checkpoint: str | None = field(
        default=None,
        metadata={"help": "The autoregressive side: causal LM folder or hub id (gpt2 with internet). "
                  "Default: the bundled models/causal-base."},
    )
    prompt: str | None = field(default=None, metadata={"help": "Text both models continue (kept unchanged)."})
    infill: str | None = field(
        default=None,
        metadata={"help": "Infilling instead: a template whose [MASK]s (one token each) the diffusion model fills. "
                  "GPT-2 gets only the text before the first [MASK] and writes on from there."},
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Diffusion sequence length incl. <s> and </s> (default: the length it was trained at); "
                  "GPT-2 generates as many new tokens as the diffusion model does."},
    )
    steps: int = field(default=10, metadata={"help": "Diffusion denoising steps."})
    schedule: str = field(
        default="linear", metadata={"help": f"Diffusion schedule: {', '.join(schedules.available_schedules())}."}
    )
    remasking: str = field(default="low-confidence", metadata={"help": "Diffusion remasking: low-confidence | random."})
    block_length: int | None = field(
        default=None,
        metadata={"help": "Diffusion in semi-autoregressive blocks of this many positions. Default: 8 for a model "
                  "trained with --eos-padding, else none; 0 turns blocks off."},
    )
    sampling: str = field(default="greedy", metadata={"help": "greedy | topk | nucleus, for both models."})
    k: int = field(default=50, metadata={"help": "Candidates for --sampling topk."})
    p: float = field(default=0.9, metadata={"help": "Probability mass for --sampling nucleus, in (0, 1]."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature for both models (0 = greedy)."})
    seed: int = field(default=0, metadata={"help": "Random seed for both models."})
    judge: str | None = field(
        default=None,
        metadata={"help": "A causal LM (folder or hub id), neither generator, that scores both texts: judge perplexity."},
    )
    output: str = field(default="comparison.gif", metadata={"help": "The GIF; comparison_frames/ is written beside it."})
    json: str | None = field(default=None, metadata={"help": "The table as JSON. Default: comparison.json beside the GIF."})
    num_frames: int = field(default=40, metadata={"help": "Frames: equal slices of the shared wall-clock timeline."})
    frame_ms: int = field(default=150, metadata={"help": "Milliseconds per GIF frame (the last is held 3x)."})
    width: int = field(default=960, metadata={"help": "Frame width in pixels."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... Default: cuda if available."})

    def __post_init__(self) -> None:
        if self.prompt is not None and self.infill is not None:
            raise ValueError("give either --prompt (continue a text) or --infill (fill a template), not both")
        if self.max_length is not None and self.max_length < 3:
            raise ValueError(f"--max-length must be at least 3, got {self.max_length}")
        if not self.output.lower().endswith(".gif"):
            raise ValueError(f"--output is the GIF to write and must end in .gif, got {self.output!r}")
        if self.num_frames < 2:
            raise ValueError(f"--num-frames must be at least 2, got {self.num_frames}")
        if self.frame_ms < 20:
            raise ValueError(f"--frame-ms must be at least 20, got {self.frame_ms}")
        if self.width < 480:
            raise ValueError(f"--width must be at least 480 pixels, got {self.width}")
        _check_block_length(self.block_length)
        _check_decoding_flags(self.steps, self.schedule, self.sampling, self.k, self.p, self.temperature)
        self.decode_options()

    def decode_options(self):
        from diffusion.unmasking import DecodeOptions

        return DecodeOptions(steps=self.steps, schedule=self.schedule, sampling=self.sampling, k=self.k, p=self.p,
                             temperature=self.temperature, remasking=self.remasking,
                             block_length=self.block_length or None, seed=self.seed)


def parse_compare_args(argv: list[str]) -> CompareArguments:
    (args,) = HfArgumentParser(CompareArguments).parse_args_into_dataclasses(args=list(argv))
    return args


@dataclass
class QualityArguments:
    """Flags of benchmarks/quality.py."""

    roberta_checkpoint: str | None = field(
        default=None, metadata={"help": f"Diffusion model. Default: {TRAINED_MODEL} if it exists, else models/masked-base."}
    )
    gpt2_checkpoint: str | None = field(default=None, metadata={"help": "Causal baseline. Default: models/causal-base."})
    judge: str | None = field(
        default=None,
        metadata={"help": "Causal LM (folder or hub id) that scores every generator: judge perplexity. It must be "
                  "neither generator. Without it the perplexity column stays empty."},
    )
    num_prompts: int = field(default=20, metadata={"help": "Held-out prompts (data/wordnet/validation.jsonl.gz)."})
    samples_per_prompt: int = field(default=4, metadata={"help": "Samples per prompt and setting (seeds 0, 1, ...)."})
    max_new_tokens: int = field(default=64, metadata={"help": "Tokens each generator writes after the prompt."})
    prompt_tokens: int = field(default=3, metadata={"help": "Tokens of each held-out text used as the prompt."})
    steps: list[int] = field(default_factory=lambda: [8, 16, 32, 64], metadata={"help": "Diffusion step counts."})
    schedules: list[str] = field(
        default_factory=lambda: ["linear", "cosine", "exponential"], metadata={"help": "Diffusion schedules."}
    )
    remasking: list[str] = field(
        default_factory=lambda: ["low-confidence", "random"], metadata={"help": "Diffusion remasking rules."}
    )
    threshold: float | None = field(
        default=0.9,
        metadata={"help": "Also run parallel decoding with this --threshold (at the most steps, linear, low-confidence)."},
    )
    block_length: int | None = field(
        default=None,
        metadata={"help": "Semi-autoregressive blocks of this many positions for every diffusion setting (LLaDA). "
                  "Default: 8 for a model trained with --eos-padding (else its </s> tail spreads over the text), "
                  "else none; 0 turns blocks off."},
    )
    sampling: str = field(default="nucleus", metadata={"help": "greedy | topk | nucleus, for every generator."})
    k: int = field(default=50, metadata={"help": "Candidates for --sampling topk."})
    p: float = field(default=0.9, metadata={"help": "Probability mass for --sampling nucleus."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature."})
    seed: int = field(default=0, metadata={"help": "Base seed: prompt i, every setting, uses seed + i."})
    output_dir: str = field(default="results/quality", metadata={"help": "quality.md, quality.json, quality_vs_steps.png."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an earlier quality.json in --output-dir."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... Default: cuda if available."})

    def __post_init__(self) -> None:
        for name in ("num_prompts", "samples_per_prompt", "max_new_tokens", "prompt_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.steps or min(self.steps) < 1:
            raise ValueError(f"--steps must be step counts >= 1, got {self.steps}")
        for schedule in self.schedules:
            schedules.get_schedule(schedule)
        bad = [r for r in self.remasking if r not in ("low-confidence", "random")]
        if bad or not self.remasking:
            raise ValueError(f"--remasking must be low-confidence and/or random, got {self.remasking}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"--threshold must lie in (0, 1), got {self.threshold}")
        _check_block_length(self.block_length)
        _check_decoding_flags(1, "linear", self.sampling, self.k, self.p, self.temperature)


def parse_quality_args(argv: list[str]) -> QualityArguments:
    (args,) = HfArgumentParser(QualityArguments).parse_args_into_dataclasses(args=list(argv))
    return args
