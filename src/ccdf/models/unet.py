"""diffusers ``UNet2DModel`` wrapped to the denoiser contract, and its folder format.

A saved model is a folder holding ``model.safetensors`` (weights) and ``config.json``:
``{"format": "ccdf-model", "unet": <UNet2DModel config>, "schedule": {...},
"prediction": "eps", "time_input": "t1000", "input_scaling": true, "image_size": 32,
"channels": 1, "data_range": [-1, 1], "trained_on": "...", "extra": {...}}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from ..schedules import VESchedule, VPSchedule, schedule_from_dict

FORMAT = "ccdf-model"
TIME_INPUTS = ("t1000", "discrete", "sigma")


def build_unet(image_size: int = 32, channels: int = 1, block_out_channels=(32, 64, 64),
               layers_per_block: int = 1, attention: bool = False, in_channels: int | None = None):
    """A small diffusers UNet2DModel: (B, in_channels, H, W) -> (B, channels, H, W)."""
    from diffusers import UNet2DModel

    n = len(block_out_channels)
    return UNet2DModel(
        sample_size=image_size, in_channels=in_channels or channels, out_channels=channels,
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
        add_attention=attention, norm_num_groups=min(8, block_out_channels[0]),
    )


def pad_to_multiple(h: Tensor, m: int):
    """Reflect-pad (B, C, H, W) to multiples of m (replicate where too small to reflect);
    returns (padded, crop) with crop(out) cutting an output back to H x W."""
    hw = h.shape[-2:]
    ph, pw = -hw[0] % m, -hw[1] % m
    if ph or pw:
        mode = "reflect" if min(hw) > max(ph, pw) else "replicate"
        h = torch.nn.functional.pad(h, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)

    def crop(out: Tensor) -> Tensor:
        return out[..., ph // 2:ph // 2 + hw[0], pw // 2:pw // 2 + hw[1]]

    return h, crop


class UNetDenoiser(nn.Module):
    """``model(x_t, t)`` on a UNet2DModel (the contract of ``models.denoiser``).

    time_input: what the network is fed as its timestep
      't1000'    1000 t (models trained by ccdf),
      'discrete' K t - 1 for a K-step discrete DDPM checkpoint,
      'sigma'    sigma(t) for diffusers' NCSN++ score models (VE).
    input_scaling: divide x_t by sqrt(a^2 + b^2) before the network (EDM's c_in; 1 for VP).
    """

    def __init__(self, unet: nn.Module, schedule, prediction: str = "eps",
                 time_input: str = "t1000", input_scaling: bool = True, meta: dict | None = None):
        super().__init__()
        if time_input not in TIME_INPUTS:
            raise ValueError(f"time_input must be one of {TIME_INPUTS}, got {time_input!r}")
        self.unet = unet
        self.schedule = schedule
        self.prediction = prediction
        self.time_input = time_input
        self.input_scaling = input_scaling
        self.meta = dict(meta or {})

    @property
    def any_size(self) -> bool:
        """True for a fully convolutional prior trained on patches: it takes any H x W."""
        return bool(self.meta.get("any_size"))

    @property
    def complex(self) -> bool:
        """True for a complex-image prior: channels are (real, imaginary), background 0."""
        return bool(self.meta.get("complex"))

    @property
    def image_size(self) -> int | None:
        if self.any_size:
            return None
        s = self.unet.config.sample_size
        return int(s[0] if isinstance(s, (tuple, list)) else s)

    @property
    def channels(self) -> int:
        # a learn_sigma network wrapped in ``adm.EpsOnly`` returns only ``eps_channels``
        return int(getattr(self.unet, "eps_channels", self.unet.config.out_channels))

    def timesteps(self, t: Tensor) -> Tensor:
        if self.time_input == "t1000":
            return 1000.0 * t
        if self.time_input == "discrete":
            k = len(self.schedule.table)
            return (k * t - 1).clamp_min(0)
        return (self.schedule.b(t) ** 2 + self.schedule.sigma_min**2).sqrt()

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).expand(x.shape[0])
        p = next(self.unet.parameters())
        h = x
        if self.input_scaling:
            c = (self.schedule.a(t) ** 2 + self.schedule.b(t) ** 2).rsqrt()
            h = h * c.to(x.dtype).reshape(-1, 1, 1, 1)
        if cond is not None:
            h = torch.cat([h, cond], 1)
        crop = None
        if self.any_size:  # reflect-pad to a multiple of the UNet's total downsampling
            h, crop = pad_to_multiple(h, 2 ** (len(self.unet.config.block_out_channels) - 1))
        out = self.unet(h.to(p.dtype), self.timesteps(t).to(p.dtype)).sample
        return (crop(out) if crop else out).to(x.dtype)

    def config_dict(self) -> dict:
        return {
            "format": FORMAT, "version": 1,
            "unet": {k: v for k, v in dict(self.unet.config).items() if not k.startswith("_")},
            "schedule": self.schedule.to_dict(), "prediction": self.prediction,
            "time_input": self.time_input, "input_scaling": self.input_scaling,
            "image_size": self.image_size, "channels": self.channels,
            "data_range": [-1.0, 1.0], **self.meta,
        }


def save_folder(folder, state_dict: dict, config: dict) -> Path:
    """Write ``folder/model.safetensors`` + ``folder/config.json``, each atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    tmp = folder / ".model.safetensors.tmp"
    save_file(sd, str(tmp))
    os.replace(tmp, folder / "model.safetensors")
    tmp = folder / ".config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2, default=list))
    os.replace(tmp, folder / "config.json")
    return folder


def save_model(model: UNetDenoiser, folder, state_dict: dict | None = None) -> Path:
    """Save a model folder (EMA weights may be given as ``state_dict``)."""
    sd = state_dict if state_dict is not None else model.unet.state_dict()
    return save_folder(folder, sd, model.config_dict())


def model_from_config(cfg: dict) -> UNetDenoiser:
    """An untrained UNetDenoiser from a ccdf config dict."""
    from diffusers import UNet2DModel

    ucfg = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg["unet"].items()}
    unet = UNet2DModel(**ucfg)
    if int(cfg.get("channels", ucfg.get("out_channels", 3))) < int(ucfg.get("out_channels", 3)):
        from .adm import EpsOnly  # a learn_sigma (ADM) network: keep the eps channels

        unet = EpsOnly(unet, int(cfg["channels"]))
    meta = {k: v for k, v in cfg.items()
            if k in ("trained_on", "extra", "command", "condition", "any_size", "patch", "complex")}
    return UNetDenoiser(unet, schedule_from_dict(cfg["schedule"]), cfg.get("prediction", "eps"),
                        cfg.get("time_input", "t1000"), cfg.get("input_scaling", True), meta)


