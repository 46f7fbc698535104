"""Inpainting: y = A x = M x, M a 0/1 pixel mask (True = observed), kept on the full grid.

The measurement y has the image's shape (B, C, H, W) with zeros at the missing pixels.  M is
an orthogonal projection, so A = A_adjoint = A_pinv = P = multiplication by the mask (the
score-SDE / CCDF replacement of the known pixels); the SVD is V = I, s = M.  The classic
start fills the holes with the mean of the observed pixels; DPS's step size is its
reference config's, zeta = 0.5.

Mask builders return bool tensors shaped (H, W):

* ``box_mask(h, w, frac)``: a centred square hole covering about ``frac`` of the image;
* ``random_mask(h, w, fraction, generator)``: ``fraction`` of the pixels missing, at random;
* ``mask_from_array(arr, shape)``: a 2-D array in [0, 1], white (>= 0.5) = observed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .base import LinearOperator, Spectral


def _check_hw(h, w) -> tuple[int, int]:
    if int(h) != h or int(w) != w or h < 1 or w < 1:
        raise ValueError(f"mask size must be positive integers, got {h}x{w}")
    return int(h), int(w)


def box_mask(h: int, w: int, frac: float = 0.25) -> Tensor:
    """(H, W) bool, False inside a centred square of side round(sqrt(frac H W)) (clipped to the image)."""
    h, w = _check_hw(h, w)
    if not 0 < frac < 1:
        raise ValueError(f"box fraction must be in (0, 1), got {frac}")
    side = min(max(1, round(math.sqrt(frac * h * w))), h, w)
    top, left = (h - side) // 2, (w - side) // 2
    mask = torch.ones(h, w, dtype=torch.bool)
    mask[top: top + side, left: left + side] = False
    return mask


def random_mask(h: int, w: int, fraction: float, generator: torch.Generator | None = None) -> Tensor:
    """(H, W) bool with exactly round(fraction H W) pixels missing (False), chosen uniformly."""
    h, w = _check_hw(h, w)
    if not 0 < fraction < 1:
        raise ValueError(f"the missing fraction must be in (0, 1), got {fraction}")
    n_missing = round(fraction * h * w)
    mask = torch.ones(h * w, dtype=torch.bool)
    mask[torch.randperm(h * w, generator=generator)[:n_missing]] = False
    return mask.view(h, w)


def mask_from_array(arr, shape) -> Tensor:
    """A 2-D (or (1, H, W)) array in [0, 1] -> (H, W) bool mask, observed where arr >= 0.5.

    ``shape`` is the image shape (C, H, W) or (H, W); a size mismatch raises ValueError.
    """
    a = torch.as_tensor(np.asarray(arr) if not isinstance(arr, Tensor) else arr)
    if a.dim() == 3 and a.shape[0] == 1:
        a = a[0]
    if a.dim() != 2:
        raise ValueError(f"a mask must be a 2-D array, got shape {tuple(a.shape)}")
    h, w = tuple(shape)[-2:]
    if tuple(a.shape) != (h, w):
        raise ValueError(f"mask is {a.shape[0]}x{a.shape[1]} but the image is {h}x{w}")
    if a.dtype == torch.bool:
        return a.clone()
    a = a.to(torch.float64)
    if not torch.isfinite(a).all():
        raise ValueError("the mask array contains NaN or Inf")
    return a >= 0.5


class Inpainting(LinearOperator):
    """A x = M x on (B, C, H, W); mask (H, W) (any C) or (C, H, W), True = observed."""

    name = "inpainting"
    #: the peers' inpainting settings (``peers.run_peer``): DPS's reference configs, zeta = 0.5
    peer_defaults = {"dps": {"zeta": 0.5}}

    def __init__(self, mask, image_shape: tuple | None = None):
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool:
            raise ValueError(f"the inpainting mask must be a bool tensor, got {mask.dtype}")
        if mask.dim() not in (2, 3):
            raise ValueError(f"the inpainting mask must be (H, W) or (C, H, W), got {tuple(mask.shape)}")
        self.mask = mask
        h, w = mask.shape[-2:]
        # a 2-D mask without an explicit image_shape applies to any channel count
        self._any_channels = mask.dim() == 2 and image_shape is None
        if image_shape is None:
            image_shape = tuple(mask.shape) if mask.dim() == 3 else (1, h, w)
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or image_shape[1:] != (h, w) or (
                mask.dim() == 3 and image_shape[0] != mask.shape[0]):
            raise ValueError(f"mask {tuple(mask.shape)} does not fit images shaped {image_shape}")
        self.image_shape = image_shape

    def check(self, x: Tensor) -> None:
        if self._any_channels:
            if x.dim() != 4:
                raise ValueError(f"expected images shaped (B, C, H, W), got {tuple(x.shape)}")
            if tuple(x.shape[-2:]) != tuple(self.mask.shape):
                raise ValueError(f"image size {x.shape[-2]}x{x.shape[-1]} does not match the mask's "
                                 f"{self.mask.shape[0]}x{self.mask.shape[1]}")
        else:
            super().check(x)
        if not (x.is_floating_point() or x.is_complex()):
            raise ValueError(f"Inpainting takes floating-point images, got {x.dtype}")

    def _apply(self, x: Tensor) -> Tensor:
        self.check(x)
        return x * self.mask.to(x.device)

    def A(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W), zeros at the missing pixels."""
        return self._apply(x)

    def A_adjoint(self, y: Tensor) -> Tensor:
        return self._apply(y)

    def A_pinv(self, y: Tensor) -> Tensor:
        return self._apply(y)

    def project(self, x: Tensor) -> Tensor:
        return self._apply(x)

    def norm(self, n_iter: int = 30) -> float:
        return 1.0 if bool(self.mask.any()) else 0.0

    def svd(self) -> Spectral:
        """V = I, s = the mask (1 observed, 0 missing)."""
        return Spectral(lambda x: x, lambda c: c, self.mask.to(torch.float64))

    def classic_start(self, y: Tensor, sigma_y: float = 0.0) -> Tensor:
        """The observed pixels, each hole filled with the mean of the observed pixels of its
        image and channel."""
        m = self.A(torch.ones_like(y)).to(y.dtype)
        fill = (y * m).flatten(2).sum(2) / m.flatten(2).sum(2).clamp_min(1)
        return y * m + (1 - m) * fill[..., None, None]

    def show(self, y: Tensor) -> Tensor:
        """y itself: the observed pixels, zeros in the holes."""
        return y
