"""The library behind the scripts: everything that two files need lives here, once.

One room per kind of diffusion, over a shared core (read the core first):

    schedules.py    THE schedule core: alpha(t) on continuous time t in [0, 1], for every objective
    checkpoint.py   the typed, versioned diffusion_config.json; loading a checkpoint by its objective;
                    the usable length of a model; which folder a script uses when none is given
    training.py     Trainer parts every objective shares: length-grouped batches, one-line logs
    runs.py         the output folder: nothing lost on --overwrite-output-dir, --resume from a complete checkpoint
    cli.py          argument parsing shared by every script (HfArgumentParser, one-line errors)
    paths.py        where the bundled corpus, tokenizer and models lie, where the quick test writes
    hub.py          the Hugging Face Hub probe: offline in one line instead of minutes of retries
    samples.py      samples written during training (texts, image grids), for every objective
    dashboard.py    train.py --dashboard: the live Tk window and the callback that feeds it
    explorer.py     the Streamlit explorer's logic (models offered, trajectories, steps as rows);
    explorer_widgets.py   its shared widgets and caches (the pages are explorer_pages/)

    masked/         masked (absorbing-state) text diffusion: mask levels, the per-level trainer,
                    logits at masked positions, the unmasking decoder and its cache, what the
                    generation scripts share, the analysis of a model layer by layer
    gaussian/       the Gaussian process for tensors of any shape (q_sample, epsilon/x0/v, DDPM and
                    DDIM steps, classifier-free guidance), checked against diffusers, and the
                    denoiser of Gaussian text, its trainer (loss per noise level) and sampler
    image/          image diffusion on the same process: digits data, UNet and DiT denoisers,
                    training, DDPM/DDIM sampling with guidance, captions, the digit judge
    text/           text in general: data loading, tokenizer, fresh text models, token sampling,
                    token strings, quality metrics, the autoregressive (causal) baseline
    viz/            pictures: frames and GIFs of a trajectory, loss curves, image grids, the
                    side-by-side race, the reports of experiments/

Import rules (checked by tests/test_layout.py): nothing here imports a top-level file of the
repository (config.py, data_collator.py or a script); the trainer is handed its collator, as
``Trainer(data_collator=...)`` is.
"""
