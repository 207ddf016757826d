"""Image diffusion on the same Gaussian process as the text models (diffusion/gaussian/process.py).

    data.py      the bundled 8x8 digits (scikit-learn), or any image dataset; pixels in [-1, 1]
    unet.py      a small UNet (Ho et al. 2020), a PreTrainedModel
    dit.py       a small Diffusion Transformer (Peebles & Xie 2023), a PreTrainedModel
    trainer.py   ImageTrainer: epsilon-prediction loss, label dropout, logged per noise level
    sampling.py  DDPM / DDIM with classifier-free guidance

Like diffusion/gaussian, this package imports nothing by itself: import ``diffusion.image.unet`` or
``diffusion.image.dit`` to register the model types with transformers' Auto classes.
"""