def _load_ccdf_folder(folder: Path) -> UNetDenoiser:
    from safetensors.torch import load_file

    cfg = json.loads((folder / "config.json").read_text())
    model = model_from_config(cfg)
    sd = load_file(str(folder / "model.safetensors"))
    model.unet.load_state_dict(sd, strict=True)
    return model.eval()


def _schedule_from_diffusers(sched_cfg: dict):
    """Map a diffusers scheduler config (DDPM/DDIM or ScoreSdeVe) to (schedule, prediction, time)."""
    cls = sched_cfg.get("_class_name", "DDPMScheduler")
    if cls == "ScoreSdeVeScheduler":
        return VESchedule(sched_cfg.get("sigma_min", 0.01), sched_cfg.get("sigma_max", 1348.0)), \
            "score", "sigma"
    k = int(sched_cfg.get("num_train_timesteps", 1000))
    kind = sched_cfg.get("beta_schedule", "linear")
    b0, b1 = sched_cfg.get("beta_start", 1e-4), sched_cfg.get("beta_end", 0.02)
    if sched_cfg.get("trained_betas"):
        betas = torch.tensor(sched_cfg["trained_betas"], dtype=torch.float64)
    elif kind == "linear":
        betas = torch.linspace(b0, b1, k, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(b0**0.5, b1**0.5, k, dtype=torch.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        import math
        f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f((i + 1) / k) / f(i / k), 0.999) for i in range(k)],
                             dtype=torch.float64)
    else:
        raise ValueError(f"unsupported diffusers beta_schedule {kind!r}")
    table = tuple(torch.cumprod(1 - betas, 0).tolist())
    pred = {"epsilon": "eps", "sample": "x0"}.get(sched_cfg.get("prediction_type", "epsilon"))
    if pred is None:
        raise ValueError(f"unsupported prediction_type {sched_cfg.get('prediction_type')!r}"
                         " (epsilon or sample)")
    return VPSchedule(beta="table", table=table), pred, "discrete"


def _load_diffusers_folder(folder: Path) -> UNetDenoiser:
    from diffusers import UNet2DModel

    unet_dir = folder / "unet" if (folder / "unet" / "config.json").exists() else folder
    sched_file = None
    for cand in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        if cand.exists():
            sched_file = cand
    sched_cfg = json.loads(sched_file.read_text()) if sched_file else {}
    ucfg = json.loads((unet_dir / "config.json").read_text())
    if not sched_file and ucfg.get("time_embedding_type") == "fourier":
        sched_cfg = {"_class_name": "ScoreSdeVeScheduler"}
    unet = UNet2DModel.from_pretrained(str(unet_dir), local_files_only=True)
    schedule, pred, tin = _schedule_from_diffusers(sched_cfg)
    return UNetDenoiser(unet, schedule, pred, tin, input_scaling=False,
                        meta={"trained_on": f"diffusers folder {folder}"}).eval()


def load_model(path) -> UNetDenoiser:
    """Load a model from a local path: a ccdf folder, a diffusers folder, or an ADM .pt file.

    Nothing is downloaded.  Pickled checkpoints are read with ``weights_only=True``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path does not exist: {path}")
    model = _load(path)
    model.source = path  # where ``autot0.json`` (the auto-t0 calibration) is looked for
    return model


def _load(path: Path) -> UNetDenoiser:
    if path.is_dir():
        cfg_file = path / "config.json"
        if cfg_file.exists():
            cfg = json.loads(cfg_file.read_text())
            if cfg.get("format") == FORMAT:
                return _load_ccdf_folder(path)
        if cfg_file.exists() or (path / "unet" / "config.json").exists():
            return _load_diffusers_folder(path)
        raise ValueError(f"{path} is neither a ccdf model folder nor a diffusers UNet2DModel folder")
    if path.suffix in (".pt", ".pth", ".ckpt"):
        from .adm import load_adm_checkpoint

        return load_adm_checkpoint(path)
    raise ValueError(f"unrecognised model file {path} (expected a folder or a .pt/.pth file)")
