"""The library behind ``ccdf solve``: input files -> measurements -> CCDF -> output files.

``solve(SolveConfig(...))`` reads every input, builds (or reads) each measurement y and its
initial estimate, runs ``reconstruct`` and writes the outputs.  The order of work:

1. **Read and check everything first.**  All inputs are read and validated (readable, finite,
   the size the model takes, a mask of the right size, a factor that divides the size ...)
   before anything is written, so a bad input fails with one message and writes nothing.
2. **Solve.**  Each item (an image, or one slice of a volume) has its own
   ``torch.Generator``, seeded from the global seed and the item's NAME
   (``item_seed(seed, name)``), never from its position and never via global RNG state.
   The simulated measurement noise and every draw of the sampler come from that generator.
   With ``batch_size`` B > 1, B items run together: each in its own thread with its own
   generator, operator and measurement, and one shared network call per reverse step on
   the concatenated batch (``_SharedNetwork``).  Their noise is therefore identical to a
   ``batch_size`` 1 run; only the floating-point rounding of the batched network
   convolutions differs (about 1e-6, which can flip an 8-bit PNG value by one step).
   ``batch_size`` 1 (the default) is exactly reproducible whatever else is in the folder.
3. **Write.**  Outputs go to a hidden staging folder inside ``out`` (each file written to a
   temporary name and renamed) and are moved into ``out`` only when the whole run has
   succeeded (``io.staged_dir``): a failed or interrupted run leaves ``out`` as it was.

Inputs (``SUFFIXES``), a file or a folder of them (hidden files and sub-folders are skipped):

* PNG/JPEG/TIFF/BMP: read gray for a 1-channel model.  ``clean`` (default): the image is the
  ground truth, y is simulated (plus ``sigma_y`` noise) and PSNR/SSIM are reported; the
  image must have the model's size (no silent resizing).  ``measurement``: the file IS y --
  a low-resolution image of size model / factor (sr), or the image with holes (inpaint,
  needs the mask); no metrics.
* ``.npy``: a real 2-D image in [0, 1] (as an image; output ``NAME.npy``), or a 3-D stack
  (S, H, W) of slices in [0, 1], resized to the model size when clean (output: the stack of
  reconstructions, ``NAME.npy`` (S, size, size)).  A complex .npy is MRI k-space, read like
  the k-space of an .h5 file ((H, W) or (S, H, W)).
* NIfTI (``.nii``, ``.nii.gz``, clean only): slices along ``axis``, scaled as
  ``datasets.volume_slices`` does (cropped to the object, divided by the volume's 99.5th
  percentile, rotated, padded square and area-resized to the model size).  Output: a NIfTI
  volume of the reconstructed slices in that slice geometry (size x size along the other
  two axes; identity affine), not resampled back to the original voxel grid.
* fastMRI-style ``.h5`` with a complex ``kspace`` dataset (S, H, W) (single coil; multi-coil
  (S, coils, H, W) is refused: it needs coil maps).  It is a measurement whatever
  ``input_kind`` says.  See ``_Reader._kspace`` for the layout, the mask and the scale.

Outputs in ``out``: the reconstruction in the input's format (``NAME.png``, ``NAME.npy``, the
NIfTI volume, or ``NAME.h5`` with ``reconstruction`` scaled back to the file's units), PNG
previews per slice for volumes (``NAME_s012.png``), ``<item>_init.png`` (the initial
estimate), ``<item>_std.png`` and ``NAME_std.npy`` when samples > 1, and ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import io

H5_SUFFIXES = (".h5", ".hdf5")
SUFFIXES = io.IMAGE_SUFFIXES + (".npy",) + io.NIFTI_SUFFIXES + H5_SUFFIXES
INPUT_KINDS = ("clean", "measurement")


# ----------------------------------------------------------------------------- config
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
    init: str = "classic"              # "classic" | "net" | a restorer folder
    t0: float | str = 0.2              # in (0, 1], or "auto"
    steps: int = 100
    sampler: str = "ddpm"
    samples: int = 1
    sigma_y: float = 0.0
    seed: int = 0
    batch_size: int = 1
    device: str = "cpu"
    axis: int = 2                      # NIfTI slice axis
    slices: str | None = None          # "A:B[:C]" or "N": which slices of volumes to solve


def item_seed(seed: int, name: str) -> int:
    """A per-item seed from the global seed and the item's name (not its position)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


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
    from .samplers import SAMPLERS

    if cfg.task.get("task") not in ("sr", "inpaint", "mri"):
        raise ValueError("--task is required (sr, inpaint or mri)")
    if cfg.t0 != "auto":
        try:
            t0 = float(cfg.t0)
        except (TypeError, ValueError):
            raise ValueError(f"t0 must be a number in (0, 1] or 'auto', got {cfg.t0!r}") from None
        if not (math.isfinite(t0) and 0 < t0 <= 1):
            raise ValueError(f"t0 must be in (0, 1], got {cfg.t0}")
    if int(cfg.steps) < 1:
        raise ValueError(f"--steps must be >= 1, got {cfg.steps}")
    if cfg.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {cfg.samples}")
    if cfg.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if not (math.isfinite(cfg.sigma_y) and cfg.sigma_y >= 0):
        raise ValueError(f"--sigma-y must be a finite number >= 0, got {cfg.sigma_y}")
    if cfg.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {cfg.sampler!r}; choose from {', '.join(SAMPLERS)}")
    if cfg.input_kind not in (None, *INPUT_KINDS):
        raise ValueError(f"--input-kind must be clean or measurement, got {cfg.input_kind!r}")
    if cfg.axis not in (0, 1, 2):
        raise ValueError(f"--axis must be 0, 1 or 2, got {cfg.axis}")
    if cfg.device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {cfg.device!r}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    parse_slices(cfg.slices)


