"""Text diversity as a local ``evaluate`` module: distinct-1/2/3, unigram entropy, repetition rate, length.

    import evaluate
    metric = evaluate.load("diffusion/text/text_diversity")   # a local folder: no download
    metric.compute(predictions=["the dog ran", "the dog sat"])
    # {'distinct_1': 0.667, 'distinct_2': 0.75, ..., 'length_words': 3.0}

The definitions (whitespace words, pooled n-grams, entropy in nats, 3-gram repetition within a
text) and the code live once, in diffusion/text/metrics.py; this file only gives them the
``evaluate`` interface so they can sit beside hub metrics.  ``evaluate`` copies this file into
its module cache before importing it, so the ``diffusion`` package must be importable (run from
the repository root, or with it on ``sys.path``, as the scripts and benchmarks do).
"""

from __future__ import annotations

import datasets
import evaluate

from diffusion.text.metrics import text_quality

_DESCRIPTION = "distinct-1/2/3, unigram entropy (nats), 3-gram repetition rate and mean length in words."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the generated texts of one setting (pooled for distinct-n and entropy).
Returns:
    distinct_1, distinct_2, distinct_3, unigram_entropy, repetition_rate, length_words (floats).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TextDiversity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions):
        return text_quality(list(predictions))
