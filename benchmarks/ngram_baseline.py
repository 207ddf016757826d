"""What does local context alone give? A count-based n-gram yardstick for masked-token accuracy.

    python benchmarks/ngram_baseline.py                               # levels 0.1 ... 1.0, 1000 documents
    python benchmarks/ngram_baseline.py --levels 0.1 0.5 1.0 --json results/ngram_baseline.json

It counts, over the content tokens of the bundled training split, which token appears between a
(left, right) pair of neighbours, after a left neighbour, before a right neighbour, and overall.
Then it masks each validation document with the project's own masking (``data_collator``'s
``maskable_positions`` and ``choose_masked``, stochastic rounding included) and predicts every
masked token from its visible neighbours, backing off (left, right) -> left -> right -> the most
frequent token.  ``<s>`` and ``</s>`` count as visible neighbours; ``<mask>`` does not.

Why: it is a yardstick.  A masked LM that reads its neighbours should reach the n-gram column at
low masking levels; one stuck on word frequencies sits at the unigram column.  At level 1.0 only
``<s>`` and ``</s>`` are visible: the n-gram column is then the unigram one plus what they tell
about each document's first and last token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from itertools import chain

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from data_collator import choose_masked, maskable_positions, pad_input_ids  # noqa: E402
from diffusion.checkpoint import ModelLoadError, load_tokenizer  # noqa: E402
from diffusion.masked.levels import DEFAULT_MASK_LEVELS, format_level  # noqa: E402
from diffusion.paths import BUNDLED_DATASET, BUNDLED_TOKENIZER  # noqa: E402
from diffusion.text.data import DataError, load_raw_datasets, tokenize_datasets  # noqa: E402

EDGE = -1  # the neighbour of a document's first or last token when it has no <s> / </s>


def most_frequent(centre: np.ndarray, context: np.ndarray) -> dict[int, int]:
    """{context key: the centre token seen most often with it}; ties go to the smaller id."""
    base = int(centre.max()) + 1
    keys, counts = np.unique(context * base + centre, return_counts=True)  # one int64 per (context, centre)
    context, centre = np.divmod(keys, base)
    order = np.lexsort((-counts, context))  # by context, then most frequent first
    context, centre = context[order], centre[order]
    first = np.r_[True, context[1:] != context[:-1]]  # the top entry of each context
    return dict(zip(context[first].tolist(), centre[first].tolist(), strict=True))


class NgramTables:
    """Most frequent centre token given (left, right), left only, right only, and none."""

    def __init__(self, train_ids: Sequence[Sequence[int]], special_ids: Sequence[int]) -> None:
        flat = np.fromiter(chain.from_iterable([EDGE, *ids] for ids in train_ids), dtype=np.int64)
        flat = np.append(flat, EDGE)
        left, centre, right = flat[:-2], flat[1:-1], flat[2:]
        content = (centre != EDGE) & ~np.isin(centre, list(special_ids))
        left, centre, right = left[content], centre[content], right[content]
        self.width = int(flat.max()) + 2  # ids shifted by one (EDGE -> 0) fit below this
        self.both = most_frequent(centre, self.pair(left, right))
        self.left = most_frequent(centre, left)
        self.right = most_frequent(centre, right)
        self.top = int(np.bincount(centre).argmax())  # the unigram guess

    def pair(self, left, right):
        """One integer key for a (left, right) pair (arrays or ints)."""
        return (left + 1) * self.width + (right + 1)

    def predict(self, left: int, right: int, mask_id: int) -> int:
        """Backoff: (left, right) if both are visible and the pair was seen, else left, else right, else top."""
        if left != mask_id and right != mask_id and self.pair(left, right) in self.both:
            return self.both[self.pair(left, right)]
        if left != mask_id and left in self.left:
            return self.left[left]
        if right != mask_id and right in self.right:
            return self.right[right]
        return self.top


def ngram_accuracy(train_ids: Sequence[Sequence[int]], eval_ids: Sequence[Sequence[int]], levels: Sequence[float],
                   mask_id: int, special_ids: Sequence[int], seed: int = 0) -> dict[float, dict[str, float]]:
    """-> {level: {"ngram": accuracy, "unigram": accuracy, "masked": number of masked tokens}}.

    Each level draws its masks with a fresh ``torch.Generator`` seeded by ``seed``, so a level's
    numbers do not depend on which other levels are asked for.
    """
    tables = NgramTables(train_ids, special_ids)
    # The padding value is never read: attention_mask keeps it out of the maskable positions.
    input_ids, attention_mask = pad_input_ids([{"input_ids": ids} for ids in eval_ids], pad_token_id=mask_id)
    maskable = maskable_positions(input_ids, attention_mask, special_ids, prefix_len=0)
    results = {}
    for level in levels:
        generator = torch.Generator().manual_seed(seed)
        rates = torch.full((len(eval_ids),), level, dtype=torch.float32)  # float32 as the collator draws them
        masked = choose_masked(maskable, rates, generator)
        hits = unigram_hits = n = 0
        for row, ids in enumerate(eval_ids):
            row_masked = masked[row, :len(ids)].tolist()
            noisy = [EDGE] + [mask_id if m else token for token, m in zip(ids, row_masked, strict=True)] + [EDGE]
            for i in (i for i, m in enumerate(row_masked) if m):  # ids[i] sits at noisy[i + 1]
                guess = tables.predict(noisy[i], noisy[i + 2], mask_id)
                hits += guess == ids[i]
                unigram_hits += tables.top == ids[i]
                n += 1
        results[level] = {"ngram": hits / max(n, 1), "unigram": unigram_hits / max(n, 1), "masked": n}
    return results


def load_token_ids(max_length: int, max_eval_samples: int):
    """-> (train documents, first validation documents, mask id, special ids) of the bundled corpus."""
    tokenizer = load_tokenizer(BUNDLED_TOKENIZER)
    data = tokenize_datasets(load_raw_datasets(BUNDLED_DATASET), tokenizer, max_length=max_length)
    validation = data["validation"].select(range(min(max_eval_samples, len(data["validation"]))))
    return list(data["train"]["input_ids"]), list(validation["input_ids"]), tokenizer.mask_token_id, tokenizer.all_special_ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=float, nargs="+", default=list(DEFAULT_MASK_LEVELS),
                        help="fractions of each document's content tokens to mask, each in (0, 1]")
    parser.add_argument("--max-eval-samples", type=int, default=1000, help="first N validation documents")
    parser.add_argument("--max-length", type=int, default=128, help="truncate documents as training does")
    parser.add_argument("--seed", type=int, default=0, help="seed of the masking generator")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    bad = [level for level in args.levels if not 0.0 < level <= 1.0]
    problem = (f"--levels must lie in (0, 1], got {' '.join(map(str, bad))}" if bad else
               f"--max-eval-samples must be >= 1, got {args.max_eval_samples}" if args.max_eval_samples < 1 else
               f"--max-length must be >= 3, got {args.max_length}" if args.max_length < 3 else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    try:
        train_ids, eval_ids, mask_id, special_ids = load_token_ids(args.max_length, args.max_eval_samples)
    except (DataError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results = ngram_accuracy(train_ids, eval_ids, args.levels, mask_id, special_ids, args.seed)

    print(f"masked-token accuracy from local context alone ({len(eval_ids)} validation documents, seed {args.seed})")
    print(f"{'level':>5} | {'n-gram':>6} | {'unigram':>7} | {'masked':>7}")
    for level, row in results.items():
        print(f"{format_level(level):>5} | {row['ngram']:6.3f} | {row['unigram']:7.3f} | {row['masked']:7d}")
    if args.json:
        report = {"dataset": BUNDLED_DATASET, "eval_documents": len(eval_ids), "max_length": args.max_length,
                  "seed": args.seed, "levels": {format_level(level): row for level, row in results.items()}}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
