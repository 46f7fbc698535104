"""Super-resolution: y = A x, A a factor-f downsampling of (B, C, H, W) images to (B, C, H/f, W/f).

* ``kernel="avg"``: A = f x f average pooling (the ILVR / CCDF setting).  A A^T = I / f^2, so
  A_adjoint = nearest upsampling / f^2 and A_pinv = f^2 A^T = nearest upsampling (block
  replication); P = A_pinv A replaces every f x f block by its mean (ILVR's low-pass filter).
* ``kernel="bicubic"``: A = separable antialiased bicubic downsampling written as explicit
  1-D matrices D_h (H/f, H) and D_w (W/f, W), A x = D_h x D_w^T.  Each row samples the Keys
  cubic kernel (a = -0.5) stretched by f at the output pixel centre (i + 0.5) f - 0.5 and is
  normalised to sum to 1 (as Matlab's imresize and PIL do).  Boundary: half-sample symmetric
  reflection (Matlab's 'symmetric' padding): index -1 reads pixel 0, index H reads H - 1.
  A_adjoint y = D_h^T y D_w exactly; A_pinv y = D_h^+ y (D_w^+)^T with the 1-D pseudo-inverses
  computed in float64 (the pseudo-inverse of a Kronecker product is the product of the
  pseudo-inverses), so A A_pinv A = A to rounding.

The SVD (``svd``): A x = D_h x D_w^T (average pooling: D = I kron 1^T / f), so V and s come from
the 1-D SVDs (``base.kron_svd``; s = 1/f on every block mean for average pooling).

``upsample_bicubic`` is the classic (non-inverse) bicubic upsampling, the classic initial
estimate (``classic_start``); DPS's step size is its reference config's, zeta = 0.3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LinearOperator, Spectral, kron_svd

KERNELS = ("avg", "bicubic")


def _int_factor(factor) -> int:
    if isinstance(factor, bool) or int(factor) != factor or int(factor) < 1:
        raise ValueError(f"the SR factor must be a positive integer, got {factor!r}")
    return int(factor)


def keys_cubic(t: Tensor, a: float = -0.5) -> Tensor:
    """Keys' cubic convolution kernel k(t) (support |t| < 2; a = -0.5 is the bicubic of PIL/Matlab)."""
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def bicubic_matrix(n: int, factor: int, a: float = -0.5) -> Tensor:
    """The (n // factor, n) float64 matrix of antialiased bicubic downsampling along one axis."""
    m = n // factor
    half = 2 * factor  # kernel support radius in input pixels
    centre = (torch.arange(m, dtype=torch.float64) + 0.5) * factor - 0.5
    first = torch.floor(centre - half).long() + 1
    taps = torch.arange(2 * half, dtype=torch.long)
    j = first[:, None] + taps[None, :]                       # (m, 2 half) input indices
    w = keys_cubic((j.double() - centre[:, None]) / factor, a)
    w = w / w.sum(1, keepdim=True)
    jj = torch.remainder(j, 2 * n)                           # half-sample symmetric extension
    jj = torch.where(jj >= n, 2 * n - 1 - jj, jj)
    mat = torch.zeros(m, n, dtype=torch.float64)
    mat.scatter_add_(1, jj, w)
    return mat


