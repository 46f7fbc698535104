"""Run settings of ``ccdf solve``: the config, its checks, per-item seeds, and the models."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..assets import CS_KINDS, TASKS, asset_path, default_prior, default_restorer, has_asset, parse_t0

INPUT_KINDS = ("clean", "measurement")
#: --batch-size bound: a batch holds the tensors of all its items at once
MAX_BATCH = 256
#: --sigma-y bound: a noise std above the whole [0, 1] data range leaves nothing to measure
MAX_SIGMA_Y = 1.0


@dataclass
class SolveConfig:
    """Everything ``solve`` needs.  ``task`` is e.g. {"task": "sr", "factor": 4, "kernel": "avg"},
    {"task": "inpaint", "mask": "box"} or {"task": "mri", "pattern": "uniform1d", "accel": 4,
    "acs": None, "seed": 0} (the keyword arguments of ``operators.make_operator``)."""

    task: dict
    input: Path
    out: Path
    input_kind: str | None = None      # None: clean for images/NIfTI, measurement for k-space
    model: str = "default"             # "default" (the embedded model for the task) or a path
    init: str = "classic"              # "classic" | "net" | "tv" | "l1wavelet" | a restorer folder
    cs_lambda: float | None = None     # --init tv | l1wavelet: lambda (None: calibrated/default)
    t0: float | str = 0.2              # in (0, 1], or "auto"
    steps: int | None = None           # N; None: 100, or with t0 "auto" the N its start's
                                       # t0 was calibrated at (``autot0.calibrated_steps``)
    sampler: str = "ddpm"
    samples: int = 1
    sigma_y: float = 0.0
    consistency: str | None = None     # a name of ``consistency.CONSISTENCY``; None: the
                                       # operator's default (projection; prox for deblur)
    phase: str = "auto"                # MRI: "start" | "none" | "auto" (``reconstruction.
                                       # phase_operator``)
    seed: int = 0
    batch_size: int = 1
    device: str = "cpu"
    axis: int = 2                      # NIfTI slice axis
    slices: str | None = None          # "A:B[:C]" or "N": which slices of volumes to solve
    overwrite: bool = False            # redo every input (else resume: skip finished ones)
    compile: bool = False              # torch.compile the network
    half: bool = False                 # fp16/bf16 autocast for the network
    coil_maps: str | None = None       # multi-coil .h5: maps file/folder (None: ESPIRiT)
    complex_output: bool = False       # fastMRI outputs: also the complex image
    model_config: tuple = ()           # settings of a checkpoint (ADM flags/YAML, score_sde .py)
    class_label: str | None = None     # class-conditional models: N, or a JSON/CSV name -> N


def item_seed(seed: int, name: str) -> int:
    """A per-item seed from the global seed and the item's name (not its position)."""
    key = f"{seed}:{name}".encode("utf-8", "surrogateescape")  # names need not be UTF-8
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


def parse_slices(spec: str | None) -> slice | None:
    """'A:B', 'A:B:C', ':B', 'N' -> a slice over slice indices (None: all)."""
    if spec is None or spec == "":
        return None
    try:
        parts = [int(p) if p.strip() else None for p in spec.split(":")]
    except ValueError:
        raise ValueError(f"--slices must look like 10:20, 10:20:2 or 15, got {spec!r}") from None
    if len(parts) == 1:
        return slice(parts[0], parts[0] + 1 if parts[0] != -1 else None)
    if len(parts) > 3 or (len(parts) == 3 and parts[2] == 0):
        raise ValueError(f"--slices must look like 10:20, 10:20:2 or 15, got {spec!r}")
    return slice(*parts)