# ----------------------------------------------------------------------------- models
def resolve_model(spec: str, task: str):
    """(model, name): the embedded prior for the task ('default') or a model path."""
    from .datasets import ASSETS
    from .models import load_model

    if spec == "default":
        name = "default-mri" if task == "mri" else "default-image"
        path = ASSETS / "models" / name
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"the embedded model {name} is not in this build yet; "
                                    "pass --model PATH")
    else:
        name, path = spec, Path(spec)
    try:
        return load_model(path).eval(), name
    except (ValueError, OSError, RuntimeError):
        raise
    except Exception as e:  # safetensors / diffusers raise their own types
        raise ValueError(f"cannot load the model {path}: {type(e).__name__}: {e}") from None


def resolve_init(spec: str, task: dict, image_size: int):
    """None for the classic estimate, else a Restorer whose task matches ``task``."""
    from .datasets import ASSETS
    from .models.restorer import load_restorer

    if spec == "classic":
        return None
    if spec == "net":
        key = (task["task"], task.get("factor") if task["task"] == "sr" else
               (task.get("pattern"), float(task.get("accel", 0))))
        name = {("sr", 4): "restorer-sr4", ("mri", ("uniform1d", 4.0)): "restorer-mri4"}.get(key)
        if name is None:
            raise ValueError(f"no embedded restoration network for {_task_str(task)} (there are "
                             "sr x4 and mri uniform1d x4); use --init classic or --init PATH")
        if not (ASSETS / "models" / name / "config.json").exists():
            raise FileNotFoundError(f"the embedded restoration network {name} is not in this "
                                    "build yet; use --init classic or --init PATH")
        spec = str(ASSETS / "models" / name)
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
                         f"{_task_str(net.task)}, not {_task_str(task)}")
    size = getattr(getattr(net.unet, "config", None), "sample_size", None)
    if size is not None and int(size) != image_size:
        raise ValueError(f"the restoration network takes {size}x{size} images but the model "
                         f"takes {image_size}x{image_size}")
    return net.eval()


def _task_str(task: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in task.items() if v is not None)


# ----------------------------------------------------------------------------- inputs
@dataclass
class Source:
    """One input file and how its outputs are written."""

    path: Path
    kind: str                     # image | npy | stack | nifti | kspace
    stem: str
    main: str                     # output file holding the reconstruction
    multi: bool = False           # items are slices (PNG previews named STEM_sNNN)
    meta: dict = field(default_factory=dict)
    items: list = field(default_factory=list)


@dataclass
class Item:
    """One image (or slice) to solve."""

    name: str                     # seeds the generator; reported in metrics.json
    stem: str                     # output stem of its PNGs
    source: Source
    index: int | None
    op: object
    y: Tensor
    x: Tensor | None              # (1, C, H, W) ground truth in [0, 1], None when unknown
    generator: torch.Generator
    x0_hat: Tensor | None = None
    t0: float | None = None
    reason: str = "given"
    result: object = None
    seconds: float = 0.0


