"""Training a diffusion prior: DDPM eps-loss (VP) or denoising score matching (VE).

Both losses are ``|| eps_theta(a x0 + b z, t) - z ||^2`` with t ~ U(t_min, 1): for VE this
is denoising score matching with the weighting lambda(t) = b(t)^2 (score = -eps / b).
Checkpoints (``checkpoint.pt``: weights, EMA, AdamW state, step, RNG state) resume exactly;
the EMA weights are exported as a model folder (``io.write_model_folder`` of the model's
``config_dict``, read back by ``models.formats``) and the loss of every step is appended to
``train_log.jsonl``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .. import io
from ..schedules import VESchedule, VPSchedule
from .denoiser import to_model
from .unet import UNetDenoiser, build_unet


@dataclass
class TrainConfig:
    data: str = "fashion-mnist"
    image_size: int = 32
    channels: int = 1
    schedule: str = "vp"  # 'vp' (DDPM eps-loss) or 've' (SMLD denoising score matching)
    sigma_max: float = 50.0
    block_out_channels: tuple = (32, 64, 64)
    layers_per_block: int = 1
    attention: bool = False
    batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 200
    lr_decay: int = 0       # > 0: cosine decay of the learning rate to 0 over the last lr_decay steps
    steps: int = 10000
    ema_decay: float = 0.999
    t_min: float = 1e-3
    hflip: bool = False
    seed: int = 0
    checkpoint_every: int = 250
    patch: int = 0          # > 0: random P x P patches of native-resolution slices (any-size prior)
    complex: bool = False   # two channels (real, imaginary) with smooth random phase (patch data)
    init_from: str = ""     # a ccdf model folder whose weights start the training (channels tiled)
    trained_on: str = ""
    extra: dict = field(default_factory=dict)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The learning rate of step ``step`` (0-based): linear warm-up over ``cfg.warmup`` steps,
    then constant, then (``cfg.lr_decay`` > 0) a cosine from cfg.lr to 0 over the last
    ``cfg.lr_decay`` steps of ``cfg.steps``. A function of the step only, so a resumed run
    follows the same schedule."""
    lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))
    start = cfg.steps - cfg.lr_decay
    if cfg.lr_decay > 0 and step >= start:
        lr *= 0.5 * (1 + math.cos(math.pi * min(step - start, cfg.lr_decay) / cfg.lr_decay))
    return lr


def make_schedule(cfg: TrainConfig):
    return VPSchedule() if cfg.schedule == "vp" else VESchedule(sigma_max=cfg.sigma_max)


def make_model(cfg: TrainConfig) -> UNetDenoiser:
    unet = build_unet(cfg.image_size, cfg.channels, cfg.block_out_channels,
                      cfg.layers_per_block, cfg.attention)
    meta = {"trained_on": cfg.trained_on or cfg.data,
            "extra": {"train_config": asdict(cfg), **cfg.extra}}
    if cfg.patch:
        meta.update(any_size=True, patch=cfg.patch)
    if cfg.complex:
        meta.update(complex=True)
    return UNetDenoiser(unet, make_schedule(cfg), "eps", "t1000", True, meta)


def diffusion_loss(model: UNetDenoiser, x0: Tensor, g: torch.Generator, t_min: float) -> Tensor:
    """Mean ||eps_theta(x_t, t) - z||^2 for x0 (B, C, H, W) in [-1, 1]."""
    b = x0.shape[0]
    t = t_min + (1 - t_min) * torch.rand(b, generator=g, dtype=torch.float64)
    z = torch.randn(x0.shape, generator=g)
    s = model.schedule
    xt = s.a(t).float().view(-1, 1, 1, 1) * x0 + s.b(t).float().view(-1, 1, 1, 1) * z
    return (model(xt, t) - z).pow(2).mean()


def train(cfg: TrainConfig, data, out: str | Path, *, resume: bool = True,
          progress: bool = True, callback: Callable[[int, float], None] | None = None) -> Path:
    """Train a diffusion prior; the EMA model goes to ``out``.

    data: (N, C, H, W) in [0, 1] (the model sees 2 x - 1), or, with ``cfg.patch``, a
    ``patches.PatchSampler`` whose batches (B, 2, P, P) the model sees as they are (complex
    images with magnitude ~[0, 1] keep 0 as background).  Returns the model folder.  Rerunning
    with the same ``out`` resumes from ``checkpoint.pt`` (same step, weights, EMA, optimizer
    and RNG state), so an interrupted run continues exactly.
    """
    if not cfg.patch:
        check_data(cfg, data)
    with torch.random.fork_rng(devices=[]):  # initial weights from cfg.seed, not global RNG
        torch.manual_seed(cfg.seed)
        model = make_model(cfg)
    if cfg.init_from:
        warm_start(model.unet, cfg.init_from)

    def loss_fn(x0, g):
        # patches (complex MRI) are drawn in model space; images in [0, 1] map to its data range
        return diffusion_loss(model, x0 if cfg.patch else to_model(model, x0), g, cfg.t_min)

    fit(model.unet, loss_fn, data, cfg, out,
        lambda ema: io.write_model_folder(out, ema, model.config_dict()),
        resume=resume, progress=progress, callback=callback,
        batch_fn=data if cfg.patch else None)
    return Path(out)


