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
"""

from __future__ import annotations

import argparse
import math
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from transformers import AutoModelForMaskedLM  # noqa: E402

from data_collator import VariableMaskingCollator  # noqa: E402
from diffusion.checkpoint import load_tokenizer, quiet_loading, usable_length  # noqa: E402
from diffusion.masked.analysis import attention_stats  # noqa: E402
from diffusion.text.data import load_raw_datasets  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a masked LM folder (train.py's final-model or a checkpoint-N)")
    parser.add_argument("--samples", type=int, default=128, help="held-out documents to average over")
    parser.add_argument("--mask-rate", type=float, default=0.15)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.checkpoint):
        print(f"error: checkpoint folder {args.checkpoint!r} does not exist", file=sys.stderr)
        return 2

    quiet_loading()
    tokenizer = load_tokenizer(args.checkpoint)
    # "eager" attention: SDPA does not return the weights.
    try:
        model = AutoModelForMaskedLM.from_pretrained(args.checkpoint, attn_implementation="eager").eval()
    except ValueError:  # "Unrecognized configuration class": a causal or other non-masked model
        print(f"error: {args.checkpoint!r} is not a masked LM", file=sys.stderr)
        return 2
    positions = usable_length(model) or 512
    texts = load_raw_datasets("wordnet")["validation"][: args.samples]["text"]
    rows = sorted(tokenizer(texts, truncation=True, max_length=min(positions, 128))["input_ids"], key=len)
    collator = VariableMaskingCollator(tokenizer, mask_levels=(args.mask_rate,), seed=0)
    batches = [collator([{"input_ids": ids} for ids in rows[i:i + 32]]) for i in range(0, len(rows), 32)]

    stats = attention_stats(model, batches)  # per layer and head, over real queries
    entropy, neighbour, log_len = stats.entropy, stats.neighbour, stats.log_length
    print(f"{args.checkpoint}: attention entropy per head (nats; uniform = {log_len:.2f}, one key = 0) "
          f"and [share of weight on the neighbours i-1, i+1]")
    for layer in range(entropy.shape[0]):
        cells = "  ".join(f"{e:4.2f} [{n:4.2f}]" for e, n in zip(entropy[layer].tolist(), neighbour[layer].tolist(), strict=True))
        print(f"layer {layer}: {cells}")
    mean = entropy.mean().item()
    verdict = ("collapsed onto single keys" if mean < 0.15 * log_len else
               "close to uniform (bag of words)" if mean > 0.85 * log_len else "in between")
    print(f"mean entropy {mean:.2f} of {log_len:.2f} ({verdict}); mean neighbour share {neighbour.mean().item():.2f} "
          f"(uniform would give {2 / math.exp(log_len):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