def list_inputs(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and not p.name.startswith(".")
                       and io.suffix_of(p) in SUFFIXES)
        if not files:
            raise io.InputError(f"no inputs in {path} (expected {', '.join(SUFFIXES)})")
        return files
    if io.suffix_of(path) not in SUFFIXES:
        raise io.InputError(f"unsupported input {path.name}: expected one of {', '.join(SUFFIXES)}")
    return [path]


def _stem(path: Path) -> str:
    return path.name[: -len(io.suffix_of(path))]


def _finite(a, name: str) -> None:
    ok = np.isfinite(a).all() if isinstance(a, np.ndarray) else bool(torch.isfinite(a).all())
    if not ok:
        raise io.InputError(f"{name} contains NaN or Inf")


def _unit_range(a: np.ndarray, name: str) -> None:
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 1:
        raise io.InputError(f"{name}: values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}] "
                            "(scale the array first)")


def _select(n: int, sel: slice | None, name: str) -> list[int]:
    idx = list(range(n))[sel] if sel is not None else list(range(n))
    if not idx:
        raise io.InputError(f"--slices selects none of the {n} slices of {name}")
    return idx


def _resize(x: Tensor, size: int) -> Tensor:
    if x.shape[-2:] == (size, size):
        return x
    mode = "area" if x.shape[-1] >= size and x.shape[-2] >= size else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=(size, size), mode=mode, **kw).clamp(0, 1)