def warm_start(net: nn.Module, folder) -> None:
    """Copy the weights of a ccdf model folder into ``net``.  Where channel counts differ (a
    1-channel prior starting a 2-channel complex one) the old weights fill the first input /
    output channels and the others keep their fresh initialisation: tiling them would tie
    the channels (the network would see only their sum and predict their mean)."""
    sd = io.read_weights(Path(folder) / io.WEIGHTS)
    own = net.state_dict()
    for k, v in sd.items():
        if k not in own:
            raise ValueError(f"--init-from {folder}: weight {k} does not exist in this network")
        w = own[k].clone()
        if v.shape != w.shape:
            dim = 1 if k.startswith("conv_in.weight") else 0
            if v.dim() != w.dim() or v.shape[dim] > w.shape[dim] or \
                    any(a != b for i, (a, b) in enumerate(zip(v.shape, w.shape)) if i != dim):
                raise ValueError(f"--init-from {folder}: {k} is {tuple(v.shape)}, "
                                 f"the network's {tuple(w.shape)}")
            w.narrow(dim, 0, v.shape[dim]).copy_(v)
            v = w
        own[k] = v.to(w.dtype)
    net.load_state_dict(own)


def check_data(cfg: TrainConfig, data: Tensor) -> None:
    if data.dim() != 4 or data.shape[1] != cfg.channels or data.shape[-1] != cfg.image_size:
        raise ValueError(f"data must be (N, {cfg.channels}, {cfg.image_size}, {cfg.image_size}),"
                         f" got {tuple(data.shape)}")


def fit(net: nn.Module, loss_fn, data: Tensor, cfg: TrainConfig, out, export, *,
        resume: bool = True, progress: bool = True, callback=None, labels: Tensor | None = None,
        aux: dict | None = None, batch_fn=None) -> None:
    """The training loop shared by priors, restoration nets, SR3, ESRGAN and the classifier.

    net: the module whose weights are trained; loss_fn(x (B, C, H, W) in [0, 1], generator)
    -> loss, or loss_fn(x, generator, labels (B,)) when ``labels`` (N,) are given;
    export(ema_state_dict) writes the deployable model; aux: other stateful objects (a
    discriminator and its optimizer) saved in and restored from the checkpoint; batch_fn(B, g)
    -> (B, C, H, W) draws each batch instead of indexing ``data`` (patch training).  AdamW with
    linear warm-up, gradient clipping at 1, EMA of the weights, a JSON line per step in
    ``train_log.jsonl`` and an atomic ``checkpoint.pt`` every ``cfg.checkpoint_every`` steps,
    from which a rerun resumes exactly.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    aux = aux or {}
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    step, elapsed = 0, 0.0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        state = io.read_checkpoint(ckpt)
        net.load_state_dict(state["model"])
        ema = state["ema"]
        for k, obj in aux.items():
            obj.load_state_dict(state["aux"][k])
        opt.load_state_dict(state["opt"])
        g.set_state(state["rng"])
        step = int(state["step"])
        elapsed = float(state.get("elapsed", 0.0))
    log_path = out / "train_log.jsonl"
    if log_path.exists():  # keep only the steps the checkpoint has seen
        io.write_jsonl(log_path, [e for e in io.read_jsonl(log_path) if e["step"] <= step])
    bar = None
    if progress:
        bar = tqdm(total=cfg.steps, initial=step, desc="train", dynamic_ncols=True)
    log = io.JsonlWriter(log_path)
    t_start = time.time() - elapsed
    try:
        while step < cfg.steps:
            net.train()
            if batch_fn is not None:
                x0, idx = batch_fn(cfg.batch_size, g), None
            else:
                idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
                x0 = data[idx]
            if cfg.hflip and batch_fn is None:
                flip = torch.rand(cfg.batch_size, generator=g) < 0.5
                x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(-1), x0)
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            loss = loss_fn(x0, g) if labels is None else loss_fn(x0, g, labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
            d = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for k, v in net.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
                    else:
                        ema[k].copy_(v)
            lv = float(loss.detach())
            log.append({"step": step, "loss": round(lv, 6),
                        "time": round(time.time() - t_start, 2)})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{lv:.4f}")
            if callback is not None:
                callback(step, lv)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                io.write_checkpoint(ckpt, {"model": net.state_dict(), "ema": ema,
                                       "opt": opt.state_dict(), "rng": g.get_state(),
                                       "step": step, "elapsed": time.time() - t_start,
                                       "aux": {k: obj.state_dict() for k, obj in aux.items()}})
                export(ema)
    finally:
        log.close()
        if bar is not None:
            bar.close()
    io.write_json(out / "train_config.json", asdict(cfg))
