"""Where the repository keeps what ships with it, and where the quick test writes.

Every script and the library take these paths from here, so moving a bundled file means
changing one line.
"""

from __future__ import annotations

import os

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The offline corpus (WordNet 3.0 definitions and examples, see data/README.md), by name.
BUNDLED_DATASET = "wordnet"
BUNDLED_CORPORA = {
    "wordnet": {
        "train": os.path.join(REPO_DIR, "data", "wordnet", "train.jsonl.gz"),
        "validation": os.path.join(REPO_DIR, "data", "wordnet", "validation.jsonl.gz"),
    }
}
# The byte-level BPE trained on it (data/build_tokenizer.py).
BUNDLED_TOKENIZER = os.path.join(REPO_DIR, "data", "tokenizer")
# Its word-level sibling (same cuts between words, no merges): the Gaussian base's, and what a fresh
# Gaussian denoiser on the bundled corpus uses (docs/GAUSSIAN_TEXT.md, "Words, not pieces").
BUNDLED_WORD_TOKENIZER = os.path.join(REPO_DIR, "data", "word-tokenizer")
# The small pretrained masked diffusion model shipped with the repository (models/masked-base/README.md).
BUNDLED_MASKED_MODEL = os.path.join(REPO_DIR, "models", "masked-base")
# A standard masked LM of the same size, pretrained at 15% masking only (models/mlm-base/README.md):
# what --quick-test turns into a diffusion model, as the original recipe does with roberta-base.
BUNDLED_MLM_MODEL = os.path.join(REPO_DIR, "models", "mlm-base")
# Its autoregressive baseline: GPT-2 architecture, same tokenizer, data and budget (models/causal-base/README.md).
BUNDLED_CAUSAL_MODEL = os.path.join(REPO_DIR, "models", "causal-base")
# The Gaussian-embedding diffusion model trained on the same corpus (models/gaussian-base/README.md).
BUNDLED_GAUSSIAN_MODEL = os.path.join(REPO_DIR, "models", "gaussian-base")
# What `python train.py --quick-test --objective gaussian` writes.
TRAINED_GAUSSIAN_MODEL = "results-gaussian/final-model"
# What `python train.py --quick-test --objective image` writes (a UNet on the 8x8 digits).
TRAINED_IMAGE_MODEL = "results-image/final-model"
# What `python train.py --quick-test` writes, relative to where it is run (the scripts' first default).
TRAINED_MODEL = "results/final-model"