class _Reader:
    """Turns input files into Sources of Items (all validation happens here)."""

    def __init__(self, cfg: SolveConfig, model, op):
        self.cfg, self.model, self.op = cfg, model, op
        self.size, self.channels = model.image_size, model.channels
        self.task = cfg.task["task"]
        self.sel = parse_slices(cfg.slices)
        self.device = torch.device(cfg.device)

    # ---- helpers
    def _generator(self, name: str) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(item_seed(self.cfg.seed, name))

    def _kind(self) -> str:
        return self.cfg.input_kind or "clean"

    def _clean_item(self, src, name, stem, index, x: Tensor) -> Item:
        """x (C, H, W) in [0, 1] at the model size: simulate y (+ sigma_y noise)."""
        g = self._generator(name)
        x = x[None].to(self.device)
        y = self.op.A(x)
        if self.cfg.sigma_y > 0:
            noise = torch.randn(y.shape, generator=g, dtype=y.real.dtype, device=self.device)
            y = y + self.cfg.sigma_y * (self.op.A(noise) if y.is_complex() else noise)
        return Item(name, stem, src, index, self.op, y, x, g)

    def _measured_item(self, src, name, stem, index, img: Tensor) -> Item:
        """img (C, h, w) in [0, 1] IS the measurement (sr: low-res; inpaint: with holes)."""
        if self.task == "mri":
            raise io.InputError(f"{src.path.name}: an MRI measurement is k-space (.h5 or a "
                                "complex .npy), not an image")
        want = tuple(self.op.measurement_shape) if self.task == "sr" else \
            (self.channels, self.size, self.size)
        if tuple(img.shape) != want:
            what = f"model size / factor {self.op.factor}" if self.task == "sr" else "model size"
            raise io.InputError(f"{name}: a measurement for this task is {want[1]}x{want[2]} "
                                f"with {want[0]} channel(s) ({what}); got {img.shape[1]}x"
                                f"{img.shape[2]} with {img.shape[0]}")
        y = img[None].to(self.device)
        if self.task == "inpaint":
            y = self.op.A(y)
        return Item(name, stem, src, index, self.op, y, None, self._generator(name))

    def _check_size(self, name: str, x: Tensor) -> None:
        if tuple(x.shape[-2:]) != (self.size, self.size) or x.shape[0] != self.channels:
            raise io.InputError(f"{name} is {x.shape[-2]}x{x.shape[-1]} with {x.shape[0]} "
                                f"channel(s) but the model takes {self.size}x{self.size} images "
                                f"with {self.channels} channel(s) (resize it first)")

    # ---- per format
    def read(self, path: Path) -> Source:
        suffix = io.suffix_of(path)
        if suffix in H5_SUFFIXES:
            return self._h5(path)
        if suffix in io.NIFTI_SUFFIXES:
            return self._nifti(path)
        if suffix == ".npy":
            return self._npy(path)
        return self._image(path)

    def _image(self, path: Path) -> Source:
        stem = _stem(path)
        src = Source(path, "image", stem, f"{stem}.png")
        x = io.read_image(path, self.channels)
        _finite(x, path.name)
        if self._kind() == "measurement":
            src.items.append(self._measured_item(src, path.name, stem, None, x))
            return src
        self._check_size(path.name, x)
        src.items.append(self._clean_item(src, path.name, stem, None, x))
        return src

    def _npy(self, path: Path) -> Source:
        a = io.read_npy(path)
        stem = _stem(path)
        if not np.issubdtype(a.dtype, np.number) and a.dtype != np.bool_:
            raise io.InputError(f"{path.name}: expected a numeric array, got {a.dtype}")
        if np.iscomplexobj(a):
            return self._kspace(path, a[None] if a.ndim == 2 else a, None, single=a.ndim == 2)
        if a.ndim not in (2, 3):
            raise io.InputError(f"{path.name}: expected a 2-D image or a 3-D stack (S, H, W), "
                                f"got shape {a.shape}")
        _finite(a, path.name)
        a = a.astype(np.float32)
        _unit_range(a, path.name)
        measured = self._kind() == "measurement"
        if a.ndim == 2:
            src = Source(path, "npy", stem, f"{stem}.npy")
            x = torch.from_numpy(a)[None]
            if measured and self.channels != 1:
                x = x.expand(self.channels, *a.shape).clone()
            if measured:
                src.items.append(self._measured_item(src, path.name, stem, None, x))
            else:
                self._check_size(path.name, x)
                src.items.append(self._clean_item(src, path.name, stem, None, x))
            return src
        src = Source(path, "stack", stem, f"{stem}.npy", multi=True)
        stack = torch.from_numpy(a)[:, None]
        if not measured:
            stack = _resize(stack, self.size)
        for i in _select(len(stack), self.sel, path.name):
            name, s = f"{path.name}[{i}]", f"{stem}_s{i:03d}"
            x = stack[i].expand(self.channels, *stack.shape[-2:]).clone()
            if measured:
                src.items.append(self._measured_item(src, name, s, i, x))
            else:
                src.items.append(self._clean_item(src, name, s, i, x))
        src.meta["n_slices"] = len(stack)
        return src

    def _nifti(self, path: Path) -> Source:
        from .datasets import volume_slices

        if self._kind() == "measurement":
            raise io.InputError(f"{path.name}: a NIfTI volume is read as clean images; "
                                "drop --input-kind measurement")
        vol = io.read_nifti(path)
        if vol.ndim == 4 and vol.shape[3] == 1:
            vol = vol[..., 0]
        if vol.ndim != 3:
            raise io.InputError(f"{path.name}: expected a 3-D volume, got shape {vol.shape}")
        _finite(vol, path.name)
        stem = _stem(path)
        x = volume_slices(vol, self.size, axis=self.cfg.axis)           # (S, 1, size, size)
        src = Source(path, "nifti", stem, f"{stem}{io.suffix_of(path)}", multi=True,
                     meta={"n_slices": len(x), "axis": self.cfg.axis})
        for i in _select(len(x), self.sel, path.name):
            xi = x[i].expand(self.channels, self.size, self.size).clone()
            src.items.append(self._clean_item(src, f"{path.name}[{i}]", f"{stem}_s{i:03d}", i, xi))
        return src

    def _h5(self, path: Path) -> Source:
        k, mask, _ = io.read_h5_kspace(path)
        if k.ndim == 4:
            raise io.InputError(f"{path.name}: multi-coil .h5 needs coil maps; not supported yet "
                                f"(kspace is {k.shape}: slices, coils, H, W)")
        if k.ndim not in (2, 3):
            raise io.InputError(f"{path.name}: 'kspace' must be (slices, H, W), got {k.shape}")
        return self._kspace(path, k[None] if k.ndim == 2 else k, mask, single=False)

    def _kspace(self, path: Path, k: np.ndarray, file_mask, single: bool) -> Source:
        """Items for k-space k (S, H, W) complex in the fastMRI layout (see ``kspace_to_ours``).

        The mask: the file's ``mask`` dataset ((W,) columns or (H, W), centred like the
        k-space); else, when the k-space is fully sampled, the ``--pattern`` mask
        (retrospective undersampling: the fully sampled image is then the ground truth and
        PSNR/SSIM are reported); else the entries that are non-zero in some slice.
        The image is real (the operator uses k-space's Hermitian symmetry) when the measured
        k-space is Hermitian-symmetric to 1e-3, else complex (real and imaginary parts
        denoised as two images, as score-MRI does).  Scale: y is divided by the 99.5th
        percentile of the zero-filled magnitude over the file, so images lie in about [0, 1];
        outputs are multiplied back.
        """
        from .operators import MRI, make_operator

        name = path.name
        if self.task != "mri":
            raise io.InputError(f"{name}: k-space input needs --task mri")
        if self.channels != 1:
            raise io.InputError(f"{name}: k-space needs a 1-channel model, this one has "
                                f"{self.channels}")
        if k.ndim != 3 or k.shape[0] == 0:
            raise io.InputError(f"{name}: k-space must be (slices, H, W), got {k.shape}")
        s, h, w = k.shape
        if (h, w) != (self.size, self.size):
            raise io.InputError(f"{name}: k-space is {h}x{w} but the model takes "
                                f"{self.size}x{self.size} (crop or resample the k-space first)")
        _finite(k, name)
        k_u = kspace_to_ours(k.astype(np.complex128))
        full = bool((np.abs(k_u).max(0) > 0).all())
        if file_mask is not None:
            m = np.asarray(file_mask)
            if m.shape == (w,):
                m = np.broadcast_to(m[None, :], (h, w))
            if m.shape != (h, w):
                raise io.InputError(f"{name}: mask dataset is {m.shape}, expected ({w},) or "
                                    f"({h}, {w})")
            mask = np.fft.ifftshift(np.asarray(m) != 0)
            origin = "file"
        elif full:
            mask = make_operator("mri", (1, h, w), **{k_: v for k_, v in self.cfg.task.items()
                                                       if k_ != "task"}).mask.numpy()
            origin = "pattern (retrospective)"
        else:
            mask = np.abs(k_u).max(0) > 0
            origin = "non-zero k-space entries"
        if not mask.any():
            raise io.InputError(f"{name}: the sampling mask is empty")
        ref = np.abs(np.fft.ifft2(k_u, norm="ortho")) if full else None
        k_u = k_u * mask
        zf = np.abs(np.fft.ifft2(k_u, norm="ortho"))
        scale = float(np.percentile(zf, 99.5))
        if not scale > 0:
            raise io.InputError(f"{name}: the measured k-space is all zeros")
        real = _hermitian(k_u, mask)
        op = MRI(torch.from_numpy(mask.copy()), (1, h, w), complex_image=not real)
        stem = _stem(path)
        suffix = io.suffix_of(path)
        src = Source(path, "kspace", stem, f"{stem}{suffix}", multi=not single,
                     meta={"scale": scale, "n_slices": s, "mask": origin, "real_image": real,
                           "h5": suffix in H5_SUFFIXES, "single": single})
        y_all = torch.from_numpy((k_u / scale).astype(np.complex64))[:, None]
        for i in _select(s, self.sel, name):
            iname = name if single else f"{name}[{i}]"
            istem = stem if single else f"{stem}_s{i:03d}"
            x = None
            if ref is not None:
                x = torch.from_numpy((ref[i] / scale).astype(np.float32))[None, None]
                x = x.to(self.device)
            src.items.append(Item(iname, istem, src, i, op, y_all[i: i + 1].to(self.device), x,
                                  self._generator(iname)))
        return src


