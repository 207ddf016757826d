"""Loading and tokenising text for training, all through ``datasets.load_dataset``.

Where ``--dataset`` / ``--data-dir`` can point:

* ``wordnet`` (default): the corpus bundled in ``data/wordnet`` (works offline);
* a local file or a folder of ``.txt / .jsonl / .json / .csv / .parquet`` files;
* ``--data-dir DIR --extensions .py,.go``: a folder of source code, one file = one document;
* anything else is taken as a Hugging Face Hub id (``roneneldan/TinyStories``).

The result is always a ``DatasetDict`` with ``train`` and ``validation`` splits whose only
columns are ``input_ids`` (a list of token ids, ``<s> ... </s>``) and ``length``.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator

from datasets import DatasetDict, load_dataset

from diffusion.hub import go_offline_if_unreachable
from diffusion.paths import BUNDLED_CORPORA, BUNDLED_DATASET

# file ending -> datasets' packaged builder
BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SPLIT_SEED = 1234


class DataError(Exception):
    """Bad data input; the message is meant for the person at the terminal."""


def _builder_for(path: str) -> str | None:
    name = path[:-3] if path.endswith(".gz") else path
    return BUILDERS.get(os.path.splitext(name)[1].lower())


def _looks_like_path(name: str) -> bool:
    """A typo in a path must not be sent to the Hub as if it were a dataset id."""
    return (
        name.startswith((".", "/", "~"))
        or name.rstrip("/").count("/") > 1  # hub ids are "name" or "org/name"
        or _builder_for(name) is not None
    )


def _files_in(folder: str, extensions: list[str]) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # skip .git and friends
        found.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(tuple(extensions)))
    return found


def check_data_source(dataset: str, data_dir: str | None = None, extensions: list[str] | None = None):
    """Check where the data comes from without loading it (prints nothing): a missing folder or file, an
    empty one, bad JSON or bytes that are not UTF-8 are one DataError line, before any model loads.

    Returns what ``load_raw_datasets`` loads: ("code", files) | ("bundled", files) | (builder, files) |
    ("hub", None).
    """
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise DataError(f"--data-dir {data_dir!r} is not a folder")
        files = _files_in(data_dir, extensions or [".py"])
        if not files:
            raise DataError(f"no files ending in {', '.join(extensions or ['.py'])} under {data_dir!r}")
        return "code", files
    if dataset in BUNDLED_CORPORA:
        files = BUNDLED_CORPORA[dataset]
        missing = [f for f in files.values() if not os.path.exists(f)]
        if missing:
            raise DataError(f"the bundled corpus is missing ({missing[0]}); rebuild it with python data/build_corpus.py")
        return "bundled", files
    if os.path.exists(os.path.expanduser(dataset)):
        path = os.path.expanduser(dataset)
        files = [path] if os.path.isfile(path) else _files_in(path, [e for ext in BUILDERS for e in (ext, ext + ".gz")])
        builders = {_builder_for(f) for f in files}
        if not files or None in builders:
            raise DataError(f"{dataset!r}: expected {', '.join(BUILDERS)} files (optionally .gz)")
        if len(builders) > 1:
            raise DataError(f"{dataset!r} mixes file types ({', '.join(sorted(builders))}); use one kind")
        builder = builders.pop()
        for f in files:
            check_local_file(f, builder)
        return builder, files
    if _looks_like_path(dataset):
        raise DataError(f"dataset path {dataset!r} does not exist")
    return "hub", None


def load_raw_datasets(dataset: str, dataset_config: str | None = None, data_dir: str | None = None,
                      extensions: list[str] | None = None, validation_split_percentage: float = 2.0,
                      cache_dir: str | None = None, source: tuple | None = None) -> DatasetDict:
    """Raw text as a DatasetDict with ``train`` and ``validation`` splits.

    ``source``: what ``check_data_source`` returned for these arguments, when the caller checked
    them already (train.py does, before the model loads): local files are then not read twice.
    """
    kind, files = source if source is not None else check_data_source(dataset, data_dir, extensions)
    if kind == "code":
        # The "text" builder with sample_by="document" makes each whole file one example.
        raw = load_dataset("text", data_files={"train": files}, sample_by="document", cache_dir=cache_dir)
    elif kind == "bundled":
        raw = load_dataset("json", data_files=files, cache_dir=cache_dir)
    elif kind == "hub":
        raw = load_hub_dataset(dataset, dataset_config, cache_dir)
    else:
        try:
            raw = load_dataset(kind, data_files=_split_files(files), cache_dir=cache_dir)
        except Exception as err:  # pyarrow / datasets errors on content the checks did not foresee
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise DataError(f"cannot read {dataset!r} as {kind} files: {first_line}") from None

    if "validation" not in raw:
        if "test" in raw:
            raw["validation"] = raw.pop("test")
        else:
            split = raw["train"].train_test_split(test_size=validation_split_percentage / 100, seed=SPLIT_SEED)
            raw = DatasetDict(train=split["train"], validation=split["test"])
    return DatasetDict(train=raw["train"], validation=raw["validation"])


def _read_text(path: str) -> str:
    """The whole file as UTF-8 text (gunzipped for .gz), or one DataError line that says why not."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; a cut gzip stream an EOFError
        raise DataError(f"{path}: cannot be read ({err}); the file is damaged or truncated") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                        f"convert it to UTF-8") from None


