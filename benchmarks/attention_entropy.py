"""How spread out is each attention head? A check for masked models stuck on the unigram plateau.

    python benchmarks/attention_entropy.py results/final-model
    python benchmarks/attention_entropy.py runs/mlm15/checkpoint-6000 --samples 256

For every layer and head it prints the mean entropy of the attention weights (in nats) over
held-out documents with 15% of their tokens masked, next to log(L), the entropy of attending
uniformly, and the share of each query's weight that goes to its neighbours (positions i-1 and
i+1).  Two failure modes show up at once:

* entropy near log(L): the head averages the whole sequence (a bag of words);
* entropy near 0 with little weight on the neighbours: the head has collapsed onto one "sink"
  token (often ":" or "."), the attention entropy collapse of Zhai et al. 2023, "Stabilizing
  Transformer Training by Preventing Attention Entropy Collapse".  Softmax is then saturated
  and passes almost no gradient, so training stalls.

A model that reads its context has heads in between, with much weight on the neighbours.
experiments/layer_analysis.py draws the same statistics (and what each layer predicts) as heat maps.

A Gaussian checkpoint (``diffusion_config.json`` says ``gaussian``) gets the same table in the
masked model's setting: a share ``--mask-rate`` of each row's tokens starts from pure noise
(k = N), the rest is given clean and marked by step 0.  It also prints how often the hidden
tokens are rounded right (``evaluate_given_text``, the test on every Gaussian card), since a
denoiser can denoise without reading: docs/GAUSSIAN_TEXT.md, "Why the first base wrote fragments".

    python benchmarks/attention_entropy.py models/gaussian-base --mask-rate 0.5
"""

from __future__ import annotations

import argparse
import math
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402
from transformers import AutoModelForMaskedLM  # noqa: E402

from data_collator import VariableMaskingCollator  # noqa: E402
from diffusion.checkpoint import ModelLoadError, load_diffusion_config, load_tokenizer, quiet_loading, usable_length  # noqa: E402
from diffusion.masked.analysis import AttentionStats, attention_stats, attention_sums  # noqa: E402
from diffusion.text.data import load_raw_datasets  # noqa: E402


def gaussian_attention_stats(generator, rows: list[list[int]], hidden_share: float) -> AttentionStats:
    """Per layer and head, over real queries: rows with a share of their tokens hidden as pure noise."""
    from diffusion.gaussian.trainer import GaussianCollator

    model, process = generator.model.eval(), generator.process
    collator, draw = GaussianCollator(generator.tokenizer), torch.Generator().manual_seed(0)
    sums, queries, log_len = None, 0, 0.0
    for i in range(0, len(rows), 32):
        batch = collator([{"input_ids": ids} for ids in rows[i:i + 32]])
        ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, L)
        position = torch.arange(ids.shape[1])[None]  # (1, L)
        inner = (position > 0) & (position < (mask.sum(dim=1) - 1)[:, None])  # (B, L): between <s> and </s>
        hidden = (torch.rand(ids.shape, generator=draw) < hidden_share) & inner
        with torch.no_grad():
            x0 = model.embed(ids)
            x_t = torch.where(hidden[..., None], torch.randn(x0.shape, generator=draw), x0)  # k = N: pure noise
            steps = model.position_steps(torch.full((ids.shape[0],), process.num_steps), ~hidden & mask.bool())
            _, attentions = model(x_t, steps, mask, output_attentions=True)
        part, q, ll, _ = attention_sums(attentions, mask)
        sums, queries, log_len = (part if sums is None else sums + part), queries + q, log_len + ll
    entropy, distance, neighbour = sums / queries
    return AttentionStats(entropy, distance, neighbour, log_len / queries, float("nan"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a masked LM or Gaussian denoiser folder (train.py's final-model or a checkpoint-N)")
    parser.add_argument("--samples", type=int, default=128, help="held-out documents to average over")
    parser.add_argument("--mask-rate", type=float, default=0.15,
                        help="share of each text's tokens masked (masked LM) or hidden as pure noise (Gaussian)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.checkpoint):
        print(f"error: checkpoint folder {args.checkpoint!r} does not exist", file=sys.stderr)
        return 2

    quiet_loading()
    trained = load_diffusion_config(args.checkpoint)
    texts = load_raw_datasets("wordnet")["validation"][: args.samples]["text"]
    if trained is not None and trained.objective == "gaussian":
        return gaussian_main(args, texts)
    tokenizer = load_tokenizer(args.checkpoint)
    # "eager" attention: SDPA does not return the weights.
    try:
        model = AutoModelForMaskedLM.from_pretrained(args.checkpoint, attn_implementation="eager").eval()
    except ValueError:  # "Unrecognized configuration class": a causal or other non-masked model
        print(f"error: {args.checkpoint!r} is not a masked LM", file=sys.stderr)
        return 2
    positions = usable_length(model) or 512
    rows = sorted(tokenizer(texts, truncation=True, max_length=min(positions, 128))["input_ids"], key=len)
    collator = VariableMaskingCollator(tokenizer, mask_levels=(args.mask_rate,), seed=0)
    batches = [collator([{"input_ids": ids} for ids in rows[i:i + 32]]) for i in range(0, len(rows), 32)]

    print_table(args.checkpoint, attention_stats(model, batches))  # per layer and head, over real queries
    return 0


def gaussian_main(args, texts: list[str]) -> int:
    from datasets import Dataset

    from diffusion.gaussian.generation import load_gaussian_generator
    from diffusion.gaussian.trainer import GaussianCollator, evaluate_given_text

    try:
        generator = load_gaussian_generator(args.checkpoint)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tokenizer, positions = generator.tokenizer, generator.model.config.max_position_embeddings
    rows = sorted(tokenizer(texts, truncation=True, max_length=positions)["input_ids"], key=len)
    stats = gaussian_attention_stats(generator, rows, args.mask_rate)
    print_table(args.checkpoint, stats, f" ({args.mask_rate:.0%} of the tokens hidden as pure noise, the rest given)")
    given = evaluate_given_text(generator.model, generator.process, Dataset.from_dict({"input_ids": rows}),
                                GaussianCollator(tokenizer), [args.mask_rate], batch_size=64)[args.mask_rate]
    print(f"hidden tokens rounded right: {given['accuracy']:.3f} of {given['tokens']:,} (the given-text test of "
          f"the Gaussian cards; compare the masked-token accuracy at mask level {args.mask_rate:g} on "
          f"models/masked-base/README.md)")
    return 0


def print_table(checkpoint: str, stats: AttentionStats, setting: str = "") -> None:
    entropy, neighbour, log_len = stats.entropy, stats.neighbour, stats.log_length
    print(f"{checkpoint}: attention entropy per head (nats; uniform = {log_len:.2f}, one key = 0) "
          f"and [share of weight on the neighbours i-1, i+1]{setting}")
    for layer in range(entropy.shape[0]):
        cells = "  ".join(f"{e:4.2f} [{n:4.2f}]" for e, n in zip(entropy[layer].tolist(), neighbour[layer].tolist(), strict=True))
        print(f"layer {layer}: {cells}")
    mean = entropy.mean().item()
    verdict = ("collapsed onto single keys" if mean < 0.15 * log_len else
               "close to uniform (bag of words)" if mean > 0.85 * log_len else "in between")
    print(f"mean entropy {mean:.2f} of {log_len:.2f} ({verdict}); mean neighbour share {neighbour.mean().item():.2f} "
          f"(uniform would give {2 / math.exp(log_len):.2f})")


if __name__ == "__main__":
    sys.exit(main())
