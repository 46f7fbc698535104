"""Denoisers: the contract, diffusers UNets, model files of every family and training."""

from .denoiser import GaussianDenoiser, Prediction, convert, evaluate
from .formats import load_model, save_model
from .unet import UNetDenoiser

__all__ = ["GaussianDenoiser", "Prediction", "convert", "evaluate", "UNetDenoiser", "load_model",
           "save_model"]
