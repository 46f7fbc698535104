"""Initial estimates x0_hat (the "come closer" start): classic ones and feed-forward networks.

All work on images in [0, 1], (B, C, H, W); y is the operator's measurement.
* SR: bicubic upsampling of the low-resolution image (``operators.upsample_bicubic``);
* inpainting: the observed pixels, holes filled with the mean of the observed ones;
* MRI: the minimum-norm least-squares image A^+ y (``MRI.A_pinv``), not A^T y: for complex
  images the zero-filled inverse FFT (there A^+ = A^H); for real images the inverse FFT of the
  measured k-space completed by Hermitian symmetry (entries measured at k and -k averaged),
  clipped to [0, 1]; for multi-coil data the conjugate-gradient least-squares image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .operators import MRI, Inpainting, SuperResolution, upsample_bicubic


def classic(operator, y: Tensor) -> Tensor:
    """The classic initial estimate for ``operator``'s measurement y (images in [0, 1])."""
    if isinstance(operator, SuperResolution):
        return upsample_bicubic(y, operator.factor).clamp(0, 1)
    if isinstance(operator, Inpainting):
        m = operator.A(torch.ones_like(y)).to(y.dtype)
        fill = (y * m).flatten(2).sum(2) / m.flatten(2).sum(2).clamp_min(1)
        return y * m + (1 - m) * fill[..., None, None]
    if isinstance(operator, MRI):
        x = operator.A_pinv(y)
        return x if operator.complex_image else x.clamp(0, 1)
    return operator.A_pinv(y)


def feed_forward(net, operator, y: Tensor) -> Tensor:
    """A trained restoration network applied to the classic estimate (the talk's
    "feed-forward network correction"): net maps classic(y) (B, C, H, W) -> x0_hat."""
    x = classic(operator, y)
    with torch.no_grad():
        return net(x).clamp(0, 1)