class SuperResolution(LinearOperator):
    """A: (B, C, H, W) -> (B, C, H/f, W/f), average pooling or antialiased bicubic (see module)."""

    #: the peers' SR settings (``peers.run_peer``): DPS's reference configs, zeta = 0.3
    peer_defaults = {"dps": {"zeta": 0.3}}

    def __init__(self, factor: int, image_shape: tuple, kernel: str = "avg"):
        self.factor = f = _int_factor(factor)
        if kernel not in KERNELS:
            raise ValueError(f"unknown SR kernel {kernel!r}; valid kernels: {', '.join(KERNELS)}")
        self.kernel = kernel
        if len(tuple(image_shape)) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
        self.image_shape = tuple(int(s) for s in image_shape)
        c, h, w = self.image_shape
        if h % f or w % f:
            raise ValueError(f"SR factor {f} does not divide the image size {h}x{w}: "
                             f"{h}x{w} images need a factor dividing both sides")
        self.measurement_shape = (c, h // f, w // f)
        if kernel == "bicubic":
            self._dh, self._dw = bicubic_matrix(h, f), bicubic_matrix(w, f)
            self._dh_pinv = torch.linalg.pinv(self._dh)        # (H, H/f)
            self._dw_pinv = torch.linalg.pinv(self._dw)        # (W, W/f)

    def check(self, x: Tensor) -> None:
        super().check(x)
        if not x.is_floating_point():
            raise ValueError(f"SuperResolution takes real floating-point images, got {x.dtype}")

    def _check_y(self, y: Tensor) -> None:
        if y.dim() != 4 or tuple(y.shape[1:]) != self.measurement_shape:
            raise ValueError(f"measurement shape {tuple(y.shape)} does not match the operator's "
                             f"(B, {', '.join(map(str, self.measurement_shape))})")
        if not y.is_floating_point():
            raise ValueError(f"SuperResolution takes real floating-point measurements, got {y.dtype}")

    def _mats(self, t: Tensor, *mats: Tensor) -> list[Tensor]:
        return [m.to(dtype=t.dtype, device=t.device) for m in mats]

    def A(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H/f, W/f)."""
        self.check(x)
        if self.kernel == "avg":
            return F.avg_pool2d(x, self.factor)
        dh, dw = self._mats(x, self._dh, self._dw)
        return torch.einsum("ij,bcjk,lk->bcil", dh, x, dw)

    def A_adjoint(self, y: Tensor) -> Tensor:
        """A^T: (B, C, H/f, W/f) -> (B, C, H, W)."""
        self._check_y(y)
        if self.kernel == "avg":
            return _replicate(y, self.factor) / self.factor**2
        dh, dw = self._mats(y, self._dh, self._dw)
        return torch.einsum("ji,bcjk,kl->bcil", dh, y, dw)

    def A_pinv(self, y: Tensor) -> Tensor:
        """A^+: (B, C, H/f, W/f) -> (B, C, H, W); block replication for avg pooling."""
        self._check_y(y)
        if self.kernel == "avg":
            return _replicate(y, self.factor)
        ph, pw = self._mats(y, self._dh_pinv, self._dw_pinv)
        return torch.einsum("ij,bcjk,lk->bcil", ph, y, pw)

    @property
    def name(self) -> str:
        return f"super-resolution x{self.factor} ({self.kernel})"

    def svd(self) -> Spectral:
        """V^T x = Vh_h x Vh_w^T from the SVDs of the 1-D factors D_h, D_w (see module)."""
        _, h, w = self.image_shape
        if self.kernel == "bicubic":
            return kron_svd(self._dh, self._dw)
        f = self.factor

        def mat(n):  # (n / f, n): the mean of each block of f
            return torch.kron(torch.eye(n // f, dtype=torch.float64),
                              torch.full((1, f), 1.0 / f, dtype=torch.float64))
        return kron_svd(mat(h), mat(w))

    def classic_start(self, y: Tensor, sigma_y: float = 0.0) -> Tensor:
        """Bicubic upsampling of the low-resolution image (``upsample_bicubic``), clipped."""
        return self.clamp(upsample_bicubic(y, self.factor))

    def show(self, y: Tensor) -> Tensor:
        """The low-resolution image at the image's size, each pixel an f x f block."""
        return F.interpolate(y, size=self.image_shape[-2:], mode="nearest")


def _replicate(y: Tensor, f: int) -> Tensor:
    return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)


def upsample_bicubic(y: Tensor, factor: int) -> Tensor:
    """Plain bicubic upsampling (B, C, h, w) -> (B, C, f h, f w): the classic initial estimate."""
    f = _int_factor(factor)
    if y.dim() != 4:
        raise ValueError(f"expected images shaped (B, C, H, W), got {tuple(y.shape)}")
    return F.interpolate(y, scale_factor=f, mode="bicubic", align_corners=False)
