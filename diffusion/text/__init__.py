"""Text in general, for every text objective: data, tokenizer, fresh models, sampling, metrics, the causal baseline.

    data.py        load_dataset for the bundled corpus, Hub ids, local files, code folders; tokenisation
    tokenizer.py   training the bundled byte-level BPE (data/build_tokenizer.py)
    models.py      fresh RoBERTa / GPT-2 models from small presets, and their initialisations
    sampling.py    greedy, top-k and nucleus token sampling (SamplingOptions: the sampling flags)
    tokens.py      where a text ends, which special tokens are never drawn, tokens one by one
    metrics.py     distinct-n, entropy, repetition, judge perplexity
    causal.py      the autoregressive baseline: KV-cache generation, timed token by token
    text_diversity/  metrics.py as a local `evaluate` module
"""
