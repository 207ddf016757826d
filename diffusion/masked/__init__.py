"""Masked (absorbing-state) text diffusion: a token is either itself or <mask>.

    levels.py      the mask levels training draws from and evaluation reports (loss_mask_0.1 ...)
    logits.py      the vocabulary projection at masked positions only (training, evaluation, decoding)
    trainer.py     DiffusionTrainer: the loss at masked positions, logged per level; seeded evaluation
    unmasking.py   the decoder: N steps from all-masked to text; DecodeOptions, the decoding flags
    cache.py       cached block decoding: keys and values kept across the steps of a block (Fast-dLLM)
    generation.py  what generate.py, visualize_generation.py and compare_models.py share
    analysis.py    looking inside a model: the logit lens per layer, attention statistics per head,
                   top-k guesses, the pseudo-log-likelihood (experiments/ and benchmarks/ use it)

The collator that masks training examples is the top-level data_collator.py (the file a learner
reads second); the trainer is handed it.
"""
