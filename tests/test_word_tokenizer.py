"""The word-level tokenizer of the Gaussian base (data/word-tokenizer): whole words, <unk> for the rest."""

from __future__ import annotations

import os
import subprocess
import sys

from transformers import AutoTokenizer

from diffusion.paths import BUNDLED_WORD_TOKENIZER, REPO_DIR
from diffusion.text.tokenizer import train_word_tokenizer, wrap
from diffusion.text.tokens import unknown_words


def test_the_bundled_word_tokenizer_spells_known_words_whole_and_rare_ones_as_unk():
    tok = AutoTokenizer.from_pretrained(BUNDLED_WORD_TOKENIZER)
    assert len(tok) == 8192
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id) == (0, 1, 2, 3, 4)
    text = "A dog: a domestic animal (a member of the genus) that is kept in the house."
    ids = tok(text)["input_ids"]
    assert tok.convert_ids_to_tokens(ids)[:6] == ["<s>", "A", "Ġdog", ":", "Ġa", "Ġdomestic"] and ids[-1] == 2
    assert tok.unk_token_id not in ids and tok.decode(ids, skip_special_tokens=True) == text
    rare = tok("loganberry: large red variety of the dewberry.")["input_ids"]
    assert rare.count(tok.unk_token_id) == 2 and len(rare) == 11  # one token per word, whatever its length
    assert unknown_words(tok, "loganberry: a dewberry, a loganberry") == ["loganberry", "dewberry"]
    bpe = AutoTokenizer.from_pretrained(os.path.join(REPO_DIR, "data", "tokenizer"))
    assert unknown_words(bpe, "loganberry: a dewberry") == []  # byte-level: nothing is unknown


def test_training_keeps_the_most_frequent_words_and_decodes_them_back():
    texts = ["the cat sat."] * 3 + ["the dog sat."] * 2 + ["a bird."]  # . 6, the 5, Ġsat 5, Ġcat 3, Ġdog 2
    tok = wrap(train_word_tokenizer(texts, 5 + 4))  # the 5 special tokens, then the 4 most frequent words
    assert set(tok.get_vocab()) - {"<s>", "<pad>", "</s>", "<unk>", "<mask>"} == {".", "the", "Ġsat", "Ġcat"}
    ids = tok("the cat sat.")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "the cat sat." and tok.unk_token_id not in ids
    assert tok("the dog sat.")["input_ids"].count(tok.unk_token_id) == 1


def test_the_build_script_rebuilds_the_committed_word_tokenizer(tmp_path):
    out = tmp_path / "word-tokenizer"
    proc = subprocess.run([sys.executable, "data/build_tokenizer.py", "--word-level", "--vocab-size", "8192",
                           "--output-dir", str(out)], cwd=REPO_DIR, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "vocab 8192" in proc.stdout
    committed = open(os.path.join(BUNDLED_WORD_TOKENIZER, "tokenizer.json"), "rb").read()
    assert (out / "tokenizer.json").read_bytes() == committed
