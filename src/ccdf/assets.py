"""The embedded assets and the tasks' defaults: the one home of the names of the models and data
shipped in the package (``assets/``), the default prior and restoration network of each task,
the default and the spelling of t0, and ``Task``, an inverse problem with its operator's
parameters (``Task.task_key`` names it in the auto-t0 tables).

Imports no torch (the command line reads it before ``set_threads``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

#: the folder of the embedded models (``models/NAME``) and data (``data/...``)
ASSETS = Path(__file__).parent / "assets"

# ----------------------------------------------------------------------------- models
DEFAULT_IMAGE = "default-image"            # prior: Fashion-MNIST garments, 32x32 gray
DEFAULT_MRI = "default-mri"                # prior: T1 brain MRI, complex, any size
RESTORER_SR4 = "restorer-sr4"              # feed-forward start: SR x4, average pooling
RESTORER_MRI = "restorer-mri"              # the unrolled MRI start, any Cartesian mask
RESTORER_DEBLUR = "restorer-deblur"        # feed-forward start: Gaussian deblur, sigma 2
RESTORER_INPAINT = "restorer-inpaint"      # feed-forward start: inpainting the centred box
SR3_SR4 = "sr3-sr4"                        # SR3-style baseline of the SR comparison
ESRGAN_SR4 = "esrgan-sr4"                  # ESRGAN-style baseline of the SR comparison
FASHION_CLASSIFIER = "fashion-classifier"  # the features of the Frechet distance (``fid``)
PRIORS = (DEFAULT_IMAGE, DEFAULT_MRI)
#: the compressed-sensing regularisers (``classical``): the MRI rows and the ``--init`` starts
CS_KINDS = ("tv", "l1wavelet")

# ----------------------------------------------------------------------------- data
#: the committed evaluation samples of the built-in data sets (under ASSETS)
SAMPLES = {"fashion-mnist": "data/fashion_mnist_test48.npy", "mni152": "data/mni152_heldout16.npy"}
#: the committed MRI evaluation sets (``datasets``: mri:SET[-complex])
MRI_DIR = ASSETS / "data" / "mri"


def asset_path(name: str) -> Path:
    """The folder of the embedded model ``name`` (it may be absent from a build)."""
    return ASSETS / "models" / name


def has_asset(name: str) -> bool:
    """Whether the embedded model ``name`` is in this build."""
    return (asset_path(name) / "config.json").exists()


# ----------------------------------------------------------------------------- tasks
TASKS = ("sr", "inpaint", "mri", "deblur")
#: each task's parameters, in the order of its task dict
TASK_PARAMS = {"sr": ("factor", "kernel"), "inpaint": ("mask",),
               "mri": ("pattern", "accel", "acs", "seed"),
               "deblur": ("kernel", "kernel_sigma", "kernel_size", "seed")}
#: the parameters' defaults (as in ``operators.make_operator``; the command line's defaults)
TASK_DEFAULTS = {"sr": {"factor": 4, "kernel": "avg"}, "inpaint": {"mask": "box"},
                 "mri": {"pattern": "uniform1d", "accel": 4},
                 "deblur": {"kernel": "gaussian", "kernel_sigma": 2.0}}


@dataclass(frozen=True)
class Task:
    """An inverse problem y = A x: ``name`` (sr, inpaint, mri, deblur) and its operator's
    parameters (the keyword arguments of ``operators.make_operator``); None: the default, and
    a parameter of another task stays None."""

    name: str
    factor: int | None = None           # sr: downsampling factor
    kernel: str | None = None           # sr: avg | bicubic; deblur: gaussian | uniform | ...
    kernel_sigma: float | None = None   # deblur: Gaussian std (px)
    kernel_size: int | None = None      # deblur: kernel side (px)
    mask: str | None = None             # inpaint: box | random:FRACTION | PATH
    pattern: str | None = None          # mri: k-space sampling
    accel: float | None = None          # mri: acceleration
    acs: int | float | None = None      # mri: centre lines or fraction
    seed: int | None = None             # mri, deblur: the pattern's / trajectory's seed
    coils: int | None = None            # mri: simulated coils (multi-coil k-space)
    complex_image: bool | None = None   # mri: complex images

    def __post_init__(self):
        if self.name not in TASKS:
            raise ValueError(f"unknown task {self.name!r}; valid tasks: {', '.join(TASKS)}")

    @classmethod
    def of(cls, task: Task | dict) -> Task:
        """A Task from a task dict ({"task": "sr", "factor": 4, ...}; unknown keys: ValueError)."""
        if isinstance(task, Task):
            return task
        params = {k: v for k, v in task.items() if k != "task"}
        names = {f.name for f in fields(cls)} - {"name"}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for task "
                             f"{task.get('task')!r}")
        return cls(task.get("task"), **params)

    @property
    def params(self) -> dict:
        """The task's parameters: those of ``TASK_PARAMS`` (None included), then any other
        one that is set (coils, an inpainting mask's seed ...)."""
        own = TASK_PARAMS[self.name]
        p = {k: getattr(self, k) for k in own}
        p.update({f.name: getattr(self, f.name) for f in fields(self)
                  if f.name not in (*own, "name") and getattr(self, f.name) is not None})
        return p

    def as_dict(self) -> dict:
        """The task dict of the library: {"task": name, **params}."""
        return {"task": self.name, **self.params}

    def resolved(self) -> Task:
        """This task with the defaults filled in for its parameters left None."""
        d = {k: v for k, v in TASK_DEFAULTS[self.name].items() if getattr(self, k) is None}
        return replace(self, **d)

    @property
    def task_key(self) -> str:
        """The key of this task in the auto-t0 tables (``task_key``)."""
        return task_key(self.as_dict())

    def operator(self, image_shape: tuple, **extra):
        """``operators.make_operator`` of this task for images (C, H, W); ``extra``: more
        keyword arguments (e.g. complex_image=True)."""
        from .operators import make_operator  # torch: not at import (see the module docstring)

        params = {k: v for k, v in self.params.items() if v is not None}
        return make_operator(self.name, image_shape, **params, **extra)


def task_key(task: Task | dict) -> str:
    """'sr factor=4 kernel=avg', 'mri accel=4.0 pattern=uniform1d', ...: the task with its
    operator's defaults filled in (also for parameters given as None); the mask seed is left
    out (k belongs to the pattern)."""
    d = task.as_dict() if isinstance(task, Task) else task
    full = {**TASK_DEFAULTS.get(d["task"], {}), **{k: v for k, v in d.items() if v is not None}}
    rest = [f"{k}={float(v) if k == 'accel' else v}" for k, v in sorted(full.items())
            if k not in ("task", "seed")]
    return " ".join([d["task"], *rest])


def default_prior(task: Task | dict | str) -> str:
    """The embedded prior of a task: default-mri for MRI, default-image otherwise."""
    name = task if isinstance(task, str) else Task.of(task).name
    return DEFAULT_MRI if name == "mri" else DEFAULT_IMAGE


def default_restorer(task: Task | dict) -> str | None:
    """The embedded restoration network of a task, None where there is none: SR x4 with
    average pooling, MRI (the unrolled start for any Cartesian mask), Gaussian deblurring with
    sigma 2 and the default kernel size, inpainting of the default centred box."""
    t = Task.of(task).resolved()
    if t.name == "sr" and (t.factor, t.kernel) == (4, "avg"):
        return RESTORER_SR4
    if t.name == "mri":
        return RESTORER_MRI
    if t.name == "deblur" and (t.kernel, t.kernel_sigma, t.kernel_size) == ("gaussian", 2.0, None):
        return RESTORER_DEBLUR
    if t.name == "inpaint" and t.mask == "box":
        return RESTORER_INPAINT
    return None


# ----------------------------------------------------------------------------- t0
#: t0 of ``ccdf solve`` and ``ccdf theory`` when not given
T0 = 0.2


def parse_t0(value, auto: bool = True) -> float | str:
    """t0 as a number in (0, 1], or "auto" (where ``auto``); ValueError otherwise."""
    if auto and value == "auto":
        return "auto"
    try:
        t0 = float(value)
    except (TypeError, ValueError):
        either = " or 'auto'" if auto else ""
        raise ValueError(f"t0 must be a number in (0, 1]{either}, got {value!r}") from None
    if not (math.isfinite(t0) and 0 < t0 <= 1):
        raise ValueError(f"t0 must be in (0, 1], got {value}")
    return t0


__all__ = ["ASSETS", "DEFAULT_IMAGE", "DEFAULT_MRI", "RESTORER_SR4", "RESTORER_MRI",
           "RESTORER_DEBLUR", "RESTORER_INPAINT", "SR3_SR4", "ESRGAN_SR4", "FASHION_CLASSIFIER",
           "PRIORS", "SAMPLES",
           "MRI_DIR", "asset_path", "has_asset", "TASKS", "TASK_PARAMS", "TASK_DEFAULTS", "Task",
           "task_key", "default_prior", "default_restorer", "T0", "parse_t0"]
