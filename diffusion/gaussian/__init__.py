"""Gaussian diffusion, for tensors of any shape: token embeddings (B, L, d) and images (B, C, H, W).

    process.py     THE Gaussian process: q_sample, the conversions between epsilon, x0 and v, the
                   DDPM posterior step, the DDIM step with eta, the classifier-free-guidance mix
    model.py       the denoiser of Gaussian text: a PreTrainedModel over learned token embeddings,
                   registered with AutoConfig / AutoModel when it is imported
    trainer.py     GaussianTrainer: the loss of Gaussian text, logged and evaluated per noise level
    sampling.py    the sampler (DDPM / DDIM, self-conditioning, clamping, fixed text), lengths, the trace
    generation.py  a checkpoint with its process (and its EMA), the trace as JSON

Its alpha_bar comes from diffusion/schedules.py and nowhere else.  Nothing is imported here, so
that a script that only checks its flags does not pay for transformers' model classes; import
``diffusion.gaussian.model`` before ``AutoModel.from_pretrained`` of a Gaussian folder.
"""
