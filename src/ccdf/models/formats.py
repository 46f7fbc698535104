"""Model files of every family: what a path holds, how it is read and how it is written.

Families (``family(path)``):

* ``ccdf``: a ccdf model folder, ``model.safetensors`` + ``config.json`` with
  ``"format": "ccdf-model"`` (``UNetDenoiser.config_dict``): a diffusers UNet2DModel config
  (``"unet"``) or a port of another family's network (``"arch"``: ``ARCHS``, ``"net"``);
* ``diffusers``: a diffusers folder (``unet/`` + ``scheduler/``, or a bare UNet2DModel
  folder); its scheduler settings: ``diffusers_settings``;
* ``adm``: a guided-diffusion ``.pt`` state dict (``models.adm``);
* ``score_sde``: a score_sde / score-MRI ``.pth`` checkpoint {'model', 'ema', 'optimizer',
  'step'} (``models.score_sde``);
* ``ccdf-restorer``: a restoration network folder (``models.restorer``,
  ``models.mri_restorer``);
* ``ccdf-classifier``: the feature classifier of ``ccdf.fid`` (``models.classifier``).

``load_model`` loads a diffusion prior of the first four; ``load_restorer`` and
``load_classifier`` the others; ``save_model`` / ``save_restorer`` / ``save_classifier``
write folders (``io.write_model_folder``).  Nothing is downloaded; checkpoints are read with
``weights_only=True`` (``io.read_checkpoint``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from .. import io
from ..schedules import VESchedule, VPSchedule, schedule_from_dict
from . import mri_restorer
from .adm import ADMUNet, load_adm_checkpoint
from .classifier import FORMAT as CLASSIFIER_FORMAT
from .classifier import FashionClassifier
from .ncsnpp import NCSNpp
from .restorer import FORMAT as RESTORER_FORMAT
from .restorer import Restorer
from .score_sde import load_score_sde
from .unet import FORMAT, EpsOnly, UNetDenoiser

#: ccdf's ports of other families' networks: a config's "arch" -> the class; it takes
#: ``**config_dict()`` and its state dict keys are the original's.
ARCHS = {cls.arch: cls for cls in (ADMUNet, NCSNpp)}
#: a ccdf folder's config "format" -> its family
FOLDER_FAMILIES = {FORMAT: "ccdf", RESTORER_FORMAT: "ccdf-restorer",
                   CLASSIFIER_FORMAT: "ccdf-classifier"}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
PRIORS = ("ccdf", "diffusers", "adm", "score_sde")


# ----------------------------------------------------------------------------- families
def family(path) -> str:
    """Which family's file ``path`` is (see the module docstring); ValueError if none."""
    return _detect(Path(path))[0]


def _detect(path: Path) -> tuple[str, object]:
    """(family, the checkpoint read to tell it, or None for a folder)."""
    if path.is_dir():
        cfg_file = path / io.CONFIG
        if cfg_file.exists():
            cfg = io.read_json(cfg_file)
            fmt = cfg.get("format") if isinstance(cfg, dict) else None
            if fmt in FOLDER_FAMILIES:
                return FOLDER_FAMILIES[fmt], None
        if cfg_file.exists() or (path / "unet" / io.CONFIG).exists():
            return "diffusers", None
        raise ValueError(f"{path} is neither a ccdf model folder nor a diffusers UNet2DModel folder")
    if path.suffix in CHECKPOINT_SUFFIXES:
        ckpt = io.read_checkpoint(path)
        if isinstance(ckpt, dict) and ("model" in ckpt or "ema" in ckpt) and \
                not all(isinstance(v, Tensor) for v in ckpt.values()):
            return "score_sde", ckpt
        if isinstance(ckpt, dict) and ckpt and all(isinstance(k, str) and isinstance(v, Tensor)
                                                   for k, v in ckpt.items()):
            return "adm", ckpt
        raise ValueError(f"{path}: neither a guided-diffusion state dict (name -> tensor) nor a "
                         "score_sde checkpoint ({'model', 'ema', 'optimizer', 'step'})")
    raise ValueError(f"unrecognised model file {path} (expected a folder or a .pt/.pth file)")


def load_model(path, config=(), **kwargs) -> UNetDenoiser:
    """Load a diffusion prior from a local path: a ccdf folder, a diffusers folder, a
    guided-diffusion (ADM) ``.pt`` state dict or a score_sde / score-MRI ``.pth`` checkpoint.

    config: settings sources for checkpoints whose weights do not tell everything (ADM: a
    flags string or YAML/JSON files; score_sde: its Python config file or a JSON); default:
    sidecar files beside the checkpoint.  kwargs go to the family's loader (ADM: settings
    by name; score_sde: ``ema=False`` for the raw weights).  Nothing is downloaded;
    checkpoints are read with ``weights_only=True``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path does not exist: {path}")
    config = tuple(config) if not isinstance(config, (str, dict)) else (config,)
    if path.is_dir() and (config or kwargs):
        raise ValueError(f"{path} is a model folder: its settings are in it (no --model-config)")
    kind, ckpt = _detect(path)
    if kind == "ccdf":
        model = load_ccdf_folder(path)
    elif kind == "diffusers":
        model = load_diffusers_folder(path)
    elif kind == "adm":
        model = load_adm_checkpoint(path, config, state_dict=ckpt, **kwargs)
    elif kind == "score_sde":
        model = load_score_sde(path, config, checkpoint=ckpt, **kwargs)
    else:
        raise ValueError(f"{path} is a {kind} folder, not a diffusion prior (a prior is one of: "
                         f"{', '.join(PRIORS)})")
    model.source = path  # where ``autot0.json`` (the auto-t0 calibration) is looked for
    return model


def save_model(model, folder, state_dict: dict | None = None) -> Path:
    """Save a prior (or a restoration network) as a folder: its ``config_dict()`` and its
    network's weights (EMA weights may be given as ``state_dict``)."""
    sd = state_dict if state_dict is not None else model.unet.state_dict()
    return io.write_model_folder(folder, sd, model.config_dict())


