"""Frechet distances between sets of images, as Table 2 of Chung, Sim & Ye (CVPR 2022) reports FID.

Two feature extractors:
* ``FashionClassifier`` (``models.classifier``; always available, committed as
  ``assets/models/fashion-classifier``, read by ``load_classifier``): a small CNN trained here
  on Fashion-MNIST's labels; its 128-d penultimate features give the **classifier-feature
  Frechet distance** ("FD-fashion"). It is NOT Inception FID and its numbers are not
  comparable with published FIDs; it ranks methods on this data.
* ``InceptionFeatures(PATH)`` (Python only; no command-line flag selects it): a local
  TorchScript Inception-v3 feature network, e.g. the ``inception-2015-12-05.pt`` of
  StyleGAN2-ADA / clean-fid (the standard FID network; nothing is downloaded).  It is called
  as ``net(x_uint8_3x299x299, return_features=True)`` -> (B, 2048).

FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64, the trace of the
matrix square root from the eigenvalues of S_a^(1/2) S_b S_a^(1/2).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .assets import FASHION_CLASSIFIER, asset_path
from .models import formats
from .models.classifier import FashionClassifier
from .models.train import fit

DEFAULT = asset_path(FASHION_CLASSIFIER)


def train_classifier(cfg, data: Tensor, labels: Tensor, out, test=None, *, resume: bool = True,
                     progress: bool = True) -> Path:
    """Cross-entropy training with the shared loop; ``test`` = (x, labels) for the accuracy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = FashionClassifier()

    def loss_fn(x, g, lab):
        return F.cross_entropy(net(x), lab)

    def export(ema):
        meta = {"trained_on": cfg.data, "train_config": asdict(cfg)}
        if test is not None:
            ema_net = FashionClassifier()
            ema_net.load_state_dict(ema)
            meta["test_accuracy"] = accuracy(ema_net.eval(), *test)
        formats.save_classifier(net, out, ema, **meta)

    fit(net, loss_fn, data, cfg, out, export, resume=resume, progress=progress, labels=labels)
    return Path(out)


@torch.no_grad()
def accuracy(net: FashionClassifier, x: Tensor, labels: Tensor, batch: int = 500) -> float:
    pred = torch.cat([net(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred == labels).float().mean())


def load_classifier(folder=DEFAULT) -> FashionClassifier:
    """The feature classifier of a folder (default: the committed one)."""
    return formats.load_classifier(folder)


class InceptionFeatures(nn.Module):
    """A local TorchScript Inception (StyleGAN2-ADA / clean-fid format): images in [0, 1]
    (B, C, H, W) -> (B, 2048).  Gray images are repeated to 3 channels, resized to 299."""

    def __init__(self, path):
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Inception weights not found: {path}")
        try:
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as e:  # not a TorchScript archive: refuse, never unpickle
            raise ValueError(f"{path} is not a TorchScript Inception feature network "
                             f"(e.g. inception-2015-12-05.pt): {type(e).__name__}") from None

    def features(self, x: Tensor) -> Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        return self.net(x, return_features=True)


@torch.no_grad()
def features(extractor, x: Tensor, batch: int = 250) -> Tensor:
    """(N, D) float64 features of images x (N, C, H, W) in [0, 1]."""
    return torch.cat([extractor.features(x[i:i + batch]).double() for i in range(0, len(x), batch)])


def frechet_distance(fa: Tensor, fb: Tensor) -> float:
    """Frechet distance between Gaussians fitted to features fa (N, D) and fb (M, D)."""
    if len(fa) < 2 or len(fb) < 2:
        raise ValueError("the Frechet distance needs at least 2 images per set")
    fa, fb = fa.double(), fb.double()
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    sa, sb = torch.cov(fa.T), torch.cov(fb.T)
    ev, vec = torch.linalg.eigh(sa)
    root_a = vec @ torch.diag(ev.clamp_min(0).sqrt()) @ vec.T
    cross = torch.linalg.eigvalsh(root_a @ sb @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + sa.trace() + sb.trace() - 2 * cross)


def frechet(extractor, x: Tensor, ref: Tensor) -> float:
    """FD between the features of images x and reference images ref (both in [0, 1])."""
    return frechet_distance(features(extractor, x), features(extractor, ref))
