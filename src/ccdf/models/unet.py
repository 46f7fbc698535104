"""Networks wrapped to the denoiser contract, their folder format, and ``load_model``.

A saved model is a folder holding ``model.safetensors`` (weights) and ``config.json``:
``{"format": "ccdf-model", "unet": <UNet2DModel config>, "schedule": {...},
"prediction": "eps", "time_input": "t1000", "input_scaling": true, "image_size": 32,
"channels": 1, "data_range": [-1, 1], "trained_on": "...", "extra": {...}}``; a port of
another family's network (``ARCHS``: ADM, NCSN++) has ``"arch": "adm", "net": {...}`` in
place of ``"unet"`` and keeps its original state-dict keys.  ``load_model`` also reads
diffusers folders (their scheduler settings: ``diffusers_settings``), guided-diffusion
``.pt`` (``adm``) and score_sde ``.pth`` (``score_sde``) checkpoints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from ..schedules import VESchedule, VPSchedule, schedule_from_dict

FORMAT = "ccdf-model"
TIME_INPUTS = ("t1000", "t999", "discrete", "discrete_rescaled", "sigma", "ve_index")


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
    """``model(x_t, t)`` on a network (the contract of ``models.denoiser``).

    unet: a diffusers UNet2DModel, or one of ccdf's faithful ports of other families'
    networks (``ARCHS``: ADM, NCSN++/DDPM++), maybe in ``adm.EpsOnly``.
    time_input: what the network is fed as its timestep
      't1000'      1000 t (models trained by ccdf),
      't999'       999 t (score_sde's continuous VP models),
      'discrete'   K t - 1 for a K-step discrete DDPM checkpoint (an integer on a spaced grid),
      'discrete_rescaled'  (K t - 1) 1000 / K (guided-diffusion's rescale_timesteps),
      'sigma'      sigma(t) for VE score models (diffusers' NCSN++, score_sde continuous VE),
      've_index'   round((1 - t)(num_scales - 1)): score_sde's discrete VE (SMLD) label.
    input_scaling: divide x_t by sqrt(a^2 + b^2) before the network (EDM's c_in; 1 for VP).
    data_range, clip_x0: see ``models.denoiser``; variance: the ancestral sampler's variance
    ('small' posterior / 'large' beta), None for the sampler's default.
    class_label: the label a class-conditional network gets when a call passes none.
    """

    def __init__(self, unet: nn.Module, schedule, prediction: str = "eps",
                 time_input: str = "t1000", input_scaling: bool = True, meta: dict | None = None,
                 data_range=(-1.0, 1.0), clip_x0=None, variance: str | None = None,
                 num_scales: int | None = None, class_label: int | None = None):
        super().__init__()
        if time_input not in TIME_INPUTS:
            raise ValueError(f"time_input must be one of {TIME_INPUTS}, got {time_input!r}")
        if time_input == "ve_index" and not num_scales:
            raise ValueError("time_input 've_index' needs num_scales")
        self.unet = unet
        self.schedule = schedule
        self.prediction = prediction
        self.time_input = time_input
        self.input_scaling = input_scaling
        self.meta = dict(meta or {})
        self.data_range = (float(data_range[0]), float(data_range[1]))
        self.clip_x0 = None if clip_x0 is None else (float(clip_x0[0]), float(clip_x0[1]))
        self.variance = variance
        self.num_scales = None if num_scales is None else int(num_scales)
        self.class_label = class_label

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
        s = getattr(self.unet, "image_size", None)
        if s is None:
            s = self.unet.config.sample_size
        return int(s[0] if isinstance(s, (tuple, list)) else s)

    @property
    def channels(self) -> int:
        # a learn_sigma network wrapped in ``adm.EpsOnly`` returns only ``eps_channels``
        v = getattr(self.unet, "eps_channels", None)
        if v is None and "out_channels" in self.unet.__dict__:  # ccdf's ports of other nets
            v = self.unet.out_channels
        return int(v if v is not None else self.unet.config.out_channels)

    @property
    def num_classes(self) -> int | None:
        """Classes of a class-conditional network (None: unconditional)."""
        n = getattr(self.unet, "num_classes", None)
        if n is None and hasattr(self.unet, "config") and "num_class_embeds" in self.unet.config:
            n = self.unet.config.num_class_embeds
        return None if n is None else int(n)

    def timesteps(self, t: Tensor) -> Tensor:
        if self.time_input == "t1000":
            return 1000.0 * t
        if self.time_input == "t999":
            return 999.0 * t
        if self.time_input in ("discrete", "discrete_rescaled"):
            k = len(self.schedule.table)
            s = (k * t - 1).clamp_min(0)
            s = torch.where((s - s.round()).abs() < 1e-6, s.round(), s)  # a spaced grid's steps
            return s * (1000.0 / k) if self.time_input == "discrete_rescaled" else s
        if self.time_input == "ve_index":
            return ((1 - t) * (self.num_scales - 1)).round()
        return (self.schedule.b(t) ** 2 + self.schedule.sigma_min**2).sqrt()

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None,
                class_labels: Tensor | None = None) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).expand(x.shape[0])
        p = next(self.unet.parameters())
        h = x
        if self.input_scaling:
            c = (self.schedule.a(t) ** 2 + self.schedule.b(t) ** 2).rsqrt()
            h = h * c.to(x.dtype).reshape(-1, 1, 1, 1)
        if cond is not None:
            h = torch.cat([h, cond], 1)
        kw = {}
        if self.num_classes is not None:
            if class_labels is None and self.class_label is None:
                raise ValueError(f"this model is class-conditional ({self.num_classes} classes): "
                                 "give a class label (--class-label N)")
            if class_labels is None:
                class_labels = torch.full((x.shape[0],), int(self.class_label))
            kw["class_labels"] = torch.as_tensor(class_labels, device=x.device).reshape(-1) \
                .expand(x.shape[0]).long()
        elif class_labels is not None:
            raise ValueError("this model is not class-conditional: it takes no class label")
        crop = None
        if self.any_size:  # reflect-pad to a multiple of the UNet's total downsampling
            h, crop = pad_to_multiple(h, 2 ** (len(self.unet.config.block_out_channels) - 1))
        out = self.unet(h.to(p.dtype), self.timesteps(t).to(p.dtype), **kw)
        out = getattr(out, "sample", out)
        return (crop(out) if crop else out).to(x.dtype)

    def config_dict(self) -> dict:
        net = getattr(self.unet, "unet", self.unet)  # inside EpsOnly
        arch = next((a for a, (mod, cls) in ARCHS.items() if type(net).__name__ == cls), None)
        if arch is None:
            body = {"unet": {k: v for k, v in dict(net.config).items() if not k.startswith("_")}}
        else:
            body = {"arch": arch, "net": net.config_dict()}
        extra = {k: v for k, v in (("clip_x0", self.clip_x0 and list(self.clip_x0)),
                                   ("variance", self.variance), ("num_scales", self.num_scales))
                 if v is not None}
        return {
            "format": FORMAT, "version": 1, **body,
            "schedule": self.schedule.to_dict(), "prediction": self.prediction,
            "time_input": self.time_input, "input_scaling": self.input_scaling,
            "image_size": self.image_size, "channels": self.channels,
            "data_range": list(self.data_range), **extra,
            **{k: v for k, v in self.meta.items() if k != "weights_dtype"},
        }


#: ccdf's ports of other families' networks: arch name -> (module, class); the class takes
#: ``**config_dict()`` and its state dict keys are the original's.
ARCHS = {"adm": ("ccdf.models.adm", "ADMUNet"), "ncsnpp": ("ccdf.models.ncsnpp", "NCSNpp")}


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


META_KEYS = ("trained_on", "extra", "command", "condition", "family", "architecture",
             "assumed", "settings_from", "weights_dtype", "any_size", "patch", "complex")


def model_from_config(cfg: dict) -> UNetDenoiser:
    """An untrained UNetDenoiser from a ccdf config dict."""
    import importlib

    if cfg.get("arch"):
        if cfg["arch"] not in ARCHS:
            raise ValueError(f"unknown network arch {cfg['arch']!r} (known: {', '.join(ARCHS)})")
        mod, cls = ARCHS[cfg["arch"]]
        unet = getattr(importlib.import_module(mod), cls)(**cfg["net"])
        out_ch = int(unet.out_channels)
    else:
        from diffusers import UNet2DModel

        ucfg = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg["unet"].items()}
        unet = UNet2DModel(**ucfg)
        out_ch = int(ucfg.get("out_channels", 3))
    if int(cfg.get("channels", out_ch)) < out_ch:
        from .adm import EpsOnly  # a learn_sigma (ADM) network: keep the eps channels

        unet = EpsOnly(unet, int(cfg["channels"]))
    meta = {k: v for k, v in cfg.items() if k in META_KEYS}
    return UNetDenoiser(unet, schedule_from_dict(cfg["schedule"]), cfg.get("prediction", "eps"),
                        cfg.get("time_input", "t1000"), cfg.get("input_scaling", True), meta,
                        data_range=cfg.get("data_range", (-1.0, 1.0)), clip_x0=cfg.get("clip_x0"),
                        variance=cfg.get("variance"), num_scales=cfg.get("num_scales"))


def _load_ccdf_folder(folder: Path) -> UNetDenoiser:
    from safetensors.torch import load_file

    cfg = json.loads((folder / "config.json").read_text())
    model = model_from_config(cfg)
    sd = load_file(str(folder / "model.safetensors"))
    model.unet.load_state_dict(sd, strict=True)
    model.meta["weights_dtype"] = ",".join(sorted({str(v.dtype).replace("torch.", "")
                                                   for v in sd.values()}))
    return model.eval()


def _diffusers_table(c: dict, name: str) -> tuple:
    """alphas_cumprod (float64) of a DDPM/DDIM scheduler config."""
    import math

    k = int(c.get("num_train_timesteps", 1000))
    kind = c.get("beta_schedule", "linear")
    b0, b1 = float(c.get("beta_start", 1e-4)), float(c.get("beta_end", 0.02))
    if c.get("trained_betas"):
        betas = torch.tensor(c["trained_betas"], dtype=torch.float64)
    elif kind == "linear":
        betas = torch.linspace(b0, b1, k, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(b0**0.5, b1**0.5, k, dtype=torch.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f((i + 1) / k) / f(i / k), 0.999) for i in range(k)],
                             dtype=torch.float64)
    else:
        raise ValueError(f"{name}: beta_schedule {kind!r} is not supported (linear, "
                         "scaled_linear, squaredcos_cap_v2, trained_betas)")
    return tuple(torch.cumprod(1 - betas, 0).tolist())


#: diffusers' scheduler defaults for keys a config file may omit (DDPMScheduler / DDIMScheduler)
_SCHED_DEFAULTS = {"timestep_spacing": "leading", "steps_offset": 0, "clip_sample": True,
                   "clip_sample_range": 1.0, "prediction_type": "epsilon",
                   "variance_type": "fixed_small", "thresholding": False,
                   "rescale_betas_zero_snr": False, "set_alpha_to_one": True}


def diffusers_settings(sched_cfg: dict, name: str = "scheduler") -> dict:
    """A diffusers scheduler config -> UNetDenoiser keyword arguments + notes.

    DDPM/DDIM: alphas_cumprod table, the grid on training steps with the config's
    ``timestep_spacing`` and ``steps_offset``, ``prediction_type`` (epsilon, sample,
    v_prediction), ``clip_sample`` (x0 clamped to +-clip_sample_range), ``variance_type``
    (fixed_small / fixed_small_log: posterior variance, fixed_large / fixed_large_log: beta;
    learned / learned_range: the variance channels are dropped and the posterior variance
    used); ``thresholding`` and ``rescale_betas_zero_snr`` are refused.  Keys left out take
    diffusers' defaults.  ScoreSdeVe: VE sigma_min..sigma_max, score prediction, sigma input,
    data in [0, 1] (as ``ScoreSdeVePipeline`` samples it)."""
    cls = sched_cfg.get("_class_name", "DDPMScheduler")
    notes: list = []
    if cls == "ScoreSdeVeScheduler":
        return {"schedule": VESchedule(float(sched_cfg.get("sigma_min", 0.01)),
                                       float(sched_cfg.get("sigma_max", 1348.0))),
                "prediction": "score", "time_input": "sigma", "data_range": (0.0, 1.0),
                "notes": ["data in [0, 1]: ScoreSdeVePipeline's data space"]}
    if cls not in ("DDPMScheduler", "DDIMScheduler"):
        raise ValueError(f"{name}: scheduler {cls} is not supported (DDPMScheduler, "
                         "DDIMScheduler, ScoreSdeVeScheduler)")
    c = dict(_SCHED_DEFAULTS)
    c.update({k: v for k, v in sched_cfg.items() if v is not None})
    for key in _SCHED_DEFAULTS:
        if key not in sched_cfg:
            notes.append(f"{key} = {c[key]} (diffusers' default: not in the scheduler config)")
    if c["thresholding"]:
        raise ValueError(f"{name}: thresholding (dynamic thresholding) is not supported")
    if c["rescale_betas_zero_snr"]:
        raise ValueError(f"{name}: rescale_betas_zero_snr is not supported (alpha_bar(1) = 0)")
    pred = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}.get(c["prediction_type"])
    if pred is None:
        raise ValueError(f"{name}: prediction_type {c['prediction_type']!r} is not supported "
                         "(epsilon, sample, v_prediction)")
    variance = {"fixed_small": "small", "fixed_small_log": "small", "fixed_large": "large",
                "fixed_large_log": "large", "learned": "small", "learned_range": "small"}
    vt = c.get("variance_type", "fixed_small") if cls == "DDPMScheduler" else "fixed_small"
    if vt not in variance:
        raise ValueError(f"{name}: variance_type {vt!r} is not supported")
    if vt in ("learned", "learned_range"):
        notes.append(f"variance_type {vt}: the learned variance channels are dropped; DDPM steps "
                     "use the posterior variance")
    if cls == "DDIMScheduler" and not c["set_alpha_to_one"]:
        notes.append("set_alpha_to_one = False: ccdf's last step still returns the denoised x0 "
                     "(alpha_bar = 1), as with set_alpha_to_one = True")
    spacing = c["timestep_spacing"]
    if spacing not in ("leading", "trailing", "linspace"):
        raise ValueError(f"{name}: timestep_spacing {spacing!r} is not supported (leading, "
                         "trailing, linspace)")
    table = _diffusers_table(c, name)
    return {"schedule": VPSchedule(beta="table", table=table, spacing=spacing,
                                   steps_offset=int(c["steps_offset"])),
            "prediction": pred, "time_input": "discrete", "data_range": (-1.0, 1.0),
            "clip_x0": (-float(c["clip_sample_range"]), float(c["clip_sample_range"]))
            if c["clip_sample"] else None,
            "variance": variance[vt], "learned_variance": vt in ("learned", "learned_range"),
            "notes": notes}


def _load_diffusers_folder(folder: Path) -> UNetDenoiser:
    from diffusers import UNet2DModel

    unet_dir = folder / "unet" if (folder / "unet" / "config.json").exists() else folder
    sched_file = None
    for cand in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        if cand.exists():
            sched_file = cand
    sched_cfg = json.loads(sched_file.read_text()) if sched_file else {}
    ucfg = json.loads((unet_dir / "config.json").read_text())
    assumed = []
    if not sched_file:
        if ucfg.get("time_embedding_type") == "fourier":
            sched_cfg = {"_class_name": "ScoreSdeVeScheduler"}
            assumed.append("no scheduler config: ScoreSdeVeScheduler defaults (fourier "
                           "time embedding)")
        else:
            assumed.append("no scheduler config: DDPMScheduler defaults")
    if ucfg.get("class_embed_type") is not None:
        raise ValueError(f"{unet_dir}: class_embed_type {ucfg['class_embed_type']!r} is not "
                         "supported (only num_class_embeds labels)")
    st = diffusers_settings(sched_cfg, str(sched_file or folder))
    unet = UNet2DModel.from_pretrained(str(unet_dir), local_files_only=True)
    in_ch, out_ch = int(unet.config.in_channels), int(unet.config.out_channels)
    net = unet
    if out_ch == 2 * in_ch and st.get("learned_variance"):
        from .adm import EpsOnly

        net = EpsOnly(unet, in_ch)
    elif out_ch != in_ch:
        raise ValueError(f"{unet_dir}: the UNet maps {in_ch} to {out_ch} channels; a prior "
                         "maps an image to a same-shaped prediction")
    meta = {"trained_on": f"diffusers folder {folder}", "family": "diffusers",
            "architecture": "UNet2DModel", "assumed": assumed + st["notes"],
            "extra": {"scheduler": {k: v for k, v in sched_cfg.items()
                                    if not isinstance(v, list)}}}
    return UNetDenoiser(net, st["schedule"], st["prediction"], st["time_input"],
                        input_scaling=False, meta=meta, data_range=st["data_range"],
                        clip_x0=st.get("clip_x0"), variance=st.get("variance")).eval()


def _schedule_summary(s) -> dict:
    d = {"kind": s.kind}
    if s.kind == "ve":
        d.update(sigma_min=s.sigma_min, sigma_max=s.sigma_max)
    elif s.beta == "table":
        d.update(beta="discrete", training_steps=len(s.table),
                 alpha_bar_last=float(f"{s.table[-1]:.4g}"))
        if s.spacing:
            d.update(spacing=s.spacing, steps_offset=s.steps_offset)
    elif s.beta == "linear":
        d.update(beta="linear", beta_min=s.beta_min, beta_max=s.beta_max)
    else:
        d.update(beta=s.beta)
    return d


def describe(model) -> dict:
    """What was loaded and what was assumed (``ccdf inspect``): a JSON-able dict."""
    meta = getattr(model, "meta", {}) or {}
    net = getattr(model.unet, "unet", model.unet)
    n = model.num_classes
    arch = meta.get("architecture") or type(net).__name__
    return {
        "path": str(getattr(model, "source", "")),
        "family": meta.get("family") or ("ccdf" if "command" in meta or "trained_on" in meta
                                         else "unknown"),
        "architecture": arch,
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "weights_dtype": meta.get("weights_dtype") or str(next(net.parameters()).dtype)
        .replace("torch.", ""),
        "image_size": model.image_size, "channels": model.channels,
        "schedule": _schedule_summary(model.schedule),
        "prediction": model.prediction, "time_input": model.time_input,
        "data_range": list(model.data_range),
        "x0_clip": list(model.clip_x0) if model.clip_x0 else "none",
        "ddpm_variance": model.variance or "small (posterior)",
        "conditioning": "none" if n is None else
        f"class label 0..{n - 1}" + (f" (given: {model.class_label})"
                                     if model.class_label is not None else " (required)"),
        "trained_on": meta.get("trained_on", ""),
        "settings_from": meta.get("settings_from") or [],
        "assumed": list(meta.get("assumed") or []),
    }


def read_checkpoint(path: Path):
    """torch.load(weights_only=True): tensors, containers and numbers only, never code."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"refusing to load {path}: it holds pickled objects other than tensors, "
                         f"containers and numbers ({str(e).splitlines()[0][:120]}); pickled "
                         "code is never executed") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"cannot read {path} as a torch checkpoint: {e}") from None


def read_state_dict(path: Path) -> dict:
    """A flat {name: tensor} checkpoint (refuses anything else, see ``read_checkpoint``)."""
    sd = read_checkpoint(path)
    if not isinstance(sd, dict) or not sd or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise ValueError(f"{path} is not a flat state dict of tensors")
    return sd


def load_model(path, config=(), **kwargs) -> UNetDenoiser:
    """Load a model from a local path: a ccdf folder, a diffusers folder, a guided-diffusion
    (ADM) ``.pt`` state dict or a score_sde / score-MRI ``.pth`` checkpoint.

    config: settings sources for checkpoints whose weights do not tell everything (ADM: a
    flags string or YAML/JSON files; score_sde: its Python config file or a JSON); default:
    sidecar files beside the checkpoint.  kwargs go to the family's loader (ADM: settings
    by name; score_sde: ``ema=False`` for the raw weights).  Nothing is downloaded;
    checkpoints are read with ``weights_only=True``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path does not exist: {path}")
    model = _load(path, tuple(config) if not isinstance(config, (str, dict)) else (config,),
                  kwargs)
    model.source = path  # where ``autot0.json`` (the auto-t0 calibration) is looked for
    return model


def _load(path: Path, config: tuple, kwargs: dict) -> UNetDenoiser:
    if path.is_dir():
        if config or kwargs:
            raise ValueError(f"{path} is a model folder: its settings are in it (no --model-config)")
        cfg_file = path / "config.json"
        if cfg_file.exists():
            cfg = json.loads(cfg_file.read_text())
            if cfg.get("format") == FORMAT:
                return _load_ccdf_folder(path)
        if cfg_file.exists() or (path / "unet" / "config.json").exists():
            return _load_diffusers_folder(path)
        raise ValueError(f"{path} is neither a ccdf model folder nor a diffusers UNet2DModel folder")
    if path.suffix in (".pt", ".pth", ".ckpt", ".bin"):
        ckpt = read_checkpoint(path)
        if isinstance(ckpt, dict) and ("model" in ckpt or "ema" in ckpt) and \
                not all(isinstance(v, Tensor) for v in ckpt.values()):
            from .score_sde import load_score_sde

            return load_score_sde(path, config, checkpoint=ckpt, **kwargs)
        if isinstance(ckpt, dict) and ckpt and all(isinstance(k, str) and isinstance(v, Tensor)
                                                   for k, v in ckpt.items()):
            from .adm import load_adm_checkpoint

            return load_adm_checkpoint(path, config, state_dict=ckpt, **kwargs)
        raise ValueError(f"{path}: neither a guided-diffusion state dict (name -> tensor) nor a "
                         "score_sde checkpoint ({'model', 'ema', 'optimizer', 'step'})")
    raise ValueError(f"unrecognised model file {path} (expected a folder or a .pt/.pth file)")
