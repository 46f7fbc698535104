"""Denoisers: the contract, diffusers UNets, checkpoint loading and training."""

from .denoiser import GaussianDenoiser, Prediction, convert, evaluate
from .unet import UNetDenoiser, load_model, save_model

__all__ = ["GaussianDenoiser", "Prediction", "convert", "evaluate", "UNetDenoiser", "load_model",
           "save_model"]