def check_config(cfg: SolveConfig) -> None:
    """Validate the scalar options (one clear ValueError each)."""
    from ..samplers import SAMPLERS

    if cfg.task.get("task") not in TASKS:
        raise ValueError("--task is required (sr, inpaint, mri or deblur)")
    from ..consistency import CONSISTENCY

    if cfg.consistency is not None and cfg.consistency not in CONSISTENCY:
        raise ValueError(f"unknown consistency {cfg.consistency!r}; choose from "
                         f"{', '.join(CONSISTENCY)}")
    from ..reconstruction import PHASES

    if cfg.phase not in PHASES:
        raise ValueError(f"--phase must be one of {', '.join(PHASES)}, got {cfg.phase!r}")
    if cfg.phase == "start" and cfg.task.get("task") != "mri":
        raise ValueError("--phase start is for --task mri")
    parse_t0(cfg.t0)
    if cfg.steps is not None and int(cfg.steps) < 1:
        raise ValueError(f"--steps must be >= 1, got {cfg.steps}")
    if cfg.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {cfg.samples}")
    if not 1 <= cfg.batch_size <= MAX_BATCH:
        raise ValueError(f"--batch-size must be in 1..{MAX_BATCH} (a batch holds the tensors "
                         f"of all its items at once), got {cfg.batch_size}")
    if not (math.isfinite(cfg.sigma_y) and 0 <= cfg.sigma_y <= MAX_SIGMA_Y):
        raise ValueError(f"--sigma-y must be in [0, {MAX_SIGMA_Y:g}] (the noise std on images "
                         f"in [0, 1]), got {cfg.sigma_y:g}")
    if cfg.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {cfg.sampler!r}; choose from {', '.join(SAMPLERS)}")
    if cfg.input_kind not in (None, *INPUT_KINDS):
        raise ValueError(f"--input-kind must be clean or measurement, got {cfg.input_kind!r}")
    if cfg.axis not in (0, 1, 2):
        raise ValueError(f"--axis must be 0, 1 or 2, got {cfg.axis}")
    if cfg.device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {cfg.device!r}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here (torch "
                         f"{torch.__version__}); drop --device cuda to run on the CPU")
    parse_slices(cfg.slices)


def settings(cfg: SolveConfig, task: dict) -> dict:
    """What makes a run's results: resuming into an --out made with other settings is refused.

    Not included: batch size (float rounding only), device, compile, threads."""
    def path_or(spec, keep):
        return spec if spec in keep else str(Path(spec).resolve())

    return {"input": str(Path(cfg.input).resolve()), "task": task,
            "model": path_or(cfg.model, ("default",)),
            "init": path_or(cfg.init, ("classic", "net", *CS_KINDS)),
            **({"cs_lambda": cfg.cs_lambda} if cfg.cs_lambda is not None else {}),
            "t0": parse_t0(cfg.t0), "steps": None if cfg.steps is None else int(cfg.steps),
            "sampler": cfg.sampler, "samples": int(cfg.samples), "sigma_y": float(cfg.sigma_y),
            **({"consistency": cfg.consistency} if cfg.consistency else {}),
            **({"phase": cfg.phase} if task.get("task") == "mri" else {}),
            "seed": int(cfg.seed), "input_kind": cfg.input_kind or "clean", "axis": int(cfg.axis),
            "slices": cfg.slices or None, "half": bool(cfg.half),
            "coil_maps": str(Path(cfg.coil_maps).resolve()) if cfg.coil_maps else None,
            **({"model_config": [str(c) if str(c).lstrip().startswith("--") else
                                 str(Path(c).resolve()) for c in cfg.model_config]}
               if cfg.model_config else {}),
            **({"class_label": cfg.class_label} if cfg.class_label is not None else {})}


# ----------------------------------------------------------------------------- models
def read_class_labels(spec: str | None) -> tuple[int | None, dict | None]:
    """--class-label: (N, None) for one label, (None, {name: N}) for a JSON object or a CSV of
    ``name,label`` lines (names: input file names, their stems, or slice names
    ``vol.npy[3]``), (None, None) without."""
    if spec is None:
        return None, None
    s = str(spec).strip()
    if s.lstrip("-").isdigit():
        return int(s), None
    p = Path(s)
    if not p.is_file():
        raise ValueError(f"--class-label must be an integer or a labels file (.json / .csv), "
                         f"got {spec!r}")
    try:
        if p.suffix.lower() == ".json":
            import json

            d = json.loads(p.read_text())
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
        else:
            d = {}
            for ln in p.read_text().splitlines():
                if ln.strip() and not ln.lstrip().startswith("#"):
                    name, lab = ln.rsplit(",", 1)
                    if lab.strip().lower() != "label":  # a header line
                        d[name.strip()] = lab.strip()
        return None, {str(k): int(v) for k, v in d.items()}
    except (ValueError, OSError) as e:
        raise ValueError(f"cannot read the class labels {p}: {e} (JSON {{name: label}} or CSV "
                         "lines name,label)") from None


