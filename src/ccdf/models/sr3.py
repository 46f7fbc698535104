"""SR3-style conditional diffusion (Saharia et al. 2021): the super-resolution baseline of the
Table 2 of Chung, Sim & Ye (CVPR 2022).

The network is a ``UNet2DModel`` fed ``[x_t, 2 up(y) - 1]`` (2C channels: the noisy image and
the bicubic upsampling of the low-resolution image), predicting eps on a VP schedule.  It is
saved as an ordinary ccdf model folder whose config carries ``"condition": {"task": "sr", ...}``;
``Conditioned`` binds a condition so that the one reverse loop (``samplers.solve``, t0 = 1, no
data consistency) samples it unchanged.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import init
from ..operators import make_operator
from .denoiser import to_model
from .formats import save_model
from .train import TrainConfig, check_data, diffusion_loss, fit, make_schedule
from .unet import UNetDenoiser, build_unet


class Conditioned(nn.Module):
    """A conditional model with its condition bound: ``model(x_t, t)`` for the one loop.

    cond (B, C, H, W) in [-1, 1]; x_t may hold K samples per condition (B K rows)."""

    def __init__(self, model: UNetDenoiser, cond: Tensor):
        super().__init__()
        self.model, self.cond = model, cond
        self.schedule, self.prediction = model.schedule, model.prediction
        self.image_size, self.channels = model.image_size, model.channels

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        c = self.cond
        if x.shape[0] != c.shape[0]:
            c = c.repeat_interleave(x.shape[0] // c.shape[0], 0)
        return self.model(x, t, c.to(x.dtype))


def condition(model: UNetDenoiser, y: Tensor, image_shape) -> Tensor:
    """The SR3 condition for a low-resolution y (B, C, h, w) in [0, 1]: bicubic(y) in the
    model's data range (2 bicubic(y) - 1 for [-1, 1])."""
    task = model.meta.get("condition")
    if not task:
        raise ValueError("this model is not conditional (no 'condition' in its config)")
    op = make_operator(task["task"], image_shape, **{k: v for k, v in task.items() if k != "task"})
    return to_model(model, init.classic(op, y))


def new_sr3(cfg: TrainConfig, task: dict) -> UNetDenoiser:
    """An untrained SR3-style model for ``task`` ({"task": "sr", "factor": 4, ...})."""
    if task.get("task") != "sr":
        raise ValueError(f"SR3 is a super-resolution model; got task {task.get('task')!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        unet = build_unet(cfg.image_size, cfg.channels, cfg.block_out_channels,
                          cfg.layers_per_block, cfg.attention, in_channels=2 * cfg.channels)
    meta = {"trained_on": cfg.trained_on or cfg.data, "condition": dict(task),
            "extra": {"train_config": asdict(cfg), "kind": "sr3", **cfg.extra}}
    return UNetDenoiser(unet, make_schedule(cfg), "eps", "t1000", True, meta)


def train_sr3(cfg: TrainConfig, task: dict, data: Tensor, out, *, resume: bool = True,
              progress: bool = True) -> Path:
    """Train SR3 on clean ``data`` (N, C, H, W) in [0, 1] with the DDPM eps-loss, conditioned
    on the bicubic upsampling of the task's low-resolution measurement."""
    check_data(cfg, data)
    if cfg.schedule != "vp":
        raise ValueError("SR3 is trained on a VP schedule")
    model = new_sr3(cfg, task)
    op = make_operator("sr", data.shape[1:], **{k: v for k, v in task.items() if k != "task"})

    def loss_fn(x, g):
        with torch.no_grad():
            cond = to_model(model, init.classic(op, op.A(x)))
        return diffusion_loss(Conditioned(model, cond), to_model(model, x), g, cfg.t_min)

    fit(model.unet, loss_fn, data, cfg, out, lambda ema: save_model(model, out, ema),
        resume=resume, progress=progress)
    return Path(out)
