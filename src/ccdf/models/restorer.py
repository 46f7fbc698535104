"""Feed-forward restoration networks: the "feed-forward network correction" of Chung, Sim &
Ye (CVPR 2022), Sec. 3.

A ``Restorer`` maps the classic initial estimate (bicubic upsampling, zero-filled MRI, ...)
to a better one, x0_hat = x_init + UNet(2 x_init - 1) / 2, trained with an L1 loss against
the clean image.  It gives CCDF a closer start, hence a smaller t0.  Saved as a folder like
the priors (``model.safetensors`` + ``config.json`` with ``"format": "ccdf-restorer"``), with
its task, the measurement noise it was trained at (``sigma_y``, [0, 1] scale; 0 if absent)
and its error on held-out images (``heldout``: PSNR and per-pixel MSE of the classic estimate
and of the network, at that noise), which ``--t0 auto`` can use as the initial error eps0.
Reading and writing the folder: ``models.formats`` (``load_restorer``, ``save_restorer``).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import init, io, metrics
from ..operators import make_operator
from .train import TrainConfig, check_data, fit
from .unet import build_unet

FORMAT = "ccdf-restorer"


class Restorer(nn.Module):
    """x_init (B, C, H, W) in [0, 1] -> restored (B, C, H, W); ``task`` names its operator."""

    def __init__(self, unet: nn.Module, task: dict, meta: dict | None = None):
        super().__init__()
        self.unet, self.task, self.meta = unet, dict(task), dict(meta or {})

    def forward(self, x: Tensor) -> Tensor:
        p = next(self.unet.parameters())
        t = torch.zeros(x.shape[0], dtype=p.dtype, device=x.device)
        return x + self.unet((2 * x - 1).to(p.dtype), t).sample.to(x.dtype) / 2

    def fits(self, op):
        """True if this network was trained for measurements of ``op``, else why not (one line).

        The network takes real images measured by the operator it was trained with: ``op``
        must give the same measurement of a probe image (same mask, kernel, factor)."""
        if getattr(op, "complex_image", False):
            return "the restoration network takes real images, this measurement is complex"
        shape = getattr(op, "image_shape", None)
        try:
            mine = self.operator(shape)
            probe = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
            dev = next((v.device for v in vars(op).values() if isinstance(v, Tensor)), "cpu")
            ya, yb = mine.A(probe), op.A(probe.to(dev)).cpu()
            same = ya.shape == yb.shape and bool(torch.allclose(ya, yb, atol=1e-5))
        except (ValueError, TypeError, RuntimeError):
            same = False
        if not same:
            what = ", ".join(f"{k}={v}" for k, v in self.task.items() if k not in ("task", "seed")
                             and v is not None)
            return (f"the measurement operator (mask, kernel, factor) is not the one the "
                    f"restoration network was trained on "
                    f"({self.task.get('task')}{': ' + what if what else ''})")
        return True

    def operator(self, image_shape):
        return make_operator(self.task["task"], image_shape,
                             **{k: v for k, v in self.task.items() if k != "task"})

    def config_dict(self) -> dict:
        return {"format": FORMAT, "version": 1,
                "unet": {k: v for k, v in dict(self.unet.config).items() if not k.startswith("_")},
                "task": self.task, **self.meta}


def simulate(op, x: Tensor, sigma_y: float, g: torch.Generator | None) -> Tensor:
    """y = A x + sigma_y n, n white (images in [0, 1])."""
    y = op.A(x)
    if sigma_y > 0:
        y = y + sigma_y * torch.randn(y.shape, generator=g, dtype=y.dtype)
    return y


def evaluate_restorer(net: Restorer, x: Tensor, seed: int = 0) -> dict:
    """PSNR and per-pixel MSE ([0, 1] range) of the classic estimate and of the net on x, at
    the net's training noise (``meta["sigma_y"]``, noise drawn from ``seed``)."""
    op = net.operator(x.shape[1:])
    sigma_y = float(net.meta.get("sigma_y", 0.0))
    y = simulate(op, x, sigma_y, torch.Generator().manual_seed(seed))
    x_init = init.classic(op, y, sigma_y)
    with torch.no_grad():
        x_net = net(x_init).clamp(0, 1)
    return {"n_images": len(x),
            "psnr_init": float(metrics.psnr(x_init, x).mean()),
            "psnr_net": float(metrics.psnr(x_net, x).mean()),
            "mse_init": float(metrics.mse(x_init, x).mean()),
            "mse_net": float(metrics.mse(x_net, x).mean()), "sigma_y": sigma_y}


def new_restorer(cfg: TrainConfig, task: dict, sigma_y: float = 0.0) -> Restorer:
    """An untrained Restorer (weights from cfg.seed) that starts as the identity map."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        unet = build_unet(cfg.image_size, cfg.channels, cfg.block_out_channels,
                          cfg.layers_per_block, cfg.attention)
    nn.init.zeros_(unet.conv_out.weight)  # x0_hat = x_init until trained
    nn.init.zeros_(unet.conv_out.bias)
    meta = {"trained_on": cfg.trained_on or cfg.data,
            "extra": {"train_config": asdict(cfg), **cfg.extra}}
    if sigma_y:
        meta["sigma_y"] = float(sigma_y)
    return Restorer(unet, task, meta)


def train_restorer(cfg: TrainConfig, task: dict, data: Tensor, out, heldout: Tensor | None = None,
                   *, resume: bool = True, progress: bool = True, sigma_y: float = 0.0) -> Path:
    """L1-train a Restorer for ``task`` (e.g. {"task": "sr", "factor": 4}) on clean ``data``,
    from measurements with noise ``sigma_y`` ([0, 1] scale) drawn afresh every step."""
    sigma_y = float(sigma_y)
    if not (sigma_y >= 0 and sigma_y < float("inf")):
        raise ValueError(f"--sigma-y must be a finite number >= 0, got {sigma_y}")
    check_data(cfg, data)
    net = new_restorer(cfg, task, sigma_y)
    unet = net.unet
    op = net.operator(data.shape[1:])

    def loss_fn(x, g):
        with torch.no_grad():
            x_init = init.classic(op, simulate(op, x, sigma_y, g), sigma_y)
        return (net(x_init) - x).abs().mean()

    def export(ema):
        if heldout is not None:
            ema_net = Restorer(unet.__class__(**unet.config), task, {"sigma_y": sigma_y})
            ema_net.unet.load_state_dict(ema)
            net.meta["heldout"] = evaluate_restorer(ema_net.eval(), heldout)
        io.write_model_folder(out, ema, net.config_dict())  # read by formats.load_restorer

    fit(net.unet, loss_fn, data, cfg, out, export, resume=resume, progress=progress)
    return Path(out)