def resolve_model(spec: str, task: str, config=(), class_label: str | None = None):
    """(model, name): the embedded prior for the task ('default') or a model path; a
    class-conditional model gets its --class-label (a labels file: per input, see
    ``read_class_labels``; the model's own default stays unset)."""
    from ..models import load_model

    if spec == "default":
        name = default_prior(task)
        path = asset_path(name)
        if not has_asset(name):
            raise FileNotFoundError(f"the embedded model {name} is not in this build yet; "
                                    "pass --model PATH")
    else:
        name, path = spec, Path(spec)
    try:
        model = load_model(path, config=tuple(config)).eval()
    except (ValueError, OSError, RuntimeError):
        raise
    except Exception as e:  # safetensors / diffusers raise their own types
        raise ValueError(f"cannot load the model {path}: {type(e).__name__}: {e}") from None
    if (getattr(model, "meta", None) or {}).get("condition"):
        raise ValueError(f"{path} is a conditional (SR3-style) model, not a prior; CCDF needs "
                         "an unconditional prior (SR3 models are compared by `ccdf bench`)")
    from ..models.denoiser import check_class_label

    fixed, table = read_class_labels(class_label)
    if table is not None:
        check_class_label(model, 0, str(path))  # conditional, and labels checked per input
        for k in table.values():
            check_class_label(model, k, str(path))
    else:
        model.class_label = check_class_label(model, fixed, str(path))
    return model, name


def resolve_init(spec: str, task: dict, image_size: int, cs_lambda: float | None = None):
    """None for the classic estimate, an ``init.CompressedSensing`` start, or a Restorer whose
    task matches ``task``."""
    from ..models.formats import load_restorer

    if spec == "classic":
        return None
    if spec in CS_KINDS:  # the compressed-sensing starts (``init.CompressedSensing``)
        from .. import classical, init

        if task["task"] != "mri":
            raise ValueError(f"--init {spec} (compressed sensing) is for --task mri")
        if cs_lambda is not None and not (math.isfinite(cs_lambda) and cs_lambda >= 0):
            raise ValueError(f"--cs-lambda must be a finite number >= 0, got {cs_lambda}")
        try:
            classical._sigpy()
        except ImportError as e:
            raise ValueError(f"--init {spec}: {e}") from None
        return init.CompressedSensing(spec, cs_lambda)
    if spec == "net":
        name = default_restorer(task)
        if name is None:
            raise ValueError(f"no embedded restoration network for {task_str(task)} (there are "
                             "sr x4, mri (any mask), Gaussian deblur sigma 2 and box inpainting); use "
                             "--init classic or --init PATH")
        if not has_asset(name):
            raise FileNotFoundError(f"the embedded restoration network {name} is not in this "
                                    "build yet; use --init classic or --init PATH")
        spec = str(asset_path(name))
    try:
        net = load_restorer(spec)
    except (ValueError, OSError, RuntimeError):
        raise
    except Exception as e:
        raise ValueError(f"cannot load the restoration network {spec}: {e}") from None
    wanted = {k: v for k, v in task.items() if k != "seed"}
    have = {k: v for k, v in net.task.items() if k != "seed"}
    if any(have.get(k) != v for k, v in wanted.items() if k in have) or \
            have.get("task") != task["task"]:
        raise ValueError(f"the restoration network {spec} was trained for "
                         f"{task_str(net.task)}, not {task_str(task)}")
    size = getattr(getattr(net.unet, "config", None), "sample_size", None)
    if hasattr(net, "restore") or image_size is None:  # size-independent
        size = None
    if size is not None and int(size) != image_size:
        raise ValueError(f"the restoration network takes {size}x{size} images but the model "
                         f"takes {image_size}x{image_size}")
    return net.eval()


def task_str(task: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in task.items() if v is not None)


class DeviceModel:
    """The denoiser as run on the device: ``torch.compile`` of its forward and/or autocast
    (bf16, or fp16 on a GPU without bf16) around ``model(x (B, C, H, W), t (B,))``; the output
    is float32.  Every other attribute (schedule, prediction, image_size ...) is the model's."""

    def __init__(self, model, device: torch.device, compile: bool = False, half: bool = False):
        self._model = model
        self._fn = torch.compile(model, dynamic=True) if compile else model
        self._device = device.type
        self._dtype = None
        if half:
            cuda_fp16 = device.type == "cuda" and not torch.cuda.is_bf16_supported()
            self._dtype = torch.float16 if cuda_fp16 else torch.bfloat16

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._model, name)

    def __call__(self, x: Tensor, t: Tensor, **kw) -> Tensor:
        if self._dtype is None:
            return self._fn(x, t, **kw)
        with torch.autocast(self._device, dtype=self._dtype):
            return self._fn(x, t, **kw).float()
