"""Initial estimates x0_hat (the "come closer" start): classic ones and feed-forward networks.

All work on images (B, C, H, W) in the operator's ``value_range`` ([0, 1]; MRI: >= 0 and not
clipped above); y is the operator's measurement.  The classic start is the operator's own
(``LinearOperator.classic_start``):

* SR: bicubic upsampling of the low-resolution image (``operators.upsample_bicubic``);
* inpainting: the observed pixels, holes filled with the mean of the observed ones;
* MRI (and the default): the minimum-norm least-squares image A^+ y (``MRI.A_pinv``), not
  A^T y: for complex images the zero-filled inverse FFT (there A^+ = A^H); for real images the
  inverse FFT of the measured k-space completed by Hermitian symmetry (entries measured at k
  and -k averaged), clamped to the operator's ``value_range`` (>= 0, not clipped above); for
  multi-coil data the conjugate-gradient least-squares image;
* deblurring: the Wiener filter at the measurement's noise level (``Blur.wiener``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def classic(operator, y: Tensor, sigma_y: float = 0.0) -> Tensor:
    """The classic initial estimate for ``operator``'s measurement y (images in [0, 1]; sigma_y
    on that scale, used by starts that depend on the noise): ``operator.classic_start``."""
    return operator.classic_start(y, sigma_y)


def feed_forward(net, operator, y: Tensor, sigma_y: float = 0.0) -> Tensor:
    """A trained restoration network applied to the classic estimate (the feed-forward
    correction of Chung, Sim & Ye, Sec. 3): net maps classic(y) (B, C, H, W) -> x0_hat.
    A network with ``restore(operator, y)`` (the unrolled MRI start) is given the operator."""
    if hasattr(net, "restore"):
        return net.restore(operator, y)
    x = classic(operator, y, sigma_y)
    with torch.no_grad():
        return operator.clamp(net(x))
