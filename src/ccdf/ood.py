"""Out-of-distribution check: does a reconstruction look like the data its prior was trained on?

Score (per image, one network evaluation for a whole batch): the denoising error

    d(x) = mean over pixels of (D(a x + b z, t_ref) - x)^2,   x in the model's data space,

at t_ref = 0.2 with one fixed noise image z: how much the prior's denoiser D (the x0
prediction) changes x.  On images like its training data D nearly gives x back; foreign
images (photos for a garment prior) are pulled toward the prior's own textures and d grows.
The reference is d on images of the prior's training data, with the same z: the committed
sample of its built-in data set (``datasets.sample``: 48 Fashion-MNIST test images, 16
held-out MNI152 slices) when the model's ``trained_on`` names one and the sizes match, else
up to 32 images of its training folder or file when that still exists; without either there
is no check.  ``score = d / q95`` (the reference's 95th percentile); an image is flagged when
score > FACTOR = 1.5.

Measured with the embedded priors (``python scripts/ood_check.py image|mri``: half of the
committed sample as the reference, the other half scored): reconstructions of in-distribution
images score at most 1.32 (SR x4 and box inpainting, 24 Fashion-MNIST images, t0 in
{0.05, 0.2, 1}, classic and feed-forward starts) and 1.06 (MRI x4, 8 MNI152 slices, with
the retired 64x64 magnitude MRI prior); of
32x32 crops of a photograph 38-100% score above 1.5 (medians 1.3-2.6), of 64x64 crops with
the MRI prior 62-100% (medians 1.7-2.7); smooth crops (sky, a plain background) stay below.
A flag is a warning, not a proof.  Priors of any size and complex priors (the MRI path of
``models.unet``) get no check: the reference is measured at one size on real images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

T_REF = 0.2
FACTOR = 1.5
BUILTIN = {"fashion-mnist": "fashion-mnist", "mni152": "mni152", "brains": "mni152"}


def denoising_error(model, x: Tensor, t: float = T_REF, z: Tensor | None = None) -> Tensor:
    """d(x) (B,) for real images x (B, C, H, W) in [0, 1]: per-pixel MSE of the model's x0
    prediction at x_t = a(t) x + b(t) z, in model space; z (1, C, H, W) fixed noise."""
    from .models.denoiser import evaluate, to_model

    xm = to_model(model, x.float())
    if z is None:
        z = fixed_noise(tuple(x.shape[1:]))
    z = z.to(xm.device)
    tt = torch.full((len(x),), float(t), dtype=torch.float64)
    a, b = (float(f(torch.tensor([float(t)], dtype=torch.float64)))
            for f in (model.schedule.a, model.schedule.b))
    with torch.no_grad():
        x0 = evaluate(model, a * xm + b * z, tt.to(xm.device)).x0
    return (x0.float() - xm).pow(2).flatten(1).mean(1).cpu()


def fixed_noise(shape: tuple) -> Tensor:
    """The one noise image (1, *shape) of every score (seeded; the run's generators untouched)."""
    return torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))


def reference_images(model) -> tuple[Tensor | None, str]:
    """(images (N, C, H, W) in [0, 1] of the prior's training data or None, where from)."""
    from . import datasets

    size, ch = model.image_size, model.channels
    spec = str((getattr(model, "meta", None) or {}).get("trained_on") or "")
    name = BUILTIN.get(spec.partition(":")[0])
    if name is not None:
        x = datasets.sample(name)
        if tuple(x.shape[1:]) == (ch, size, size):
            return x, f"{name} sample ({len(x)} images)"
    if spec and name is None and Path(spec).exists():
        try:
            x = datasets.load(spec, size=size, channels=ch)[:32]
            return x, f"{len(x)} images of {spec}"
        except (ValueError, OSError, RuntimeError):
            pass
    return None, f"no reference images for a prior trained on {spec or 'unknown data'}"


class OODCheck:
    """Scores reconstructions of one run against the prior's reference (computed once)."""

    def __init__(self, model, t: float = T_REF, factor: float = FACTOR):
        self.model, self.t, self.factor = model, float(t), float(factor)
        self.trained_on = (getattr(model, "meta", None) or {}).get("trained_on")
        self.q95, self.z = None, None
        if getattr(model, "image_size", None) is None or getattr(model, "complex", False):
            self.source = "no check for a prior of any size or of complex images"
            return
        self.z = fixed_noise((model.channels, model.image_size, model.image_size))
        x, self.source = reference_images(model)
        if x is not None:
            d = torch.cat([denoising_error(model, c, self.t, self.z) for c in x.split(16)])
            self.q95 = float(d.quantile(0.95))

    @property
    def active(self) -> bool:
        return self.q95 is not None and self.q95 > 0

    def scores(self, x: Tensor) -> list[float] | None:
        """score = d(x) / q95 for reconstructions x (B, C, H, W) in [0, 1] (None: no check)."""
        if not self.active:
            return None
        x = x.abs() if x.is_complex() else x
        return [float(v) / self.q95 for v in denoising_error(self.model, x, self.t, self.z)]

    def flagged(self, score: float | None) -> bool:
        return score is not None and score > self.factor
