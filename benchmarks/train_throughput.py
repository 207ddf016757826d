"""Training throughput: DiffusionTrainer (as train.py builds it) against a bare PyTorch loop.

    python benchmarks/train_throughput.py                          # 10 warm-up + 150 timed steps per path
    python benchmarks/train_throughput.py --steps 30 --warmup 5    # a quick check
    python benchmarks/train_throughput.py --output /tmp/throughput.json

Run it from the repository root. Both paths train the tiny preset model (same seed, so the same
initial weights) on the bundled WordNet corpus with the quick-test settings (batch 64, max length
64, AdamW lr 1e-3, group_by_length), and see the SAME batches: they are drawn once, through the
stock Trainer dataloader (LengthGroupedSampler + VariableMaskingCollator, seeded as in train.py),
and replayed to both. Collation is thus outside both timings (it is printed separately).

  (a) Trainer: ``DiffusionTrainer`` with the real collator object; only ``get_train_dataloader`` is
      overridden, to replay the stored batches. Everything else (training_step, compute_loss with its
      per-level bookkeeping, clipping, scheduler, callbacks) is the stock per-step path.
  (b) bare: ``masked_logits`` + mean cross-entropy (DiffusionTrainer's loss with loss_weighting none),
      backward, clip_grad_norm_(1.0), AdamW step, LR-scheduler step, zero_grad. Nothing else.

Both paths do the same math, which the script checks: the first-step losses must agree within 1e-4
(same weights + same batch => same loss), and the largest loss difference over all steps is shown.
The ratio Trainer/bare tokens/s is the number to watch (project target: >= 0.90). Speed is noisy on
a shared 2-core machine: compare runs made on the same machine, and prefer the median ms/step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from operator import itemgetter

# benchmarks/ is a subfolder: put the repository root on the path so `config`, `diffusion` import.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Same filter as train.py: pyarrow deprecation noise from datasets' Dataset.sort.
warnings.filterwarnings("ignore", message="Specifying null_placement", category=FutureWarning)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback, get_scheduler, set_seed  # noqa: E402

from config import parse_train_args  # noqa: E402
from data_collator import VariableMaskingCollator  # noqa: E402
from diffusion.checkpoint import load_tokenizer  # noqa: E402
from diffusion.masked.logits import masked_logits  # noqa: E402
from diffusion.masked.trainer import DiffusionTrainer  # noqa: E402
from diffusion.paths import BUNDLED_TOKENIZER  # noqa: E402
from diffusion.text.data import load_raw_datasets, tokenize_datasets  # noqa: E402
from diffusion.text.models import build_model, count_parameters  # noqa: E402
from diffusion.training import CompactPrinterCallback  # noqa: E402

TARGET_RATIO = 0.90  # the project's goal for Trainer tokens/s divided by bare-loop tokens/s
LOSS_TOLERANCE = 1e-4


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- Trainer side
class ReplayTrainer(DiffusionTrainer):
    """DiffusionTrainer that trains on a fixed list of already-collated batches.

    ``data_collator`` stays the real VariableMaskingCollator (DiffusionTrainer needs its ``mask_levels``
    for per-level logging); only the dataloader changes, so the per-step path is the stock one.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.replay_batches: list[dict[str, torch.Tensor]] | None = None
        self.step_losses: list[torch.Tensor] = []

    def get_train_dataloader(self) -> DataLoader:
        if self.replay_batches is None:  # the stock loader: used once, to draw the batches
            return super().get_train_dataloader()
        # The trick: a list of batch dicts is a map-style dataset; batch_size=1 with a collate that
        # takes the single item back out yields each stored dict unchanged, in order. It goes through
        # accelerator.prepare like the stock loader, so accelerate's DataLoaderShard stays in the loop.
        loader = DataLoader(self.replay_batches, batch_size=1, shuffle=False, collate_fn=itemgetter(0))
        return self.accelerator.prepare(loader)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.step_losses.append(loss.detach())  # a reference, no .item(): adds no sync to the step
        return loss


class StepClock(TrainerCallback):
    """perf_counter() at the end of every optimizer step (after zero_grad), as the bare loop records it."""

    def __init__(self):
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