def kspace_to_ours(k_c: np.ndarray) -> np.ndarray:
    """fastMRI k-space -> the unshifted layout of ``operators.mri`` (DC at [0, 0]).

    fastMRI stores centred k-space of a centred image: image = fftshift(ifft2(ifftshift(k))).
    Our operators take x = that image and k = fft2(x) unshifted, so
    k_ours = ifftshift(k_c) * exp(-2 pi i (ky (H//2) / H + kx (W//2) / W)) (the fftshift of
    the image is a phase ramp; (-1)^(ky+kx) for even sizes).  Elementwise, so the sampling
    pattern only moves by the ifftshift.
    """
    h, w = k_c.shape[-2:]
    ky = np.arange(h)[:, None] * (h // 2) / h
    kx = np.arange(w)[None, :] * (w // 2) / w
    return np.fft.ifftshift(k_c, axes=(-2, -1)) * np.exp(-2j * np.pi * (ky + kx))


def _hermitian(k_u: np.ndarray, mask: np.ndarray, tol: float = 1e-3) -> bool:
    """True when measured k-space is that of a real image: k(-w) = conj k(w) where both measured."""
    def flip(a):
        return np.roll(np.flip(a, (-2, -1)), (1, 1), (-2, -1))

    both = mask & flip(mask)
    if not both.any():
        return False
    d = (k_u - flip(k_u).conj())[..., both]
    return float(np.linalg.norm(d)) <= tol * max(float(np.linalg.norm(k_u[..., both])), 1e-30)


# ----------------------------------------------------------------------------- batching
class _SharedNetwork:
    """The model as seen by B worker threads: each call waits for all B, then ONE network
    call runs on the concatenated inputs and every thread gets its own rows back.

    All B workers must make the same number of calls (same t0, steps, sampler).  Every other
    attribute (schedule, prediction, image_size, ...) is the wrapped model's."""

    def __init__(self, model, parties: int):
        self._model = model
        self._inputs: list = [None] * parties
        self._outputs: list = [None] * parties
        self._local = threading.local()
        self.error: BaseException | None = None
        self.barrier = threading.Barrier(parties, action=self._run)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._model, name)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        slot = self._local.slot
        self._inputs[slot] = (x, t)
        self.barrier.wait()
        out, self._outputs[slot] = self._outputs[slot], None
        return out

    def _run(self) -> None:
        try:
            xs = torch.cat([x for x, _ in self._inputs])
            ts = torch.cat([t.reshape(-1).expand(x.shape[0]) for x, t in self._inputs])
            out = self._model(xs, ts)
            self._outputs = list(torch.split(out, [x.shape[0] for x, _ in self._inputs]))
            self._inputs = [None] * len(self._inputs)
        except BaseException as e:
            self.error = e
            raise


def _run_batch(model, items: list, cfg: SolveConfig, callback) -> None:
    """Solve ``items`` (same t0) together; fills each item's ``result``."""
    from .reconstruct import reconstruct

    def one(it, net, cb):
        return reconstruct(net, it.op, it.y, it.x0_hat, t0=it.t0, steps=cfg.steps,
                           sampler=cfg.sampler, samples=cfg.samples, sigma_y=cfg.sigma_y,
                           generator=it.generator, callback=cb)

    tic = time.perf_counter()
    if len(items) == 1:
        items[0].result = one(items[0], model, callback)
    else:
        net = _SharedNetwork(model, len(items))
        errors: list = [None] * len(items)

        def work(k):
            net._local.slot = k
            try:
                items[k].result = one(items[k], net, callback if k == 0 else None)
            except BaseException as e:  # noqa: BLE001 -- re-raised in the calling thread
                errors[k] = e
                net.barrier.abort()

        threads = [threading.Thread(target=work, args=(k,), daemon=True)
                   for k in range(len(items))]
        for th in threads:
            th.start()
        try:
            for th in threads:
                while th.is_alive():
                    th.join(0.2)
        except BaseException:
            net.barrier.abort()
            raise
        if net.error is not None:
            raise net.error
        real = [e for e in errors
                if e is not None and not isinstance(e, threading.BrokenBarrierError)]
        if real:
            raise real[0]
        if any(e is not None for e in errors):
            raise RuntimeError("a batched reconstruction was aborted")
    sec = (time.perf_counter() - tic) / len(items)
    for it in items:
        it.seconds = sec


def _batches(items: list, size: int) -> list[list]:
    """Consecutive items with the same t0, in chunks of ``size`` (same t0 -> same NFE)."""
    by_t0: dict = {}
    for it in items:
        by_t0.setdefault(it.t0, []).append(it)
    out = []
    for group in by_t0.values():
        out += [group[i: i + size] for i in range(0, len(group), size)]
    return out


# ----------------------------------------------------------------------------- outputs
def _magnitude(t: Tensor) -> Tensor:
    return (t.abs() if t.is_complex() else t).detach().float().cpu()


def planned_outputs(src: Source, samples: int) -> list[str]:
    names = [src.main]
    for it in src.items:
        names += [f"{it.stem}.png", f"{it.stem}_init.png"]
        if samples > 1:
            names.append(f"{it.stem}_std.png")
    if samples > 1:
        names.append(f"{src.stem}_std.npy")
    return list(dict.fromkeys(names))


def _check_outputs(sources: list, out: Path, samples: int, inputs: list[Path]) -> None:
    owner: dict = {"metrics.json": None}
    for src in sources:
        for n in planned_outputs(src, samples):
            if n in owner:
                other = owner[n].path.name if owner[n] is not None else "the run's metrics"
                raise io.InputError(f"{src.path.name} and {other} would both write {n} in "
                                    f"{out}; rename one of them")
            owner[n] = src
    ins = {p.resolve() for p in inputs}
    for n in owner:
        if (out / n).resolve() in ins:
            raise io.InputError(f"writing {n} to {out} would overwrite the input {out / n}; "
                                "choose another --out")


def _write_source(stage: Path, src: Source, samples: int) -> None:
    items = src.items
    xs = [_magnitude(it.result.x[0]) for it in items]               # (C, H, W)
    inits = [_magnitude(it.x0_hat[0]) for it in items]
    stds = [_magnitude(it.result.std[0]) for it in items] if samples > 1 else None
    scale = src.meta.get("scale", 1.0)
    for it, x, x0 in zip(items, xs, inits):
        io.write_image(stage / f"{it.stem}.png", x)
        io.write_image(stage / f"{it.stem}_init.png", x0)
    if stds is not None:
        top = max(float(s.max()) for s in stds)
        for it, s in zip(items, stds):
            io.write_image(stage / f"{it.stem}_std.png", s / max(top, 1e-8))
        arr = torch.stack(stds).numpy() * scale
        io.write_npy(stage / f"{src.stem}_std.npy", _squeeze(arr, src.multi))
    vol = torch.stack(xs).numpy()                                     # (S, C, H, W)
    if src.kind == "image":
        return
    if src.kind in ("npy", "stack"):
        io.write_npy(stage / src.main, _squeeze(vol, src.multi))
    elif src.kind == "nifti":
        v = np.rot90(vol[:, 0], -1, axes=(1, 2))                       # undo volume_slices' turn
        io.write_nifti(stage / src.main, np.moveaxis(v, 0, src.meta["axis"]))
    elif src.kind == "kspace":
        rec = (vol[:, 0] * scale).astype(np.float32)                  # (S, H, W)
        if not src.meta["h5"]:
            io.write_npy(stage / src.main, rec[0] if src.meta["single"] else rec)
            return
        data = {"reconstruction": rec,
                "initial_estimate": (torch.stack(inits).numpy()[:, 0] * scale).astype(np.float32),
                "scale": np.float64(scale),
                "slices": np.asarray([it.index for it in items], np.int64)}
        if stds is not None:
            data["std"] = (torch.stack(stds).numpy()[:, 0] * scale).astype(np.float32)
        io.write_h5(stage / src.main, **data)


def _squeeze(arr: np.ndarray, multi: bool) -> np.ndarray:
    """(S, C, H, W) -> (S, H, W) / (H, W) for 1 channel; (S, C, H, W) / (C, H, W) otherwise."""
    if arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr if multi else arr[0]


# ----------------------------------------------------------------------------- the run
@dataclass
class SolveResult:
    images: list
    summary: dict
    out: Path


def solve(cfg: SolveConfig, progress: bool = False, log=None) -> SolveResult:
    """Run ``ccdf solve``: see the module docstring.  ``log(str)`` receives notes (auto t0)."""
    from . import autot0, init, metrics
    from .operators import make_operator

    check_config(cfg)
    task = dict(cfg.task)
    if task["task"] == "inpaint" and task.get("mask") is None:
        if cfg.input_kind == "measurement":
            raise ValueError("--input-kind measurement for inpainting needs --mask (the holes: "
                             "box, random:FRACTION or a mask file)")
        task["mask"] = "box"
    auto = cfg.t0 == "auto"
    inputs = list_inputs(Path(cfg.input))
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise io.InputError(f"--out {out} exists and is not a folder")
    if Path(cfg.input).is_dir() and out.exists() and out.resolve() == Path(cfg.input).resolve():
        raise io.InputError("--out must not be the input folder (outputs would be read as "
                            "inputs next time)")
    model, model_name = resolve_model(cfg.model, task["task"])
    model = model.to(cfg.device)
    size, channels = model.image_size, model.channels
    net = resolve_init(cfg.init, task, size)
    if net is not None:
        net = net.to(cfg.device)
    params = {k: v for k, v in task.items() if k != "task"}
    op = make_operator(task["task"], (channels, size, size), **params)  # validates the task

    # 1. read and check every input before anything is written
    reader = _Reader(cfg, model, op)
    sources = [reader.read(p) for p in inputs]
    _check_outputs(sources, out, cfg.samples, inputs)
    items = [it for src in sources for it in src.items]

    # initial estimates and t0
    cache: dict = {}  # the prior-sample error estimate, computed once per run
    for it in items:
        if net is not None and it.op.complex_image:
            raise io.InputError(f"{it.name}: this k-space is not that of a real image, which the "
                                "restoration network cannot take; use --init classic")
        it.x0_hat = (init.classic(it.op, it.y) if net is None
                     else init.feed_forward(net, it.op, it.y))
        if auto:
            t0, reason = autot0.choose_t0(model, it.op, it.y, it.x0_hat, cfg.steps, cfg.sigma_y,
                                          None if net is None else net.meta, cache=cache)
            it.t0, it.reason = float(t0), str(reason)
        else:
            it.t0 = float(cfg.t0)

    # 2. solve
    bar = None
    if progress:
        import sys

        from tqdm import tqdm
        bar = tqdm(total=len(items), desc="solve", unit="img", dynamic_ncols=True,
                   file=sys.stderr, disable=None, leave=False)  # no bar when not a TTY

    def step_cb(info):
        if bar is not None:
            bar.set_postfix_str(f"step {info['n_prime'] - info['i'] + 1}/{info['n_prime']}",
                                refresh=False)
            bar.refresh()

    try:
        for batch in _batches(items, cfg.batch_size):
            _run_batch(model, batch, cfg, step_cb if bar is not None else None)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()

    # metrics
    images = []
    for it in items:
        r = it.result
        rec = {"name": it.name}
        if it.x is not None:
            xr, x0 = _magnitude(r.x), _magnitude(it.x0_hat)
            ref = it.x.detach().float().cpu()
            rec.update(psnr=float(metrics.psnr(xr, ref)), ssim=float(metrics.ssim(xr, ref)),
                       init_psnr=float(metrics.psnr(x0, ref)))
        rec.update(nfe=int(r.nfe), seconds=it.seconds, t0=it.t0)
        if auto:
            rec["t0_reason"] = it.reason
        images.append(rec)

    def mean(k):
        v = [i[k] for i in images if k in i]
        return float(np.mean(v)) if v else None

    nfes = [i["nfe"] for i in images]
    summary = {
        "psnr_mean": mean("psnr"), "ssim_mean": mean("ssim"),
        "nfe": nfes[0] if len(set(nfes)) == 1 else float(np.mean(nfes)),
        "t0": "auto" if auto else float(cfg.t0), "steps": int(cfg.steps),
        "seconds_per_image": mean("seconds"), "init_psnr_mean": mean("init_psnr"),
        "n_images": len(images), "n_with_reference": sum("psnr" in i for i in images),
        "sampler": cfg.sampler, "model": model_name, "init": cfg.init, "task": task,
        "samples": cfg.samples, "sigma_y": cfg.sigma_y, "seed": cfg.seed,
        "batch_size": cfg.batch_size, "input_kind": cfg.input_kind or "clean",
    }
    if auto:
        summary["t0_mean"] = mean("t0")
        summary["t0_reason"] = images[0]["t0_reason"]
        if log is not None:
            log(f"auto t0: {images[0]['t0_reason']}")
    k_src = [s for s in sources if s.kind == "kspace"]
    if k_src:
        summary["kspace"] = {s.path.name: {k: v for k, v in s.meta.items()
                                           if k in ("scale", "mask", "real_image", "n_slices")}
                             for s in k_src}

    # 3. write (staged; moved into out only when everything is written)
    with io.staged_dir(out) as stage:
        for src in sources:
            _write_source(stage, src, cfg.samples)
        io.write_json(stage / "metrics.json", {"images": images, "summary": summary})
    return SolveResult(images, summary, out)
