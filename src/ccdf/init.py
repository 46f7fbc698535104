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

Besides the classic start and a restoration network there is, for MRI, the compressed-sensing
start (``CompressedSensing``: sigpy's total-variation or L1-wavelet reconstruction), the
closest classical estimate CCDF can come from (``--init tv`` / ``--init l1wavelet``).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class CompressedSensing:
    """The compressed-sensing start for MRI operators: ``classical.cs_reconstruct`` with R the
    total variation ("tv") or the L1-wavelet norm ("l1wavelet"), lam relative to the image scale
    (None: the calibration's or ``classical.DEFAULT_LAMBDA``), ``iters`` sigpy iterations."""

    kind: str = "tv"
    lam: float | None = None
    iters: int = 100
    meta = None  # no held-out statistics (a restoration network's ``meta``)

    @property
    def key(self) -> str:
        """Its auto-t0 calibration key (``autot0.start_key``)."""
        return f"cs:{self.kind}"

    def fits(self, operator) -> bool | str:
        """True for an MRI operator, else why not (one line)."""
        from .operators.mri import MRI

        return True if isinstance(operator, MRI) else \
            "the compressed-sensing start (--init tv | l1wavelet) is for MRI"

    def __call__(self, operator, y: Tensor, sigma_y: float = 0.0) -> Tensor:
        """x0_hat (B, 1, H, W) in the operator's units for its measurement y."""
        from . import classical  # sigpy: an optional dependency (ccdf[mri])

        lam = classical.DEFAULT_LAMBDA[self.kind] if self.lam is None else self.lam
        return operator.clamp(classical.cs_reconstruct(operator, y, self.kind, lam, self.iters))


def estimate(start, operator, y: Tensor, sigma_y: float = 0.0) -> Tensor:
    """The initial estimate of ``start``: None (the classic one), a ``CompressedSensing`` start
    or a restoration network (``feed_forward``)."""
    if start is None:
        return classic(operator, y, sigma_y)
    if isinstance(start, CompressedSensing):
        return start(operator, y, sigma_y)
    return feed_forward(start, operator, y, sigma_y)
