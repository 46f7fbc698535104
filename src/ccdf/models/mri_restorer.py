"""A feed-forward MRI start for any Cartesian mask, any size, real or complex images.

An unrolled network (as MoDL, Aggarwal et al. 2019, and the end-to-end VarNet do): K
iterations of x <- DC(x + UNet(x, k)) from the zero-filled image, where DC is the
data-consistency projection x + A^+ (y - A x) of the operator at hand.  The mask enters only
through DC, so one network serves every mask, acceleration and coil set; the UNet is fully
convolutional (reflect-padded to a multiple of its downsampling), so it serves every size.
Images are complex (B, 1, H, W) (the UNet sees real and imaginary parts as two channels),
divided by the 99.5th percentile of the zero-filled magnitude and multiplied back.

Saved like the other restorers (``"format": "ccdf-restorer"``, ``"kind": "mri-unrolled"``);
its ``task`` is {"task": "mri"} with no pattern: it takes any Cartesian mask.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import io
from ..operators.mri import MASKS, fft2c, ifft2c, uniform1d
from .restorer import FORMAT
from .train import TrainConfig, fit
from .unet import build_unet, pad_to_multiple

KIND = "mri-unrolled"


class MRIRestorer(nn.Module):
    """``restore(op, y)`` -> x0_hat (B, 1, H, W) complex, or real for a real-image operator."""

    kind = KIND

    def __init__(self, unet: nn.Module, iters: int = 3, meta: dict | None = None):
        super().__init__()
        self.unet, self.iters, self.meta = unet, int(iters), dict(meta or {})
        self.task = {"task": "mri"}

    def refine(self, x: Tensor, dc) -> Tensor:
        """x (B, 1, H, W) complex, scaled to magnitude ~[0, 1]; dc: the projection x -> x'."""
        p = next(self.unet.parameters())
        m = 2 ** (len(self.unet.config.block_out_channels) - 1)
        for k in range(self.iters):
            h = torch.cat([x.real, x.imag], 1)
            hp, crop = pad_to_multiple(h, m)
            t = torch.full((x.shape[0],), float(k), dtype=p.dtype, device=x.device)
            r = crop(self.unet(hp.to(p.dtype), t).sample.to(h.dtype))
            x = dc(x + torch.complex(r[:, :1], r[:, 1:]))
        return x

    def restore(self, op, y: Tensor) -> Tensor:
        """The start for operator ``op`` (an MRI operator, any mask) and its k-space y."""
        zf = op.A_pinv(y)
        x = zf if zf.is_complex() else zf.to(torch.complex64)
        s = float(torch.quantile(x.abs().flatten().float()[:2**24], 0.995))
        s = s if s > 0 else 1.0
        y_s = y / s

        def dc(v):
            v = v if op.complex_image else v.real
            out = v + op.A_pinv(y_s - op.A(v))
            return out if out.is_complex() else out.to(torch.complex64)

        with torch.no_grad():
            out = self.refine(x / s, dc) * s
        return out if op.complex_image else out.real.contiguous()

    def config_dict(self) -> dict:
        return {"format": FORMAT, "kind": KIND, "version": 1, "iters": self.iters,
                "unet": {k: v for k, v in dict(self.unet.config).items() if not k.startswith("_")},
                "task": self.task, **self.meta}


def new_mri_restorer(cfg: TrainConfig, iters: int = 3) -> MRIRestorer:
    """An untrained MRIRestorer (weights from cfg.seed) that starts as K projections (identity
    on consistent images)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        unet = build_unet(cfg.image_size, 2, cfg.block_out_channels, cfg.layers_per_block)
    nn.init.zeros_(unet.conv_out.weight)
    nn.init.zeros_(unet.conv_out.bias)
    return MRIRestorer(unet, iters, {"trained_on": cfg.trained_on or cfg.data,
                                     "extra": {"train_config": asdict(cfg), **cfg.extra}})


def random_masks(b: int, h: int, w: int, g: torch.Generator, accel=(2.0, 12.0)) -> Tensor:
    """(B, H, W) bool unshifted random Cartesian masks: pattern uniform among the MASKS,
    acceleration uniform in ``accel``, a fully sampled centre of 4-8% of the columns (1-D) or
    a disc (2-D)."""
    out = []
    names = sorted(MASKS)
    for _ in range(b):
        name = names[int(torch.randint(len(names), (1,), generator=g))]
        r = float(accel[0] + (accel[1] - accel[0]) * torch.rand(1, generator=g))
        frac = 0.04 + 0.04 * float(torch.rand(1, generator=g))
        acs = max(2, round(frac * w))
        if name == "uniform1d":
            acs = min(acs, round(w / r))
            out.append(uniform1d(h, w, r, acs))
        elif name == "vd2d":
            out.append(MASKS[name](h, w, r, generator=g))
        else:
            out.append(MASKS[name](h, w, r, acs=min(acs, round(w / r)), generator=g))
    return torch.stack(out)


def train_mri_restorer(cfg: TrainConfig, sampler, out, *, sizes=(64, 96, 128), iters: int = 3,
                       resume: bool = True, progress: bool = True) -> Path:
    """L1-train an MRIRestorer on crops of ``sampler`` (a ``patches.PatchSampler``: complex,
    smooth phase) of a size drawn from ``sizes`` per batch, each with its own random mask."""
    net = new_mri_restorer(cfg, iters)

    def batch_fn(b, g):
        size = sizes[int(torch.randint(len(sizes), (1,), generator=g))]
        x = sampler(b, g, size)
        m = random_masks(b, size, size, g)
        return torch.cat([x, m[:, None].to(x.dtype)], 1)  # (B, 3, S, S): re, im, mask

    def loss_fn(batch, g):
        x = torch.complex(batch[:, :1], batch[:, 1:2])
        m = batch[:, 2:].bool()
        y = fft2c(x) * m
        zf = ifft2c(y)
        s = torch.quantile(zf.abs().flatten(1), 0.995, dim=1).clamp_min(1e-3).view(-1, 1, 1, 1)

        def dc(v):
            return ifft2c(torch.where(m, y / s, fft2c(v)))

        return (net.refine(zf / s, dc) - x / s).abs().mean()

    def export(ema):
        io.write_model_folder(out, ema, net.config_dict())  # read by formats.load_restorer

    fit(net.unet, loss_fn, None, cfg, out, export, resume=resume, progress=progress,
        batch_fn=batch_fn)
    return Path(out)