def check_local_file(path: str, builder: str) -> None:
    """Empty files, bytes that are not UTF-8 and JSON that does not parse, as one line naming the file (and row).

    datasets would otherwise answer with StopIteration or a pyarrow traceback.
    """
    if builder == "parquet":  # binary: datasets' own reader checks it
        if os.path.getsize(path) == 0:
            raise DataError(f"{path} is empty: no documents to train on")
        return
    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path} is empty: no documents to train on")
    if builder != "json":
        return
    try:
        json.loads(text)  # a .json file holding one JSON document (a list of rows, or columns)
        return
    except json.JSONDecodeError:
        pass  # JSON lines: one object per line
    for row, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, row {row}: not valid JSON ({err.msg} at column {err.colno}); "
                            f"each line must be one JSON object") from None
        if not isinstance(value, dict):
            raise DataError(f"{path}, row {row}: a JSON {type(value).__name__}, not an object with a text column")


def _split_files(files: list[str]) -> dict[str, list[str]]:
    """Files whose name contains 'valid' / 'test' become the validation split, the rest train."""
    held_out = [f for f in files if any(w in os.path.basename(f).lower() for w in ("valid", "test"))]
    train = [f for f in files if f not in held_out]
    if train and held_out:
        return {"train": train, "validation": held_out}
    return {"train": files}


def load_hub_dataset(name: str, config: str | None, cache_dir: str | None) -> DatasetDict:
    """``load_dataset(name, config)``, with a one-line message when the Hub cannot be reached."""
    go_offline_if_unreachable()
    try:
        raw = load_dataset(name, config, cache_dir=cache_dir)
    except Exception as err:  # datasets raises many types here: ConnectionError, DatasetNotFoundError, ...
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"could not load dataset {name!r} from the Hugging Face Hub ({first_line[:200]}). "
            f"Offline, use the bundled corpus (--dataset wordnet) or local files (--dataset path/to/file.jsonl)"
        ) from None
    if not isinstance(raw, DatasetDict) or "train" not in raw:
        raise DataError(f"dataset {name!r} has no 'train' split")
    return raw


def check_text_column(raw: DatasetDict, text_column: str) -> None:
    columns = next(iter(raw.values())).column_names  # every split has the same columns
    if text_column not in columns:
        raise DataError(f"no column {text_column!r} in the dataset; its columns are: {', '.join(columns)} (use --text-column)")


def tokenize_datasets(raw: DatasetDict, tokenizer, text_column: str = "text", max_length: int = 128,
                      packing: bool = False, num_proc: int | None = None) -> DatasetDict:
    """-> DatasetDict with columns ``input_ids`` (list[int]) and ``length`` (int).

    Without packing each document becomes one example of at most ``max_length`` tokens
    (``<s> ... </s>``, truncated).  With packing, documents (each with its own ``<s> </s>``)
    are concatenated and cut into blocks of exactly ``max_length`` tokens, as in
    transformers' run_mlm.py ``group_texts``; the tail shorter than a block is dropped.
    """
    check_text_column(raw, text_column)
    columns = next(iter(raw.values())).column_names

    def tokenize(batch):
        texts = [t if isinstance(t, str) else "" for t in batch[text_column]]
        if packing:
            ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
        else:
            ids = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        # Drop empty documents (just <s></s>): nothing in them to learn.
        ids = [x for x in ids if len(x) > 2]
        return {"input_ids": ids, "length": [len(x) for x in ids]}

    def group(batch):
        flat = [tok for ids in batch["input_ids"] for tok in ids]
        n_blocks = len(flat) // max_length
        blocks = [flat[i * max_length:(i + 1) * max_length] for i in range(n_blocks)]
        return {"input_ids": blocks, "length": [max_length] * n_blocks}

    tokenized = raw.map(tokenize, batched=True, remove_columns=columns, num_proc=num_proc,
                        desc="Tokenising")
    if packing:
        tokenized = tokenized.map(group, batched=True, batch_size=1000, num_proc=num_proc,
                                  desc=f"Packing into blocks of {max_length}")
    for split in tokenized:
        if len(tokenized[split]) == 0:
            raise DataError(f"the {split} split has no usable examples after tokenisation "
                            f"(empty texts, or --packing with fewer than {max_length} tokens)")
    return tokenized


def bundled_texts(split: str, corpus: str = BUNDLED_DATASET) -> Iterator[str]:
    """The raw texts of a split of the bundled corpus ("train" or "validation"), in file order."""
    path = BUNDLED_CORPORA[corpus][split]
    if not os.path.exists(path):
        raise DataError(f"the bundled corpus is missing ({path}); rebuild it with python data/build_corpus.py")
    with gzip.open(path, "rt") as f:
        for line in f:
            yield json.loads(line)["text"]


def held_out_documents(tokenizer, n: int, min_tokens: int, corpus: str = BUNDLED_DATASET) -> list[list[int]]:
    """Token ids (no special tokens) of the first ``n`` held-out documents with at least ``min_tokens`` tokens.

    The prompts of the benchmarks: their first tokens start a text, their rest is the reference.
    Read straight from the bundled validation file (in file order), so every benchmark sees the same
    documents without tokenising the whole split.
    """
    docs = []
    for text in bundled_texts("validation", corpus):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= min_tokens:
            docs.append(ids)
        if len(docs) == n:
            break
    return docs
