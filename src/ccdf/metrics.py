"""Image quality metrics as pure functions on (B, C, H, W) tensors; per-image results (B,)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check(x: Tensor, ref: Tensor) -> None:
    if x.shape != ref.shape:
        raise ValueError(f"metric inputs differ in shape: {tuple(x.shape)} vs {tuple(ref.shape)}")


def mse(x: Tensor, ref: Tensor) -> Tensor:
    _check(x, ref)
    return (x - ref).abs().pow(2).flatten(1).mean(1)


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """10 log10(range^2 / MSE) per image, in dB."""
    return 10 * torch.log10(data_range**2 / mse(x, ref).clamp_min(1e-20))


def nmse(x: Tensor, ref: Tensor) -> Tensor:
    """||x - ref||^2 / ||ref||^2 per image (the fastMRI NMSE)."""
    _check(x, ref)
    return (x - ref).abs().pow(2).flatten(1).sum(1) / ref.abs().pow(2).flatten(1).sum(1)


def ssim(x: Tensor, ref: Tensor, data_range: float = 1.0, win: int = 7,
         sigma: float = 1.5) -> Tensor:
    """Mean SSIM per image (Wang et al. 2004), Gaussian window, channels averaged.

    The window is ``win`` x ``win`` (7 suits the 32x32 and 64x64 images of the demos).
    """
    _check(x, ref)
    x, ref = x.double(), ref.double()
    c = x.shape[1]
    r = torch.arange(win, dtype=torch.float64) - (win - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :]).expand(c, 1, win, win).contiguous()

    def blur(t):
        return F.conv2d(t, k, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(ref)
    sxx = blur(x * x) - mx**2
    syy = blur(ref * ref) - my**2
    sxy = blur(x * ref) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


# ------------------------------------------------------------------ fastMRI's evaluation
# As ``fastmri/evaluate.py`` computes them (Zbontar et al., "fastMRI: An Open Dataset and
# Benchmarks for Accelerated MRI", arXiv 1811.08839): on magnitude VOLUMES (S, H, W) against
# the fully sampled target (``reconstruction_rss`` multi-coil, ``reconstruction_esc``
# single-coil), both centre-cropped to the target's width squared, data range = the target
# volume's max; NMSE and PSNR over the volume, SSIM (scikit-image's defaults: 7 x 7 uniform
# window, sample covariance, K1 = 0.01, K2 = 0.03, mean over the interior pixels) averaged
# over slices; a data set's figure is the mean over its volumes.
def center_crop(data, shape: tuple[int, int]):
    """fastMRI's ``transforms.center_crop``: the centred (h, w) window of the last two axes
    (start (H - h) // 2, (W - w) // 2); numpy arrays and tensors alike."""
    h, w = int(shape[0]), int(shape[1])
    if not (0 < h <= data.shape[-2] and 0 < w <= data.shape[-1]):
        raise ValueError(f"cannot crop {tuple(data.shape[-2:])} to {(h, w)}")
    r0, c0 = (data.shape[-2] - h) // 2, (data.shape[-1] - w) // 2
    return data[..., r0:r0 + h, c0:c0 + w]


def _volume(a) -> Tensor:
    t = torch.as_tensor(a)
    t = t.abs() if t.is_complex() else t
    t = t.to(torch.float64)
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise ValueError(f"fastMRI metrics take volumes (slices, H, W), got {tuple(t.shape)}")
    return t


def fastmri_nmse(target, recon) -> float:
    """||target - recon||^2 / ||target||^2 over the volume."""
    return float(nmse(_volume(recon)[None], _volume(target)[None])[0])


def fastmri_psnr(target, recon, maxval: float | None = None) -> float:
    """10 log10(maxval^2 / MSE) over the volume, maxval = the target's max."""
    gt, pr = _volume(target), _volume(recon)
    _check(pr, gt)
    maxval = float(gt.max()) if maxval is None else float(maxval)
    return float(10 * torch.log10(maxval**2 / (gt - pr).pow(2).mean()))


def fastmri_ssim(target, recon, maxval: float | None = None, win: int = 7) -> float:
    """Mean over slices of scikit-image's ``structural_similarity(gt, pred, data_range=maxval)``
    (the defaults fastMRI uses), maxval = the target volume's max."""
    gt, pr = _volume(target), _volume(recon)
    _check(pr, gt)
    maxval = float(gt.max()) if maxval is None else float(maxval)
    if min(gt.shape[-2:]) < win:
        raise ValueError(f"SSIM needs slices of at least {win}x{win}, got {tuple(gt.shape[-2:])}")
    k = torch.full((1, 1, win, win), 1.0 / win**2, dtype=torch.float64)

    def mean(t):  # the uniform filter at the interior pixels (skimage crops (win - 1) / 2)
        return F.conv2d(t[:, None], k)[:, 0]

    x, y = gt, pr
    ux, uy = mean(x), mean(y)
    cov = win**2 / (win**2 - 1)  # sample covariance
    vx, vy = cov * (mean(x * x) - ux**2), cov * (mean(y * y) - uy**2)
    vxy = cov * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * maxval) ** 2, (0.03 * maxval) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s.flatten(1).mean(1).mean())


def fastmri_volume(target, recon) -> dict:
    """{'nmse', 'psnr', 'ssim'} of one volume as ``fastmri/evaluate.py`` scores it: both
    centre-cropped to (W, W) of the target's width W (a no-op for 320 x 320 targets)."""
    gt, pr = _volume(target), _volume(recon)
    wt = gt.shape[-1]
    size = (min(wt, gt.shape[-2]), wt)
    gt, pr = center_crop(gt, size), center_crop(pr, size)
    return {"nmse": fastmri_nmse(gt, pr), "psnr": fastmri_psnr(gt, pr),
            "ssim": fastmri_ssim(gt, pr)}


def fastmri_mean(volumes: list) -> dict:
    """The data set's figures: the mean over volumes of each ``fastmri_volume`` metric."""
    if not volumes:
        return {}
    return {k: float(sum(v[k] for v in volumes) / len(volumes)) for k in ("nmse", "psnr", "ssim")}
