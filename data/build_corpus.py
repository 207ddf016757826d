"""Build the bundled offline English corpus from WordNet 3.0.

Maintainer script: users never run it, they use the committed outputs in
data/wordnet/. To rebuild (byte-identical output on any machine):

    apt-get install wordnet-base          # Debian/Ubuntu, puts files in /usr/share/wordnet
    python data/build_corpus.py           # writes data/wordnet/{train,validation}.jsonl.gz + LICENSE

Documents (one JSON object per line, {"text": ...}):
  * one per synset:  "LEMMA: GLOSS."  (first lemma of the synset, the definition part
    of the gloss, i.e. the text before the first '; "')
  * one per quoted example sentence in a gloss ("..." parts, quotes stripped).
Exact duplicates are dropped (first occurrence wins), the documents are shuffled with a
fixed seed and round(0.02 * n) of them are held out as the validation split.
"""

import argparse
import gzip
import json
import random
import re
import sys
from pathlib import Path

POS_FILES = (
    "data.noun",
    "data.verb",
    "data.adj",
    "data.adv",
)  # fixed order -> deterministic dedup
SEED = 1234
VALIDATION_FRACTION = 0.02
COPYRIGHT_FILE = Path("/usr/share/doc/wordnet-base/copyright")

# Adjective lemmas carry syntactic markers, e.g. "galore(ip)", "elect(p)", "former(a)".
ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")
# Example sentences are the double-quoted parts of a gloss.
QUOTED = re.compile(r'"([^"]*)"')


def parse_synset_line(line):
    """Return (lemma, definition, examples) for one line of a WordNet data.* file."""
    fields, _, gloss = line.rstrip("\n").partition(" | ")
    # Fields: synset_offset lex_filenum ss_type w_cnt word lex_id ...; the first word is fields[4].
    lemma = ADJ_MARKER.sub("", fields.split(" ")[4]).replace("_", " ")
    # The definition ends where the first example starts; a few glosses are sloppy
    # (missing '; ', stray ';' at the end), so trim separators before adding the period.
    definition = gloss.split('; "', 1)[0].strip().rstrip(" ;,.").strip()
    # A handful of glosses have unbalanced quotes, so quote pairing can capture a bare
    # separator such as ";" -- trim stray semicolons and keep only spans with a letter.
    examples = [m.strip().rstrip(";").strip() for m in QUOTED.findall(gloss)]
    return lemma, definition, [e for e in examples if any(c.isalpha() for c in e)]


def read_documents(wordnet_dir):
    """Yield (kind, text) for every document, in file order (nouns, verbs, adjectives, adverbs)."""
    for name in POS_FILES:
        with open(wordnet_dir / name, encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):  # licence header lines
                    continue
                lemma, definition, examples = parse_synset_line(line)
                yield "synset", f"{lemma}: {definition}."
                for example in examples:
                    yield "example", example


def write_jsonl_gz(path, texts):
    # mtime=0 and no embedded filename make the gzip stream depend only on the contents.
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
        ) as gz,
    ):
        for text in texts:
            gz.write(
                (json.dumps({"text": text}, ensure_ascii=False) + "\n").encode("utf-8")
            )


def write_license(path, wordnet_dir):
    """Copy the Princeton WordNet 3.0 licence (from Debian's copyright file, or the data-file header)."""
    if COPYRIGHT_FILE.exists():
        # Debian's machine-readable copyright: take the "License: WordNet3.0" stanza body
        # (continuation lines start with one space; a lone " ." is a blank line).
        lines, inside = [], False
        for line in COPYRIGHT_FILE.read_text(encoding="utf-8").splitlines():
            if line.startswith("License: WordNet3.0"):
                inside = True
            elif inside and line.startswith(" "):
                lines.append("" if line.strip() == "." else line[1:])
            elif inside:
                break
    else:
        # Fallback: the same text is the header of every data file ("  N text  ").
        with open(wordnet_dir / "data.noun", encoding="utf-8") as f:
            lines = [
                re.sub(r"^\s*\d+ ?", "", line).rstrip() for line in f if line.startswith("  ")
            ]
    header = "WordNet 3.0 licence (Princeton University), as shipped in Debian's wordnet-base package.\n\n"
    path.write_text(header + "\n".join(lines).rstrip() + "\n", encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--wordnet-dir",
        type=Path,
        default=Path("/usr/share/wordnet"),
        help="directory holding WordNet 3.0 data.noun/data.verb/data.adj/data.adv",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "wordnet",
        help="where to write train.jsonl.gz, validation.jsonl.gz and LICENSE",
    )
    args = parser.parse_args(argv)

    missing = [n for n in POS_FILES if not (args.wordnet_dir / n).is_file()]
    if missing:
        print(
            f"error: WordNet data files not found in {args.wordnet_dir} ({', '.join(missing)}); "
            "install Debian's wordnet-base: apt-get install wordnet-base",
            file=sys.stderr,
        )
        return 1

    seen, docs, kinds = set(), [], {"synset": 0, "example": 0}
    total = 0
    for kind, text in read_documents(args.wordnet_dir):
        total += 1
        if text in seen:
            continue
        seen.add(text)
        docs.append(text)
        kinds[kind] += 1

    random.Random(SEED).shuffle(docs)
    n_val = round(VALIDATION_FRACTION * len(docs))
    validation, train = docs[:n_val], docs[n_val:]

    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl_gz(args.output_dir / "train.jsonl.gz", train)
    write_jsonl_gz(args.output_dir / "validation.jsonl.gz", validation)
    write_license(args.output_dir / "LICENSE", args.wordnet_dir)

    print(
        f"read {total} documents, {total - len(docs)} exact duplicates dropped, {len(docs)} kept"
    )
    print(f"  synset documents:  {kinds['synset']}")
    print(f"  example documents: {kinds['example']}")
    print(f"  train:      {len(train)}  -> {args.output_dir / 'train.jsonl.gz'}")
    print(
        f"  validation: {len(validation)}  -> {args.output_dir / 'validation.jsonl.gz'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