# ---------------------------------------------------------------------------------- bare side
def diffusion_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """DiffusionTrainer.compute_loss with loss_weighting="none", minus the per-level bookkeeping."""
    labels = batch["labels"]  # (B, L), -100 where not masked
    masked = labels != -100  # (B, L)
    logits = masked_logits(model, batch["input_ids"], batch["attention_mask"], masked)  # (N, V)
    # reduction="none" then .mean(), exactly as compute_loss does it (bit-identical losses).
    return F.cross_entropy(logits.float(), labels[masked], reduction="none").mean()


def make_optimizer(model, training_args) -> torch.optim.Optimizer:
    """AdamW as Trainer.create_optimizer builds it: weight decay except on biases and LayerNorm weights,
    and fused when Trainer's default optim ("adamw_torch_fused" on torch >= 2.8) asks for it."""
    no_decay = {f"{name}.{p}" if name else p for name, module in model.named_modules()
                if isinstance(module, torch.nn.LayerNorm) for p, _ in module.named_parameters(recurse=False)}
    decay = [p for n, p in model.named_parameters() if "bias" not in n and n not in no_decay]
    rest = [p for n, p in model.named_parameters() if "bias" in n or n in no_decay]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": training_args.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=training_args.learning_rate, betas=(training_args.adam_beta1, training_args.adam_beta2),
        eps=training_args.adam_epsilon, fused=training_args.optim == "adamw_torch_fused",
    )


def check_same_optimizer(bare: torch.optim.Optimizer, trainer: Trainer, model) -> None:
    """Fail early if Trainer would build a different optimizer (class, hyper-parameters, decay groups)."""
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(trainer.args, model)
    decay_names = set(trainer.get_decay_parameter_names(model))
    n_decay = sum(1 for n, _ in model.named_parameters() if n in decay_names)
    mine = {k: bare.defaults.get(k) for k in kwargs}
    problems = []
    if cls is not type(bare):
        problems.append(f"class {cls.__name__} vs {type(bare).__name__}")
    if mine != kwargs:
        problems.append(f"kwargs {kwargs} vs {mine}")
    if n_decay != len(bare.param_groups[0]["params"]):
        problems.append(f"{n_decay} decayed tensors vs {len(bare.param_groups[0]['params'])}")
    if problems:
        raise SystemExit("error: the bare loop's optimizer differs from Trainer's: " + "; ".join(problems))


def run_bare(model, batches, training_args, total_steps: int) -> tuple[list[float], list[torch.Tensor]]:
    """The plain loop. Returns perf_counter() after each step, and each step's loss."""
    optimizer = make_optimizer(model, training_args)
    # Same LR schedule as Trainer.create_scheduler (the loss is the same either way; this keeps the
    # trajectories identical, so that the losses of later steps can be compared too).
    scheduler = get_scheduler(training_args.lr_scheduler_type, optimizer,
                              num_warmup_steps=training_args.get_warmup_steps(total_steps),
                              num_training_steps=total_steps)
    model.train()
    times, losses = [], []
    for batch in batches:
        loss = diffusion_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), training_args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        times.append(time.perf_counter())
    return times, losses


