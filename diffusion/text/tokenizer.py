"""Training the toolkit's tokenizers (data/build_tokenizer.py builds the bundled ones with them).

``train_tokenizer``: the byte-level BPE every model but the Gaussian base uses (data/tokenizer).
``train_word_tokenizer``: a word-level vocabulary over the same pre-tokenization (data/word-tokenizer),
Diffusion-LM's choice for its Gaussian models: every token is a whole word, so a denoiser that has not
learned to join sub-word pieces still writes words (docs/GAUSSIAN_TEXT.md, "Words, not pieces").

RoBERTa-style: byte-level BPE without an added prefix space, special tokens <s>=0 <pad>=1 </s>=2
<unk>=3 <mask>=4, encodings wrapped as "<s> ... </s>", and a <mask> token that swallows the
space before it (lstrip=True) so "The <mask> sat." masks the word " cat" the way RoBERTa does.
data/measure_vocab.py trains the same tokenizer at several sizes to choose one.
"""

from __future__ import annotations

import gzip
import json

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

# ids 0..4 in RoBERTa's order. <mask> has lstrip=True in the backend tokenizer itself (the
# wrapper's mask_token setting alone does not change an already-added token): "The <mask>"
# then encodes as ["The", "<mask>"], not ["The", "Ġ", "<mask>"].
SPECIAL_TOKENS = [
    AddedToken(t, lstrip=(t == "<mask>"), rstrip=False, normalized=False, special=True)
    for t in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
]
MODEL_MAX_LENGTH = 512


def read_texts(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def train_tokenizer(texts, vocab_size):
    """Train a raw `tokenizers.Tokenizer` (byte-level BPE) on `texts`."""
    tok = Tokenizer(models.BPE())  # no unk needed: every byte is in the base alphabet
    tok.pre_tokenizer = word_cut()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,  # added first, so they get ids 0..4 in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is ever unknown
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")),
        ("<s>", tok.token_to_id("<s>")),  # (sep, cls)
        trim_offsets=True,
        add_prefix_space=False,
    )
    return tok


def word_cut():
    """How both vocabularies cut a text into words (GPT-2's byte-level rule: "Ġdog", ":", "'s"): the BPE
    merges pieces within each word, the word-level vocabulary keeps each word whole."""
    return pre_tokenizers.ByteLevel(add_prefix_space=False)


def train_word_tokenizer(texts, vocab_size):
    """Train a raw word-level `tokenizers.Tokenizer`: the ``vocab_size`` most frequent words of ``texts``.

    Words are cut as the byte-level BPE cuts them before merging (GPT-2's rule: a word keeps the
    space before it, "Ġdog"; punctuation, digits and "'s" are pieces of their own), so decoding is
    the same ByteLevel decoder and ``decode(encode(x)) == x`` for every text made of known words.
    A word outside the vocabulary becomes ``<unk>`` (3); on the bundled corpus 8,192 entries cover
    85% of the running words (data/README.md).
    """
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = word_cut()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                        show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
                                                      trim_offsets=True, add_prefix_space=False)
    return tok


def wrap(tok):
    """Wrap the raw tokenizer so transformers' AutoTokenizer can save/load it."""
    from transformers import (
        PreTrainedTokenizerFast,  # imported lazily: measuring needs only `tokenizers`
    )

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        mask_token=AddedToken("<mask>", lstrip=True, rstrip=False),  # like roberta-base
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,  # keep decode(encode(x)) == x
    )
