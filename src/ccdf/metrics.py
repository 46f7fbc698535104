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
