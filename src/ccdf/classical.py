"""Classical compressed-sensing MRI, the baselines a diffusion prior has to beat.

    x_hat = argmin_x 1/2 ||M F S x - y||^2 + lam R(x)

with R the total variation ||G x||_1 (finite differences; Block, Uecker & Frahm, MRM 2007)
or the l1 norm of the Daubechies-4 wavelet coefficients (Lustig, Donoho & Pauly, "Sparse
MRI", MRM 2007), solved by sigpy (``sigpy.mri.app.TotalVariationRecon``: primal-dual hybrid
gradient; ``L1WaveletRecon``: accelerated proximal gradient), ``iters`` iterations, S the
coil maps (ones for a single coil).  sigpy is an optional dependency: ``pip install ccdf[mri]``.

k-space is in ccdf's layout (``operators.mri``: unshifted, orthonormal FFT); it is converted
to sigpy's centred one (``to_centred``), the image is the same.  The regularisation weight
is chosen on validation slices, never on the evaluation ones (``choose_lambda``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from . import metrics
from .assets import CS_KINDS

KINDS = CS_KINDS
NAMES = {"tv": "total variation", "l1wavelet": "L1 wavelet"}
#: the coarse lambda grid of ``choose_lambda``: decades from 1e-4 to 1 (images of magnitude
#: about 1, orthonormal FFT: the data term is in image units), refined by half decades
DECADES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: the lambda of the compressed-sensing start when neither the user nor a calibration gives one
#: (relative to the image scale, see ``cs_reconstruct``): near the choices on this repository's
#: validation slices (x4 single-coil TV 1e-2, 8-coil TV 3e-3 and L1 wavelet 3e-5)
DEFAULT_LAMBDA = {"tv": 3e-3, "l1wavelet": 3e-5}
#: how far ``choose_lambda`` extends the grid by half decades when the best is at an end
LAMBDA_RANGE = (1e-8, 10.0)


def _sigpy():
    try:
        import sigpy
        import sigpy.mri.app  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised only without sigpy
        raise ImportError("compressed sensing needs sigpy: pip install 'ccdf[mri]'") from e
    return sigpy


def to_centred(k: np.ndarray) -> np.ndarray:
    """ccdf k-space (unshifted, DC at [0, 0], the FFT of x) -> the centred layout of sigpy and
    fastMRI (sigpy.ifft(k_c, center=True) = x): the inverse of ``solve.kspace_to_ours``,
    k_c = fftshift(k exp(2 pi i (ky (H // 2) / H + kx (W // 2) / W)))."""
    h, w = k.shape[-2:]
    ky = np.arange(h)[:, None] * (h // 2) / h
    kx = np.arange(w)[None, :] * (w // 2) / w
    return np.fft.fftshift(k * np.exp(2j * np.pi * (ky + kx)), axes=(-2, -1))


def cs_recon(kspace, mask, maps=None, kind: str = "tv", lam: float = 1e-3,
             iters: int = 100) -> Tensor:
    """One slice by compressed sensing.

    kspace: complex (H, W) or (Ncoil, H, W) in ccdf's layout; mask: bool (H, W), same layout;
    maps: complex coil sensitivities (Ncoil, H, W), or None for one coil.  Returns the complex
    image (H, W), complex128.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown compressed-sensing kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lambda must be a finite number >= 0, got {lam!r}")
    if isinstance(iters, bool) or int(iters) != iters or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    sp = _sigpy()
    k = np.asarray(torch.as_tensor(kspace).cpu().numpy(), dtype=np.complex128)
    k = k[None] if k.ndim == 2 else k
    m = np.asarray(torch.as_tensor(mask).cpu().numpy(), dtype=bool)
    if k.ndim != 3 or m.shape != k.shape[-2:]:
        raise ValueError(f"k-space {k.shape} and mask {m.shape} do not fit: expected "
                         "(H, W) or (Ncoil, H, W) k-space and an (H, W) mask")
    if maps is None:
        if k.shape[0] != 1:
            raise ValueError(f"{k.shape[0]} coils need their sensitivity maps")
        s = np.ones(k.shape, np.complex128)
    else:
        s = np.asarray(torch.as_tensor(maps).cpu().numpy(), dtype=np.complex128)
        if s.shape != k.shape:
            raise ValueError(f"coil maps {s.shape} do not fit k-space {k.shape}")
    weights = np.fft.fftshift(m).astype(np.float64)  # the mask in the centred layout
    y = to_centred(k * m)
    opts = step_sizes(s, kind)
    app = sp.mri.app.TotalVariationRecon if kind == "tv" else sp.mri.app.L1WaveletRecon
    x = app(y, s, float(lam), weights=weights, max_iter=int(iters), show_pbar=False,
            **opts).run()
    return torch.from_numpy(np.asarray(x, dtype=np.complex128))


def step_sizes(maps: np.ndarray, kind: str) -> dict:
    """Solver step sizes from bounds, so that no power iteration (seeded from numpy's global
    random state in sigpy) is needed and results are reproducible: ||M F S||^2 <= L =
    max over pixels of sum_c |S_c|^2, and ||G||^2 <= 8 for sigpy's circular 2-D finite
    differences.  TV (PDHG on K = [M F S; G], sigma tau ||K||^2 <= 1): tau = 1 / L, the step
    of the data term, and sigma = L / (L + 8) (with sigpy's default, sigma = 1 and tau =
    1 / ||K||^2, 100 iterations end 1.9 dB short of convergence on a 128x128 x4 validation
    slice; with this balance 0.03 dB); L1 wavelet (proximal gradient, W unitary): alpha = 1 / L."""
    lip = float((np.abs(maps) ** 2).sum(0).max())
    if not lip > 0:
        raise ValueError("the coil maps are all zero")
    return {"tau": 1.0 / lip, "sigma": lip / (lip + 8.0)} if kind == "tv" else {"alpha": 1.0 / lip}


def image_scales(op, y: Tensor) -> Tensor:
    """(B,) the scale of each image measured as y (B, ...): the 99.5th percentile of |A^H y|
    (1 where that is 0)."""
    xa = op.A_adjoint(y).abs().flatten(1).double()
    s = torch.quantile(xa[:, :2**24], 0.995, dim=1)
    return torch.where(s > 0, s, torch.ones_like(s))


def cs_reconstruct(op, y: Tensor, kind: str = "tv", lam: float = 1e-3,
                   iters: int = 100) -> Tensor:
    """Compressed sensing for a ccdf MRI operator ``op`` and its measurement y (B, C, H, W):
    x_hat (B, 1, H, W), complex for complex images and coils, real otherwise.

    lam is relative to each image's scale s (the 99.5th percentile of |A^H y|): sigpy solves
    for x / s from y / s, so one lambda serves data in any units (raw fastMRI k-space, images
    in [0, 1]) and ``choose_lambda``'s choice on validation slices transfers.
    For real images the operator's information is the k-space on M | Mflip (Hermitian
    symmetry): sigpy is given F A_pinv y on that mask, and the (real) solution's real part.
    With an operator ``support`` (cropped ESPIRiT maps) the solution is 0 outside it.
    """
    maps = getattr(op, "coils", None)
    scales = image_scales(op, y)
    out = []
    for i, yi in enumerate(y / scales.view(-1, *[1] * (y.dim() - 1)).to(y.dtype)):
        if maps is not None:  # (Ncoil, H, W), or per image (B, Ncoil, H, W)
            x = cs_recon(yi, op.mask, maps[i] if maps.dim() == 4 else maps, kind, lam, iters)
        elif op.complex_image:
            x = cs_recon(yi[0], op.mask, None, kind, lam, iters)
        else:
            k = torch.fft.fft2(op.A_pinv(yi[None]), norm="ortho")[0, 0]
            x = cs_recon(k, op.mask_sym, None, kind, lam, iters).real
        out.append(x)
    x = torch.stack(out)[:, None] * scales.cpu().view(-1, 1, 1, 1)
    if op.support is not None:  # what no coil sees is zero: the same knowledge CCDF is given
        x = x * op.support.to(x.device)
    dtype = y.dtype if op.complex_image else y.real.dtype
    return x.to(device=y.device, dtype=dtype)


def choose_lambda(op, y: Tensor, x: Tensor, kind: str = "tv", grid=None,
                  iters: int = 100) -> tuple[float, list[tuple[float, float]]]:
    """The lambda with the best mean PSNR of |x_hat| against |x| on VALIDATION images x
    (B, C, H, W) measured as y by ``op``; returns (lambda, [(lambda, psnr), ...] tried).

    ``grid``: the lambdas to try; None: the decades ``DECADES``, then the half decades either
    side of the best one (7 reconstructions per image), then, while the best is at an end of
    the grid, half decades further that way (within ``LAMBDA_RANGE``): the choice is never
    an edge of the grid unless it is the edge of that range."""
    table: dict[float, float] = {}

    def score(lam: float) -> None:
        lam = float(f"{lam:.3g}")
        if lam not in table:
            xh = cs_reconstruct(op, y, kind, lam, iters)
            table[lam] = float(metrics.psnr(xh.abs(), x.abs()).mean())

    for lam in (DECADES if grid is None else grid):
        score(lam)
    if grid is None:
        best = max(table, key=table.get)
        for f in (10 ** -0.5, 10 ** 0.5):
            score(best * f)
        while True:
            best = max(table, key=table.get)
            if best == min(table) and best > LAMBDA_RANGE[0]:
                score(best * 10 ** -0.5)
            elif best == max(table) and best < LAMBDA_RANGE[1]:
                score(best * 10 ** 0.5)
            else:
                break
    best = max(table, key=table.get)
    return best, sorted(table.items())
