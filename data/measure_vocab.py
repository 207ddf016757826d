"""Compare BPE vocabulary sizes on the WordNet corpus and print a markdown table.

    python data/measure_vocab.py                      # 2k, 4k, 8k, 16k
    python data/measure_vocab.py --sizes 4096 8192
    python data/measure_vocab.py --word-level --sizes 4096 8192 16384   # whole words (data/word-tokenizer)

For each size a tokenizer is trained on the train split (exactly as build_tokenizer.py
does with diffusion/text/tokenizer.py, nothing is written) and both splits are encoded. Columns:
  train tokens   total tokens of the train split, <s> and </s> included
  mean/p95/p99   document length in tokens (with <s> </s>)
  <=64, <=128    fraction of train documents whose encoding fits in 64 / 128 tokens
  vocab used     fraction of the vocabulary seen more than 10 times in the validation
                 split (and, less noisy, in the train split) -- rarely seen tokens get few
                 gradient updates in a tiny model
  H              unigram entropy of the train split's text tokens (nats/token; <s> </s>
                 excluded because they carry no characters)
  bits/char      H * text tokens / characters / ln 2: a unigram model's cost per
                 character, comparable across vocabularies
  emb share      vocab*256 / (vocab*256 + non-embedding params) for a small RoBERTa
                 (hidden 256, 4 layers, FFN 1024, embeddings tied to the output layer)

With --word-level: for a vocabulary of the N most frequent words (cut as the BPE cuts them before
merging, as diffusion/text/tokenizer.py's train_word_tokenizer does), the share of the train
split's running words it covers, and how often its rarest entry occurs.
"""

import argparse
import math
import sys
import time
from collections import Counter
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DATA_DIR.parent))  # the repository root, for the diffusion package

from diffusion.text.tokenizer import read_texts, train_tokenizer, word_cut  # noqa: E402

HIDDEN, LAYERS, FFN = 256, 4, 1024
NON_EMBEDDING_PARAMS = LAYERS * (
    4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN
)  # attention + FFN weights, ~3.1M


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def measure(train, validation, vocab_size):
    start = time.perf_counter()
    tok = train_tokenizer(train, vocab_size)
    train_seconds = time.perf_counter() - start

    train_ids = [
        e.ids for e in tok.encode_batch(train)
    ]  # post-processor adds <s> ... </s>
    val_ids = [e.ids for e in tok.encode_batch(validation)]
    lengths = sorted(len(ids) for ids in train_ids)
    n_docs, n_tokens = len(lengths), sum(lengths)

    # Unigram statistics over text tokens only (drop the <s> and </s> at each end).
    counts = Counter(t for ids in train_ids for t in ids[1:-1])
    n_text = sum(counts.values())
    entropy = -sum(c / n_text * math.log(c / n_text) for c in counts.values())
    chars = sum(len(t) for t in train)

    val_counts = Counter(t for ids in val_ids for t in ids)
    vocab = tok.get_vocab_size()
    embedding = vocab * HIDDEN
    return {
        "vocab": vocab,
        "train tokens": f"{n_tokens / 1e6:.2f}M",
        "mean len": f"{n_tokens / n_docs:.1f}",
        "p95": percentile(lengths, 95),
        "p99": percentile(lengths, 99),
        "max": lengths[-1],
        "<=64": f"{sum(n <= 64 for n in lengths) / n_docs:.2%}",
        "<=128": f"{sum(n <= 128 for n in lengths) / n_docs:.2%}",
        "vocab used >10x (val)": f"{sum(c > 10 for c in val_counts.values()) / vocab:.1%}",
        "vocab used >10x (train)": f"{sum(c > 10 for c in counts.values()) / vocab:.1%}",
        "H (nats/tok)": f"{entropy:.3f}",
        "bits/char": f"{entropy * n_text / chars / math.log(2):.3f}",
        "emb share": f"{embedding / (embedding + NON_EMBEDDING_PARAMS):.1%}",
        "train s": f"{train_seconds:.1f}",
    }


def word_coverage(train, sizes):
    """Rows of (entries, share of running words covered, count of the rarest entry)."""
    cut = word_cut()
    counts = Counter(w for text in train for w, _ in cut.pre_tokenize_str(text))
    total = sum(counts.values())
    print(f"{total} running words, {len(counts)} distinct\n")
    print("| entries | share of running words | rarest entry seen |")
    print("|---:|---:|---:|")
    for n in sizes:
        top = counts.most_common(n)
        print(f"| {n:,} | {sum(c for _, c in top) / total:.3f} | {top[-1][1]} times |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[2048, 4096, 8192, 16384]
    )
    parser.add_argument("--word-level", action="store_true", help="coverage of whole-word vocabularies")
    args = parser.parse_args(argv)

    train = read_texts(DATA_DIR / "wordnet" / "train.jsonl.gz")
    if args.word_level:
        word_coverage(train, args.sizes)
        return
    validation = read_texts(DATA_DIR / "wordnet" / "validation.jsonl.gz")
    rows = [measure(train, validation, size) for size in args.sizes]

    print(
        f"train: {len(train)} docs, {sum(map(len, train))} chars; validation: {len(validation)} docs; "
        f"non-embedding params {NON_EMBEDDING_PARAMS / 1e6:.2f}M\n"
    )
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")


if __name__ == "__main__":
    main()
