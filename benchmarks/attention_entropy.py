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
from diffusion.checkpoint import load_tokenizer, usable_length  # noqa: E402
from diffusion.text.data import load_raw_datasets  # noqa: E402


@torch.no_grad()
def attention_stats(model, batches) -> tuple[torch.Tensor, torch.Tensor, float]:
    """-> (entropy (layers, heads), neighbour share (layers, heads), mean log(L)), averaged over real queries."""
    entropy_sum = neighbour_sum = None
    queries, log_len_sum = 0, 0.0
    for batch in batches:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
        real = batch["attention_mask"].bool()  # (B, L)
        lengths = real.sum(-1)  # (B,)
        probs = torch.stack(out.attentions, dim=1)  # (B, layers, heads, L, L)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)  # (B, layers, heads, L)
        neighbour = probs.diagonal(offset=1, dim1=-2, dim2=-1)  # (B, layers, heads, L-1): query i -> key i+1
        neighbour = torch.nn.functional.pad(neighbour, (0, 1)) + torch.nn.functional.pad(
            probs.diagonal(offset=-1, dim1=-2, dim2=-1), (1, 0))  # + query i -> key i-1
        weight = real[:, None, None, :].float()  # average over real query positions only
        e = (entropy * weight).sum((0, 3))
        n = (neighbour * weight).sum((0, 3))
        entropy_sum = e if entropy_sum is None else entropy_sum + e
        neighbour_sum = n if neighbour_sum is None else neighbour_sum + n
        queries += int(real.sum())
        log_len_sum += float((lengths.float().log() * lengths).sum())
    return entropy_sum / queries, neighbour_sum / queries, log_len_sum / queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a masked LM folder (train.py's final-model or a checkpoint-N)")
    parser.add_argument("--samples", type=int, default=128, help="held-out documents to average over")
    parser.add_argument("--mask-rate", type=float, default=0.15)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.checkpoint):
        print(f"error: checkpoint folder {args.checkpoint!r} does not exist", file=sys.stderr)
        return 2

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

    entropy, neighbour, log_len = attention_stats(model, batches)
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
