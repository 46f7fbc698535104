"""Deblurring: y = A x = k (*) x, a circular (periodic) convolution of (B, C, H, W) images with a
2-D kernel k (kh, kw), the same for every channel; y has the image's shape.

The DFT diagonalises a circular convolution: A = F^H diag(K) F with F the unitary 2-D DFT and
K = DFT of k zero-padded to H x W, its centre (kh // 2, kw // 2) moved to pixel (0, 0).  So

* ``A_adjoint``: multiplication by conj(K) (correlation with k);
* the SVD (``svd``): V^T = F, singular values |K|, U = F^H diag(K / |K|); for real images a
  real orthonormal basis pairs k with -k (|K| is symmetric because k is real), as for MRI;
* ``A_pinv``: multiplication by 1 / K where |K| > rcond max |K|, 0 elsewhere (singular values
  below ``rcond`` count as zero, in the pseudo-inverse and in the SVD alike: rounding errors of
  float32 data, ~1e-7, divided by them would swamp the image);
* ``prox_l2(x0, y, rho) = argmin ||y - A x||^2 + rho ||x - x0||^2``: in closed form,
  X = (conj(K) Y + rho X0) / (|K|^2 + rho);
* ``wiener(y, sigma_y)``: the classic start, the Wiener filter (below).

Kernels (float64 (kh, kw), non-negative, summing to 1):

* ``gaussian_kernel(sigma, size)``: exp(-(i^2 + j^2) / (2 sigma^2)) on a centred grid, size
  2 ceil(3 sigma) + 1 by default;
* ``uniform_kernel(size)``: a size x size box;
* ``motion_kernel(size, intensity, seed)``: camera shake, a random trajectory drawn from a
  fixed seed and rasterised, after the idea DPS (Chung et al., ICLR 2023) and DiffPIR (Zhu et
  al., CVPRW 2023) use for their motion-blur benchmarks (size 61, intensity 0.5 on 256 x 256
  images there): a curved random walk (see ``motion_kernel``);
* ``kernel_from_array(arr)``: a user kernel (.npy or an image), checked and normalised.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import io
from .base import LinearOperator, Spectral

BLUR_KERNELS = ("gaussian", "uniform", "motion")

#: the Wiener start's noise floor on the [0, 1] scale: the rounding noise of 8-bit images,
#: 1 / (255 sqrt(12)), so that noiseless data do not ask for an unregularised inverse filter
WIENER_SIGMA_MIN = 1.0 / (255.0 * math.sqrt(12.0))


def _check_size(size, what: str) -> int:
    if isinstance(size, bool) or int(size) != size or int(size) < 1:
        raise ValueError(f"{what} must be a positive integer, got {size!r}")
    return int(size)


def gaussian_kernel(sigma: float, size: int | None = None) -> Tensor:
    """(size, size) float64 Gaussian of std ``sigma`` pixels, normalised to sum 1."""
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"the Gaussian kernel's sigma must be a positive number, got {sigma}")
    size = 2 * math.ceil(3 * sigma) + 1 if size is None else _check_size(size, "--kernel-size")
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def uniform_kernel(size: int = 5) -> Tensor:
    """(size, size) float64 box, each tap 1 / size^2."""
    size = _check_size(size, "--kernel-size")
    return torch.full((size, size), 1.0 / size**2, dtype=torch.float64)


def motion_kernel(size: int = 9, intensity: float = 0.5, seed: int = 0) -> Tensor:
    """(size, size) float64 motion-blur kernel from a random camera-shake trajectory.

    The trajectory is a random walk whose heading turns smoothly: step lengths are
    exponential, the turning rate is an AR(1) process (correlation 0.9) whose spread grows
    with ``intensity`` in [0, 1] (0: a straight line), and the walk's length is
    ``size (1 + intensity u)`` pixels, u ~ U(0, 1).  It is centred on its centre of mass,
    rotated by a random angle, shrunk if needed to fit inside the kernel, sampled every 0.05
    pixel and splatted bilinearly (the exposure is spread evenly along the path), then
    normalised.  Everything is drawn from ``numpy.random.default_rng(seed)``, so a seed always
    gives the same kernel.
    """
    size = _check_size(size, "--kernel-size")
    intensity = float(intensity)
    if not 0 <= intensity <= 1:
        raise ValueError(f"the motion intensity must be in [0, 1], got {intensity}")
    if size == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    rng = np.random.default_rng(int(seed))
    length = size * (1.0 + intensity * rng.uniform())
    n_steps = 64
    steps = rng.exponential(1.0, n_steps)
    steps *= length / steps.sum()
    turn = np.empty(n_steps)
    turn[0] = rng.normal(0.0, 1.0)
    for i in range(1, n_steps):
        turn[i] = 0.9 * turn[i - 1] + math.sqrt(1 - 0.9**2) * rng.normal(0.0, 1.0)
    heading = np.cumsum(turn * intensity * math.pi / 24)
    path = np.concatenate([[0j], np.cumsum(steps * np.exp(1j * heading))])
    # resample uniformly in arc length so the exposure is spread evenly
    arc = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(path)))])
    s = np.arange(0.0, arc[-1] + 1e-12, 0.05)
    pts = np.interp(s, arc, path.real) + 1j * np.interp(s, arc, path.imag)
    pts = (pts - pts.mean()) * np.exp(1j * rng.uniform(0, 2 * math.pi))
    half = (size - 1) / 2
    extent = max(np.abs(pts.real).max(), np.abs(pts.imag).max(), 1e-12)
    if extent > half:
        pts *= half / extent
    xs, ys = pts.real + half, pts.imag + half
    k = np.zeros((size, size))
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                      (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = np.clip(x0 + dx, 0, size - 1), np.clip(y0 + dy, 0, size - 1)
        np.add.at(k, (yi, xi), w)
    return torch.from_numpy(k / k.sum())


def kernel_from_array(arr) -> Tensor:
    """A user kernel: a 2-D (or (1, kh, kw)) finite, non-negative array with a positive sum
    -> (kh, kw) float64 normalised to sum 1 (its centre is pixel (kh // 2, kw // 2))."""
    a = torch.as_tensor(np.asarray(arr) if not isinstance(arr, Tensor) else arr)
    if a.dim() == 3 and a.shape[0] == 1:
        a = a[0]
    if a.dim() != 2:
        raise ValueError(f"a blur kernel must be a 2-D array, got shape {tuple(a.shape)}")
    if a.dtype == torch.bool or a.is_complex():
        raise ValueError(f"a blur kernel must be real numbers, got {a.dtype}")
    a = a.to(torch.float64)
    if not bool(torch.isfinite(a).all()):
        raise ValueError("the blur kernel contains NaN or Inf")
    if bool((a < 0).any()):
        raise ValueError(f"the blur kernel has negative taps (min {float(a.min()):.3g}); a blur "
                         "kernel must be non-negative")
    total = float(a.sum())
    if total <= 0:
        raise ValueError("the blur kernel sums to 0: nothing to normalise")
    return a / total


class Blur(LinearOperator):
    """A: (B, C, H, W) -> (B, C, H, W), circular convolution with ``kernel`` (kh, kw)."""

    #: consistency step ``reconstruct`` uses by default: the pseudo-inverse of a blur is
    #: ill-conditioned, the proximal step (``consistency.Prox``) is not
    consistency = "prox"
    name = "deblurring"
    #: the peers' deblurring settings (``peers.run_peer``): DPS's reference configs
    #: (gaussian_deblur_config.yaml, motion_deblur_config.yaml: scale 0.3); DiffPIR keeps
    #: lambda = 7, zeta = 0.3 (its defaults here): its code's deblurring config (lambda 1,
    #: zeta 0.1, tuned for sigma = 0.05 on a quadratic 100-step grid) diverges on the model's
    #: uniform grid (measured on 8 images, Gaussian sigma 2, sigma_y 0.01: 4.2 dB at 20 NFE and
    #: 17.6 at 100, against 20.8 and 22.6 with lambda 7, zeta 0.3)
    peer_defaults = {"dps": {"zeta": 0.3}}

    def __init__(self, kernel, image_shape: tuple, rcond: float = 1e-6):
        self.kernel = kernel_from_array(kernel)
        if len(tuple(image_shape)) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
        self.image_shape = tuple(int(s) for s in image_shape)
        _, h, w = self.image_shape
        kh, kw = self.kernel.shape
        if kh > h or kw > w:
            raise ValueError(f"the blur kernel is {kh}x{kw} but the image is only {h}x{w}")
        if not (math.isfinite(rcond) and 0 <= rcond < 1):
            raise ValueError(f"rcond must be in [0, 1), got {rcond}")
        self.rcond = float(rcond)
        padded = torch.zeros(h, w, dtype=torch.float64)
        padded[:kh, :kw] = self.kernel
        padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
        self.K = torch.fft.fft2(padded)                        # (H, W) complex128 eigenvalues
        mag = self.K.abs()
        self._kept = mag > self.rcond * float(mag.max())
        self._inv = torch.where(self._kept, 1 / torch.where(self._kept, self.K, 1),
                                torch.zeros_like(self.K))

    # ---------------------------------------------------------------- helpers
    def check(self, x: Tensor) -> None:
        super().check(x)
        if not x.is_floating_point():
            raise ValueError(f"Blur takes real floating-point images, got {x.dtype}")

    def _filter(self, x: Tensor, f: Tensor) -> Tensor:
        """F^H diag(f) F x for (B, C, H, W) real x; f (H, W) complex."""
        self.check(x)
        ctype = torch.complex64 if x.dtype in (torch.float32, torch.float16, torch.bfloat16) \
            else torch.complex128
        out = torch.fft.ifft2(torch.fft.fft2(x) * f.to(device=x.device, dtype=ctype)).real
        return out.to(x.dtype)

    # ---------------------------------------------------------------- the contract
    def A(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W): k (*) x, periodic boundaries."""
        return self._filter(x, self.K)

    def A_adjoint(self, y: Tensor) -> Tensor:
        return self._filter(y, self.K.conj())

    def A_pinv(self, y: Tensor) -> Tensor:
        return self._filter(y, self._inv)

    def norm(self, n_iter: int = 30) -> float:
        return float(self.K.abs().max())

    def svd(self) -> Spectral:
        """V^T = the unitary DFT, s = |K| (0 where it is below rcond max |K|)."""
        s = torch.where(self._kept, self.K.abs(), torch.zeros(()).double())

        def vt(x):
            return torch.fft.fft2(x, norm="ortho")

        def v(c):
            return torch.fft.ifft2(c, norm="ortho").real.contiguous()

        return Spectral(vt, v, s)

    def prox_l2(self, x0: Tensor, y: Tensor, rho: float) -> Tensor:
        """argmin_x ||y - A x||^2 + rho ||x - x0||^2, closed form in the Fourier domain
        (rho = 0: x0 + A^+ (y - A x0))."""
        if rho == 0:
            return x0 + self.A_pinv(y - self.A(x0))
        self.check(x0)
        self.check(y)
        ctype = torch.complex64 if x0.dtype == torch.float32 else torch.complex128
        k = self.K.to(device=x0.device, dtype=ctype)
        num = k.conj() * torch.fft.fft2(y) + rho * torch.fft.fft2(x0)
        return torch.fft.ifft2(num / (k.abs() ** 2 + rho)).real.to(x0.dtype)

    def wiener(self, y: Tensor, sigma_y: float = 0.0) -> Tensor:
        """The Wiener filter (the LMMSE estimate) for x ~ N(m, v I) per image and channel.

        x_hat = m + v A^T (v A A^T + sigma^2 I)^{-1} (y - A m) = m + F^H [conj(K) (Y - K M) /
        (|K|^2 + sigma^2 / v)], with m = mean(y) (a normalised kernel keeps the mean),
        v = max(var(y) - sigma^2, 1e-4) and sigma = max(sigma_y, ``WIENER_SIGMA_MIN``);
        images in [0, 1], sigma_y on that scale.  (B, C, H, W) -> (B, C, H, W).
        """
        self.check(y)
        sigma = max(float(sigma_y), WIENER_SIGMA_MIN)
        m = y.mean(dim=(-2, -1), keepdim=True)
        v = (y.var(dim=(-2, -1), unbiased=False, keepdim=True) - sigma**2).clamp_min(1e-4)
        r = y - self.A(m.expand_as(y))
        ctype = torch.complex64 if y.dtype == torch.float32 else torch.complex128
        k = self.K.to(device=y.device, dtype=ctype)
        gain = k.conj() / (k.abs() ** 2 + (sigma**2 / v).to(ctype))
        return m + torch.fft.ifft2(torch.fft.fft2(r) * gain).real.to(y.dtype)

    def classic_start(self, y: Tensor, sigma_y: float = 0.0) -> Tensor:
        """The classic initial estimate (images in [0, 1]): the Wiener filter, clipped."""
        return self.clamp(self.wiener(y, sigma_y))


def make_kernel(kernel="gaussian", kernel_sigma: float = 2.0, kernel_size: int | None = None,
                seed: int = 0) -> Tensor:
    """The kernel named by ``kernel`` ('gaussian' | 'uniform' | 'motion' | a path to a .npy
    or image file | an array); ``kernel_sigma``: the Gaussian's std; ``kernel_size``: the
    side (defaults: Gaussian 2 ceil(3 sigma) + 1, uniform 5, motion 9); ``seed``: the motion
    trajectory's."""
    if isinstance(kernel, str):
        if kernel == "gaussian":
            return gaussian_kernel(kernel_sigma, kernel_size)
        if kernel == "uniform":
            return uniform_kernel(5 if kernel_size is None else kernel_size)
        if kernel == "motion":
            return motion_kernel(9 if kernel_size is None else kernel_size, 0.5, seed)
        path = Path(kernel)
        if not path.is_file():
            raise ValueError(f"blur kernel must be gaussian, uniform, motion or a .npy/image "
                             f"file; got {kernel!r}")
        arr = io.read_npy(path) if path.suffix.lower() == ".npy" else \
            io.read_image(path, channels=1).numpy()
        return kernel_from_array(arr)
    return kernel_from_array(kernel)
