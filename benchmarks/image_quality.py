"""How good are the generated digits? Judged by a classifier that never saw a generated image.

    python benchmarks/image_quality.py --checkpoint results-image/final-model
    python benchmarks/image_quality.py --checkpoint results-image-unet/final-model --checkpoint results-image-dit/final-model
    python benchmarks/image_quality.py --checkpoint results-image/final-model --per-class 20 --no-ddpm   # quicker

The judge (diffusion/image/classifier.py): scikit-learn's MLPClassifier, one hidden layer of 64,
seed 0, trained on the real training split of the digits; its accuracy on the real held-out split
is the ceiling of every row. For every checkpoint, --per-class samples of every class:

* guidance 0, 1, 3, 5 with DDIM at 50 steps (0 is the unconditional model: the label is ignored, so
  accuracy falls to chance, 0.1);
* DDPM with every trained step, and DDIM with 10, 25 and 50 steps, at guidance 3.

Columns: accuracy (the judge's label = the requested one), confidence (the judge's mean probability
of the requested label), FD (the Frechet distance between the judge's 64 hidden features of the
samples and of the real held-out images: the floor is real training vs held-out images, the
ceiling uniform noise), nearest (mean pixel distance of a sample to its nearest training image)
and copies (share of samples nearer to a training image than 99% of the held-out images are:
memorisation), steps and wall seconds. Writes OUTPUT/image_quality.json and image_quality.png
(accuracy and FD against guidance).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from diffusion.checkpoint import quiet_loading  # noqa: E402
from diffusion.cli import parse_args, run_main  # noqa: E402
from diffusion.image.classifier import frechet_distance, nearest_distances, train_judge  # noqa: E402
from diffusion.image.data import ImageCollator, load_image_datasets  # noqa: E402
from diffusion.image.generation import load_image_generator  # noqa: E402
from diffusion.image.sampling import ImageSamplingOptions, sample_images  # noqa: E402

GUIDANCE = (0.0, 1.0, 3.0, 5.0)
DDIM_STEPS = (10, 25, 50)


@dataclass
class QualityArguments:
    checkpoint: list[str] = field(default_factory=lambda: ["results-image/final-model"],
                                  metadata={"help": "Image checkpoints to judge (repeat the flag's values for several)."})
    per_class: int = field(default=50, metadata={"help": "Samples of every class per setting."})
    guidance: list[float] = field(default_factory=lambda: list(GUIDANCE), metadata={"help": "Guidance values (DDIM 50)."})
    ddim_steps: list[int] = field(default_factory=lambda: list(DDIM_STEPS), metadata={"help": "DDIM steps (guidance 3)."})
    no_ddpm: bool = field(default=False, metadata={"help": "Leave out DDPM with every trained step (the slow row)."})
    seed: int = field(default=0, metadata={"help": "Seed of the samples (the judge always uses 0)."})
    output_dir: str = field(default="results-image-quality", metadata={"help": "Folder for the JSON and the plot."})

    def __post_init__(self) -> None:
        if self.per_class < 2:
            raise ValueError(f"--per-class must be at least 2 (the distance needs a spread), got {self.per_class}")
        if any(g < 0 for g in self.guidance):
            raise ValueError(f"--guidance values must be at least 0, got {self.guidance}")


def pixels_of(split) -> tuple[torch.Tensor, np.ndarray]:
    batch = ImageCollator(8, 1)([split[i] for i in range(len(split))])
    return batch["pixel_values"], batch["labels"].numpy()


def judge_row(judge, samples: torch.Tensor, labels: np.ndarray, reference_features, train_pixels, copy_radius) -> dict:
    probs = judge.probabilities(samples)
    nearest = nearest_distances(samples, train_pixels)
    return {"accuracy": round(float((probs.argmax(1) == labels).mean()), 4),
            "confidence": round(float(probs[np.arange(len(labels)), labels].mean()), 4),
            "fd": round(frechet_distance(judge.features(samples), reference_features), 3),
            "nearest": round(float(nearest.mean()), 3),
            "copies": round(float((nearest < copy_radius).float().mean()), 4)}


def run(argv: list[str]) -> int:
    (args,) = parse_args((QualityArguments,), argv)
    quiet_loading()
    generators = [load_image_generator(path) for path in args.checkpoint]  # every checkpoint loads before any work
    for g in generators:
        classes = len(g.config.class_names or []) if g.bank is not None else g.model.config.num_classes
        if g.config.image_size != 8 or g.config.channels != 1 or classes != 10:
            raise ValueError(f"{g.checkpoint!r} is not a model of the 8x8 digits with 10 classes; this benchmark's "
                             f"judge knows only those")
        for n in args.ddim_steps:  # beyond the trained steps: one line, before any work
            ImageSamplingOptions(ddim_steps=n).schedule_of_steps(g.process)
    data = load_image_datasets()
    train_pixels, train_labels = pixels_of(data["train"])
    held_pixels, held_labels = pixels_of(data["validation"])
    judge = train_judge(train_pixels, train_labels, seed=0)
    reference = judge.features(held_pixels)
    held_nearest = nearest_distances(held_pixels, train_pixels)
    copy_radius = float(torch.quantile(held_nearest, 0.01))
    noise = torch.rand(len(held_pixels), 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rows = [{"model": "real", "setting": "held-out images (the judge's ceiling)", "steps": None, "seconds": None,
             **judge_row(judge, held_pixels, held_labels, reference, train_pixels, copy_radius),
             "fd": round(frechet_distance(judge.features(train_pixels), reference), 3)},  # the floor: real vs real
            {"model": "noise", "setting": "uniform noise (the distance's ceiling)", "steps": None, "seconds": None,
             "accuracy": None, "confidence": None, "fd": round(frechet_distance(judge.features(noise), reference), 3),
             "nearest": None, "copies": None}]
    print(f"judge: MLP (64 hidden), held-out accuracy {rows[0]['accuracy']:.3f}; FD floor {rows[0]['fd']:.2f}, "
          f"ceiling {rows[1]['fd']:.1f}; copy radius {copy_radius:.3f}")

    labels = torch.arange(10).repeat_interleave(args.per_class)
    for g in generators:
        if g.bank is not None:  # text-conditioned: captions from training templates and from held-out ones
            rows += caption_rows(g, judge, labels, args, reference, train_pixels, copy_radius)
            continue
        name = f"{type(g.model).__name__.removesuffix('Model')} ({os.path.basename(os.path.dirname(g.checkpoint.rstrip('/')))})"
        base = min(50, g.process.num_steps)  # the guidance rows' DDIM steps
        settings = [ImageSamplingOptions(ddim_steps=base, guidance=w) for w in args.guidance]
        settings += [ImageSamplingOptions(ddim_steps=n, guidance=3.0) for n in args.ddim_steps
                     if n != base or 3.0 not in args.guidance]  # DDIM 50 at guidance 3 is a row already
        if not args.no_ddpm:
            settings.append(ImageSamplingOptions(sampler="ddpm", guidance=3.0))
        for options in settings:
            started = time.perf_counter()
            result = sample_images(g.model, g.process, labels, options, seed=args.seed)
            seconds = time.perf_counter() - started
            row = {"model": name, "setting": options.describe(g.process), "guidance": options.guidance,
                   "guidance_row": options.sampler == "ddim" and options.steps_for(g.process) == base,
                   "sampler": options.sampler, "steps": result.forward_passes, "seconds": round(seconds, 1),
                   **judge_row(judge, result.images, labels.numpy(), reference, train_pixels, copy_radius)}
            rows.append(row)
            print(f"{name} | {row['setting']}: accuracy {row['accuracy']:.3f}, FD {row['fd']:.2f}, {seconds:.1f} s")

    table = ["| model | setting | accuracy | confidence | FD | nearest | copies | steps | wall s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        formats = {"accuracy": ".3f", "confidence": ".3f", "fd": ".2f", "nearest": ".3f", "copies": ".3f",
                   "steps": "d", "seconds": ".1f"}
        cells = [r["model"], r["setting"]] + ["-" if r.get(k) is None else format(r[k], f) for k, f in formats.items()]
        table.append("| " + " | ".join(cells) + " |")
    print("\n" + "\n".join(table))
    os.makedirs(args.output_dir, exist_ok=True)
    meta = {"per_class": args.per_class, "seed": args.seed, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "judge_held_out_accuracy": rows[0]["accuracy"], "copy_radius": round(copy_radius, 4)}
    json_path = os.path.join(args.output_dir, "image_quality.json")
    with open(json_path, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    plot_path = plot_guidance(rows, os.path.join(args.output_dir, "image_quality.png"))
    print(f"\nwrote {json_path}\nwrote {plot_path}")
    return 0


def caption_rows(g, judge, labels, args, reference, train_pixels, copy_radius) -> list[dict]:
    """A text-conditioned model: each template's captions of the ten digits, at every --guidance (DDIM 50).

    The held-out templates never appeared in training: their accuracy is what the conditioning
    learned about the digit rather than about the exact training phrases."""
    from diffusion.image.captions import HELD_OUT_TEMPLATES, TRAIN_TEMPLATES, caption

    name = f"UNet + text ({os.path.basename(os.path.dirname(g.checkpoint.rstrip('/')))})"
    out = []
    templates = [("training", TRAIN_TEMPLATES[0])] + [("held-out", t) for t in HELD_OUT_TEMPLATES]
    for kind, template in templates:
        texts = [caption(template, int(y)) for y in labels]
        for w in args.guidance:
            options = ImageSamplingOptions(ddim_steps=min(50, g.process.num_steps), guidance=w)
            started = time.perf_counter()
            result = sample_images(g.model, g.process, None, options, seed=args.seed, captions=texts, bank=g.bank)
            row = {"model": name, "setting": f'{kind} template "{template}", {options.describe(g.process)}',
                   "guidance": w, "sampler": "ddim", "steps": result.forward_passes,
                   "seconds": round(time.perf_counter() - started, 1), "template": kind,
                   **judge_row(judge, result.images, labels.numpy(), reference, train_pixels, copy_radius)}
            out.append(row)
            print(f"{name} | {row['setting']}: accuracy {row['accuracy']:.3f}, FD {row['fd']:.2f}")
    return out


def plot_guidance(rows: list[dict], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for model in dict.fromkeys(r["model"] for r in rows if "guidance" in r):
        points = sorted((r["guidance"], r["accuracy"], r["fd"]) for r in rows
                        if r["model"] == model and r.get("guidance_row"))
        w = [p[0] for p in points]
        left.plot(w, [p[1] for p in points], marker="o", label=model)
        right.plot(w, [p[2] for p in points], marker="o", label=model)
    left.axhline(rows[0]["accuracy"], color="grey", linestyle="--", label="real held-out images")
    right.axhline(rows[0]["fd"], color="grey", linestyle="--", label="floor: real train vs held-out")
    left.set(xlabel="classifier-free guidance w", ylabel="judge accuracy on the requested digit", ylim=(0, 1.02),
             title="Guidance makes the digit asked for (DDIM, 50 steps)")
    right.set(xlabel="classifier-free guidance w", ylabel="Frechet distance to held-out images (judge features)",
              title="Distance to the real images")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