# ---------------------------------------------------------------------------------- reporting
def summarise(name: str, step_end_times: list[float], start_time: float, batches, warmup: int) -> dict:
    """Timed window: from the end of the last warm-up step to the end of the last step."""
    timed = batches[warmup:]
    tokens = int(sum(int(b["attention_mask"].sum()) for b in timed))  # non-pad tokens
    elapsed = step_end_times[-1] - step_end_times[warmup - 1]
    per_step = [b - a for a, b in zip(step_end_times[warmup - 1:-1], step_end_times[warmup:], strict=True)]
    return {
        "path": name, "steps": len(timed), "tokens": tokens, "seconds": round(elapsed, 3),
        "tokens_per_s": tokens / elapsed, "steps_per_s": len(timed) / elapsed,
        "ms_per_step": 1000 * elapsed / len(timed), "median_ms_per_step": 1000 * statistics.median(per_step),
        "total_seconds_with_warmup": round(step_end_times[-1] - start_time, 3),
    }


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:  # platform.processor() is often empty on Linux; /proc/cpuinfo names the model
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def table(rows: list[dict]) -> str:
    lines = ["| path | steps | tokens/s | steps/s | ms/step | median ms/step |",
             "| ---- | ----: | -------: | ------: | ------: | -------------: |"]
    for r in rows:
        lines.append(f"| {r['path']} | {r['steps']} | {r['tokens_per_s']:,.0f} | {r['steps_per_s']:.3f} | "
                     f"{r['ms_per_step']:.1f} | {r['median_ms_per_step']:.1f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=150, help="timed optimizer steps per path")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before timing, per path (>= 1)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--order", choices=("bare-first", "trainer-first"), default="bare-first",
                   help="which path runs first (to check that the order does not matter)")
    p.add_argument("--logging-steps", type=int, default=0, help="Trainer logging every N steps (0: off, the default)")
    p.add_argument("--output", help="also write the results as JSON to this file")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be >= 1 (the first step carries one-time costs such as optimizer state)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.load_before = os.getloadavg()[0]  # taken before we load the CPU: what other processes are doing
    total_steps = args.warmup + args.steps
    scratch = tempfile.mkdtemp(prefix="train_throughput_")  # Trainer wants an output_dir; nothing is saved
    try:
        # train.py's own argument parsing with the quick-test preset, so that lr, weight decay, warmup
        # ratio, group_by_length, use_cpu and the diffusion settings are the preset's; only what a
        # benchmark must change is overridden (no saving, no logging, no progress bar, fixed length).
        model_args, data_args, diff_args, _, _, training_args = parse_train_args([
            # --from-scratch: the tiny preset from a seeded random init (the same weights on both paths)
            "--quick-test", "--from-scratch", "--output_dir", scratch, "--max-length", str(args.max_length),
            "--per_device_train_batch_size", str(args.batch_size), "--max_steps", str(total_steps),
            "--seed", str(args.seed), "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
            "--disable_tqdm", "true",
            "--logging_strategy", "steps" if args.logging_steps else "no",
            "--logging_steps", str(max(args.logging_steps, 1)), "--loss_weighting", "none",
        ])
        return run(args, model_args, data_args, diff_args, training_args, total_steps)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args, model_args, data_args, diff_args, training_args, total_steps: int) -> int:
    set_seed(training_args.seed)
    tokenizer = load_tokenizer(BUNDLED_TOKENIZER)
    log("loading and tokenising the bundled corpus ...")
    raw = load_raw_datasets(data_args.dataset)
    train_set = tokenize_datasets(raw, tokenizer, data_args.text_column, data_args.max_length)["train"]

    # ---- (a) the Trainer, built as train.py builds it -------------------------------------------
    set_seed(training_args.seed)
    trainer_model = build_model("masked", model_args.model_config, tokenizer, data_args.max_length)
    collator = VariableMaskingCollator(
        tokenizer, mask_levels=diff_args.mask_levels, rate_sampling=diff_args.rate_sampling,
        schedule=diff_args.schedule, per_example=diff_args.mask_rate_per == "example",
        prefix_len=diff_args.prefix_len, seed=training_args.seed + training_args.process_index,
    )
    trainer = ReplayTrainer(model=trainer_model, args=training_args, train_dataset=train_set,
                            processing_class=tokenizer, data_collator=collator, loss_weighting=diff_args.loss_weighting)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(CompactPrinterCallback)
    clock = StepClock()
    trainer.add_callback(clock)

    # ---- the batches, drawn once through the stock dataloader -----------------------------------
    log(f"drawing {total_steps} batches through the stock train dataloader (LengthGroupedSampler + collator) ...")
    t = time.perf_counter()
    loader = trainer.get_train_dataloader()  # replay_batches is None: the stock path
    t_loader = time.perf_counter() - t
    batches, t = [], None
    for batch in loader:
        batches.append({k: v.clone() for k, v in batch.items()})  # own copies: nothing aliases the loader
        if t is None:  # the first batch also pays for the sampler's shuffle: time the others
            t = time.perf_counter()
        if len(batches) == total_steps:
            break
    if len(batches) < total_steps:
        raise SystemExit(f"error: only {len(batches)} batches in an epoch; use fewer --steps/--warmup")
    collate_ms = 1000 * (time.perf_counter() - t) / max(len(batches) - 1, 1)
    trainer.replay_batches = batches

    # ---- (b) the bare model: a fresh build with the same seed must give the same weights ----------
    set_seed(training_args.seed)
    bare_model = build_model("masked", model_args.model_config, tokenizer, data_args.max_length)
    pairs = zip(trainer_model.state_dict().values(), bare_model.state_dict().values(), strict=True)
    same_init = all(torch.equal(a, b) for a, b in pairs)
    if not same_init:
        raise SystemExit("error: two builds with the same seed gave different weights")
    check_same_optimizer(make_optimizer(bare_model, training_args), trainer, bare_model)

    results = {}

    def time_bare():
        log(f"bare loop: {args.warmup} warm-up + {args.steps} timed steps ...")
        start = time.perf_counter()
        times, losses = run_bare(bare_model, batches, training_args, total_steps)
        results["bare"] = (summarise("bare PyTorch loop", times, start, batches, args.warmup), losses)

    def time_trainer():
        log(f"Trainer: {args.warmup} warm-up + {args.steps} timed steps ...")
        start = time.perf_counter()
        trainer.train()
        if len(clock.times) != total_steps:
            raise SystemExit(f"error: Trainer ran {len(clock.times)} steps, expected {total_steps}")
        results["trainer"] = (summarise("Trainer (DiffusionTrainer)", clock.times, start, batches, args.warmup),
                              trainer.step_losses)

    for time_path in ((time_bare, time_trainer) if args.order == "bare-first" else (time_trainer, time_bare)):
        time_path()

    # ---- same math? ---------------------------------------------------------------------------
    (bare, bare_losses), (tr, tr_losses) = results["bare"], results["trainer"]
    first_bare, first_tr = float(bare_losses[0]), float(tr_losses[0])
    max_diff = max(abs(float(a) - float(b)) for a, b in zip(bare_losses, tr_losses, strict=True))
    ratio = tr["tokens_per_s"] / bare["tokens_per_s"]
    ratio_median = bare["median_ms_per_step"] / tr["median_ms_per_step"]
    machine = machine_info()
    optim_name = getattr(training_args.optim, "value", training_args.optim)  # an enum member: print its name

    print()
    print(f"machine: {machine['cpu']}, {machine['cpu_count']} CPUs, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), transformers {machine['transformers']}, Python {machine['python']}")
    print(f"model: tiny preset, {count_parameters(bare_model) / 1e6:.2f}M parameters; batch {args.batch_size}, "
          f"max length {args.max_length}, {bare['tokens'] / bare['steps']:.0f} non-pad tokens/step on average; "
          f"optimizer {optim_name}, seed {args.seed}, {args.order}")
    print(f"first-step loss: Trainer {first_tr:.6f}, bare {first_bare:.6f} "
          f"(|diff| {abs(first_tr - first_bare):.1e}); largest |diff| over all {total_steps} steps {max_diff:.1e}")
    load_after = os.getloadavg()[0]
    print(f"load average (1 min): {args.load_before:.2f} before the run, {load_after:.2f} after it "
          f"(this run alone adds about {machine['torch_threads']})")
    if args.load_before > 0.5:
        print("warning: other processes were using the CPU when the run started; on a shared machine the "
              "timings below are noisy, so compare them with care (and try --order trainer-first)")
    print(f"collation (outside both timings): {collate_ms:.1f} ms/batch; building the stock train dataloader "
          f"(LengthGroupedSampler lengths): {t_loader:.1f} s")
    print()
    print(table([tr, bare]))
    print()
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"Trainer / bare tokens/s: {ratio:.3f} ({verdict} the >= {TARGET_RATIO:.2f} target); "
          f"from median step times: {ratio_median:.3f}")

    if args.output:
        report = {
            "machine": machine, "settings": {k: getattr(args, k) for k in ("steps", "warmup", "batch_size", "max_length",
                                                                             "seed", "order", "logging_steps")},
            "optimizer": optim_name, "parameters": count_parameters(bare_model),
            "results": [tr, bare], "ratio_tokens_per_s": ratio, "ratio_median_step": ratio_median,
            "target_ratio": TARGET_RATIO, "first_step_loss": {"trainer": first_tr, "bare": first_bare},
            "max_loss_diff": max_diff, "collate_ms_per_batch": collate_ms, "stock_dataloader_build_s": t_loader,
            "load_average_1min": {"before": args.load_before, "after": load_after},
        }
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.output}")

    # Same initial weights and the same batch must give the same first loss; otherwise the two paths
    # are not comparable and the speed numbers above mean nothing.
    if abs(first_tr - first_bare) > LOSS_TOLERANCE:
        print(f"error: first-step losses differ by more than {LOSS_TOLERANCE}", file=sys.stderr)
        return 1
    print(f"first-step losses agree within {LOSS_TOLERANCE}: both paths computed the same thing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
