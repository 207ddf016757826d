"""Train the bundled byte-level BPE tokenizer on the WordNet corpus (train split only).

Maintainer script: users load the committed result with
    AutoTokenizer.from_pretrained("data/tokenizer")
To rebuild (takes seconds on a CPU):

    python data/build_tokenizer.py --vocab-size 4096
    python data/build_tokenizer.py --word-level --vocab-size 8192 --output-dir data/word-tokenizer

The second is the word-level vocabulary of the Gaussian base (models/gaussian-base): the same
cuts between words, no merges, <unk> for a word outside its 8,192 entries.

The tokenizer is RoBERTa-style: byte-level BPE without an added prefix space, special
tokens <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4, encodings wrapped as "<s> ... </s>", and a
<mask> token that swallows the space before it (lstrip=True) so "The <mask> sat." masks
the word " cat" the way RoBERTa does.
"""

import argparse
import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DATA_DIR.parent))  # the repository root, for the diffusion package

from diffusion.text.tokenizer import read_texts, train_tokenizer, train_word_tokenizer, wrap  # noqa: E402

DEFAULT_VOCAB_SIZE = 4096  # chosen by data/measure_vocab.py, see data/README.md


def verify(output_dir, word_level=False):
    """Reload from disk the way users will and check the properties the models rely on."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(output_dir)
    assert (
        tok.bos_token_id,
        tok.pad_token_id,
        tok.eos_token_id,
        tok.unk_token_id,
        tok.mask_token_id,
    ) == (0, 1, 2, 3, 4)
    text = "A dog: a domestic animal."
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id, ids
    assert tok.decode(ids, skip_special_tokens=True) == text
    for sample in [] if word_level else [  # a word-level vocabulary writes <unk> for unseen words
        "  two  spaces, tabs\tand UTF-8: café, naïve, 東京 ✓",
        "Line one.\nLine two!",
    ]:
        assert (
            tok.decode(tok(sample)["input_ids"], skip_special_tokens=True) == sample
        ), sample
    masked = tok("The <mask> sat.")["input_ids"]
    assert masked.count(tok.mask_token_id) == 1, tok.convert_ids_to_tokens(masked)
    # lstrip: the space before <mask> belongs to the mask, not to a stray "Ġ" token.
    assert tok.decode(masked[1 : masked.index(tok.mask_token_id)]) == "The", (
        tok.convert_ids_to_tokens(masked)
    )
    print(
        f"verified {output_dir}: vocab {len(tok)}, {text!r} -> {tok.convert_ids_to_tokens(ids)}"
    )
    print(f"  'The <mask> sat.' -> {tok.convert_ids_to_tokens(masked)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument("--word-level", action="store_true",
                        help="whole words, no merges (the Gaussian base's data/word-tokenizer)")
    parser.add_argument(
        "--train-file", type=Path, default=DATA_DIR / "wordnet" / "train.jsonl.gz"
    )
    parser.add_argument("--output-dir", type=Path, default=DATA_DIR / "tokenizer")
    args = parser.parse_args(argv)

    if not args.train_file.is_file():
        print(
            f"error: {args.train_file} not found; run python data/build_corpus.py first",
            file=sys.stderr,
        )
        return 1
    texts = read_texts(args.train_file)  # train split only: validation stays unseen
    tok = (train_word_tokenizer if args.word_level else train_tokenizer)(texts, args.vocab_size)
    wrap(tok).save_pretrained(args.output_dir)
    print(
        f"trained on {len(texts)} train documents, vocab {tok.get_vocab_size()} -> {args.output_dir}"
    )
    verify(args.output_dir, args.word_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