save_restorer = save_model  # the same folder; its config says "format": "ccdf-restorer"


def unet2d(ucfg: dict):
    """An untrained diffusers UNet2DModel from its config (lists read back as tuples)."""
    from diffusers import UNet2DModel  # slow to import: only where a diffusers net is built

    return UNet2DModel(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in ucfg.items()})


# ----------------------------------------------------------------------------- ccdf priors
META_KEYS = ("trained_on", "extra", "command", "condition", "family", "architecture",
             "assumed", "settings_from", "weights_dtype", "any_size", "patch", "complex")


def model_from_config(cfg: dict) -> UNetDenoiser:
    """An untrained UNetDenoiser from a ccdf config dict (``UNetDenoiser.config_dict``)."""
    if cfg.get("arch"):
        if cfg["arch"] not in ARCHS:
            raise ValueError(f"unknown network arch {cfg['arch']!r} (known: {', '.join(ARCHS)})")
        unet = ARCHS[cfg["arch"]](**cfg["net"])
        out_ch = int(unet.out_channels)
    else:
        unet = unet2d(cfg["unet"])
        out_ch = int(unet.config.out_channels)
    if int(cfg.get("channels", out_ch)) < out_ch:  # a learn_sigma (ADM) network: eps channels
        unet = EpsOnly(unet, int(cfg["channels"]))
    meta = {k: v for k, v in cfg.items() if k in META_KEYS}
    return UNetDenoiser(unet, schedule_from_dict(cfg["schedule"]), cfg.get("prediction", "eps"),
                        cfg.get("time_input", "t1000"), cfg.get("input_scaling", True), meta,
                        data_range=cfg.get("data_range", (-1.0, 1.0)), clip_x0=cfg.get("clip_x0"),
                        variance=cfg.get("variance"), num_scales=cfg.get("num_scales"))


def load_ccdf_folder(folder: Path) -> UNetDenoiser:
    """A ccdf model folder (``save_model``) as a UNetDenoiser in eval mode."""
    cfg, sd = io.read_model_folder(folder)
    model = model_from_config(cfg)
    model.unet.load_state_dict(sd, strict=True)
    model.meta["weights_dtype"] = ",".join(sorted({str(v.dtype).replace("torch.", "")
                                                   for v in sd.values()}))
    return model.eval()


# ----------------------------------------------------------------------------- diffusers
def _diffusers_table(c: dict, name: str) -> tuple:
    """alphas_cumprod (float64) of a DDPM/DDIM scheduler config."""
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


def load_diffusers_folder(folder: Path) -> UNetDenoiser:
    """A diffusers folder (``unet/`` + ``scheduler/``, or a bare UNet2DModel folder) with
    the settings of its scheduler config (``diffusers_settings``)."""
    from diffusers import UNet2DModel  # slow to import: only where a diffusers net is built

    unet_dir = folder / "unet" if (folder / "unet" / io.CONFIG).exists() else folder
    sched_file = None
    for cand in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        if cand.exists():
            sched_file = cand
    sched_cfg = io.read_json(sched_file) if sched_file else {}
    ucfg = io.read_json(unet_dir / io.CONFIG)
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


# ----------------------------------------------------------------------------- what was loaded
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


# ----------------------------------------------------------------------------- restorers
def _read_folder(folder: Path, fmt: str, what: str) -> tuple[dict, dict]:
    """(config, state dict) of a ccdf folder whose config says ``"format": fmt``; one-line
    errors naming ``what`` when the config is missing or of another format."""
    if not (folder / io.CONFIG).exists():
        raise FileNotFoundError(f"no {what} at {folder} (config.json missing)")
    cfg = io.read_json(folder / io.CONFIG)
    if cfg.get("format") != fmt:
        raise ValueError(f"{folder} is not a ccdf {what} (format {cfg.get('format')!r})")
    return cfg, io.read_weights(folder / io.WEIGHTS)


def load_restorer(folder) -> Restorer:
    """A restoration network folder (``save_restorer``): a Restorer, or an MRIRestorer for
    ``"kind": "mri-unrolled"``."""
    folder = Path(folder)
    cfg, sd = _read_folder(folder, RESTORER_FORMAT, "restoration network")
    unet = unet2d(cfg["unet"])
    unet.load_state_dict(sd, strict=True)
    meta = {k: v for k, v in cfg.items()
            if k not in ("format", "version", "unet", "task", "kind", "iters")}
    if cfg.get("kind") == mri_restorer.KIND:
        net = mri_restorer.MRIRestorer(unet, cfg.get("iters", 3), meta).eval()
    else:
        net = Restorer(unet, cfg["task"], meta).eval()
    net.source = folder  # names the start in the auto-t0 calibration (``autot0.start_key``)
    return net


# ----------------------------------------------------------------------------- classifier
def save_classifier(net: FashionClassifier, folder, state_dict: dict | None = None,
                    **meta) -> Path:
    """A feature classifier folder; ``meta`` (trained_on, test_accuracy ...) goes into its
    config.json."""
    sd = state_dict if state_dict is not None else net.state_dict()
    return io.write_model_folder(folder, sd, {"format": CLASSIFIER_FORMAT, "version": 1,
                                              "classes": net.head.out_features, **meta})


def load_classifier(folder) -> FashionClassifier:
    cfg, sd = _read_folder(Path(folder), CLASSIFIER_FORMAT, "feature classifier")
    net = FashionClassifier(cfg.get("classes", 10))
    net.load_state_dict(sd)
    return net.eval()
