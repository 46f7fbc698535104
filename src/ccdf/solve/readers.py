"""Input files -> Sources of Items: reading, validation, simulated measurements.

Formats (``SUFFIXES``), a file or a folder of them (hidden files and sub-folders skipped):

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
  percentile, rotated, padded square and area-resized to the model size).  The output volume
  is multiplied back to the input's units and carries the input's header with its affine
  composed with that crop and resampling (``nifti_affine``).
* fastMRI ``.h5`` files, single-coil ``kspace`` (S, H, W) or multi-coil (S, coils, H, W)
  (coil maps by ESPIRiT or ``--coil-maps``): measurements whatever ``input_kind`` says; read
  by ``solve.fastmri`` (the mask, the scale, the references and the submission outputs).
  A complex .npy is read by ``Reader._kspace``.

Each Item's generator is seeded from the global seed and the item's NAME (``item_seed``);
the simulated measurement noise is drawn from it, the sampler continues from its state.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import io
from ..datasets import volume_slices
from ..noise import randn_like
from ..operators import MRI, make_operator
from .config import item_seed, parse_slices
from .fastmri import read_source
from .items import Item, Source, hermitian, kspace_to_ours, select_slices, stem_of

H5_SUFFIXES = (".h5", ".hdf5")
SUFFIXES = io.IMAGE_SUFFIXES + (".npy",) + io.NIFTI_SUFFIXES + H5_SUFFIXES
VOLUME_SUFFIXES = (".npy",) + io.NIFTI_SUFFIXES + H5_SUFFIXES   # may hold several slices


def list_inputs(path: Path) -> list[Path]:
    """The input files: ``path`` itself, or the regular files of the folder ``path`` with a
    supported suffix (sorted; hidden files, sub-folders, FIFOs and devices skipped)."""
    if not path.exists():
        raise FileNotFoundError(f"input not found: {io.shown(path)}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and not p.name.startswith(".")
                       and io.suffix_of(p) in SUFFIXES)
        if not files:
            raise io.InputError(f"no inputs in {io.shown(path)} (expected "
                                f"{', '.join(SUFFIXES)})")
        return files
    if io.suffix_of(path) not in SUFFIXES:
        raise io.InputError(f"unsupported input {io.shown(path.name)}: expected one of "
                            f"{', '.join(SUFFIXES)}")
    return [io.regular_file(path)]


#: the longest names an input's outputs add to its stem (a volume's slice previews)
_LONGEST = {False: "_init.png", True: "_s0000_init.png"}


def check_name_length(path: Path, out: Path) -> None:
    """Refuse an input whose output names would be longer than the file system allows (the
    temporary names of ``io.atomic_write`` are short, whatever the name)."""
    try:
        limit = os.pathconf(out if out.exists() else out.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    longest = stem_of(path) + _LONGEST[io.suffix_of(path) in VOLUME_SUFFIXES]
    if len(os.fsencode(longest)) > limit:
        raise io.InputError(f"{io.shown(path.name)}: the name is too long for its outputs "
                            f"({longest[-20:]!r} would be {len(os.fsencode(longest))} bytes, "
                            f"the file system allows {limit}); rename it")


def check_names(inputs: list[Path], out: Path) -> None:
    """Refuse inputs whose outputs would collide (a.png and a.npy; a.png and a_init.png; a
    volume v.nii and an image v_s001.png) or overwrite an input -- from names alone."""
    owner: dict = {}
    for p in inputs:
        s = stem_of(p)
        if s in owner:
            raise io.InputError(f"{io.shown(owner[s].name)} and {io.shown(p.name)} would both "
                                f"write {io.shown(s)}.* in {out}; rename one of them")
        owner[s] = p
    for p in inputs:
        m = re.fullmatch(r"(.+?)(_s\d{3})?(_init|_std)?", stem_of(p), re.DOTALL)
        base, sl, extra = m.groups()
        other = owner.get(base) if (sl or extra) else None
        if other is not None and other != p and (not sl or io.suffix_of(other) in VOLUME_SUFFIXES):
            raise io.InputError(f"{io.shown(other.name)} and {io.shown(p.name)} would both write "
                                f"{io.shown(stem_of(p))}.* in {out}; rename one of them")
    if len(inputs) == 1:  # (a folder's files cannot be hit: --out is never the input folder)
        p = inputs[0]
        main = stem_of(p) + (".png" if io.suffix_of(p) in io.IMAGE_SUFFIXES else io.suffix_of(p))
        if (out / main).resolve() == p.resolve():
            raise io.InputError(f"writing {main} to {out} would overwrite the input {p}; "
                                "choose another --out")


def _finite(a, name: str) -> None:
    ok = np.isfinite(a).all() if isinstance(a, np.ndarray) else bool(torch.isfinite(a).all())
    if not ok:
        raise io.InputError(f"{name} contains NaN or Inf")


def _unit_range(a: np.ndarray, name: str) -> None:
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 1:
        raise io.InputError(f"{name}: values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}] "
                            "(scale the array first)")


def _resize(x: Tensor, size: int) -> Tensor:
    if x.shape[-2:] == (size, size):
        return x
    mode = "area" if x.shape[-1] >= size and x.shape[-2] >= size else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=(size, size), mode=mode, **kw).clamp(0, 1)


class Reader:
    """Turns input files into Sources of Items (all validation happens here)."""

    def __init__(self, model, op, device: torch.device, *, task: dict, out: Path,
                 seed: int = 0, input_kind: str | None = None, sigma_y: float = 0.0,
                 axis: int = 2, slices: str | None = None, coil_maps: str | None = None):
        """``task``: the operator's keyword arguments with its "task" (``SolveConfig.task``);
        ``out``: the output folder (for name lengths); the rest as in ``SolveConfig``."""
        self.model, self.op = model, op
        self.size, self.channels = model.image_size, model.channels
        self.complex = bool(getattr(model, "complex", False))
        if self.complex:  # a complex prior (MRI): one complex image channel
            self.channels = 1
        self._ops: dict = {}
        self.task = task["task"]
        self.params = {k: v for k, v in task.items() if k != "task"}  # make_operator's
        self.out, self.seed, self.input_kind, self.sigma_y = Path(out), seed, input_kind, sigma_y
        self.axis, self.coil_maps = axis, coil_maps
        self.sel = parse_slices(slices)
        self.device = device

    def op_for(self, h: int, w: int):
        """The task's operator for h x w images (a prior of any size gets one per size)."""
        if self.op is not None and tuple(self.op.image_shape[1:]) == (h, w):
            return self.op
        if (h, w) not in self._ops:
            params = dict(self.params)
            if self.complex:
                params["complex_image"] = True
            self._ops[(h, w)] = make_operator(self.task, (self.channels, h, w), **params)
        return self._ops[(h, w)]

    # ---- helpers
    def _generator(self, name: str) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(item_seed(self.seed, name))

    def _kind(self) -> str:
        return self.input_kind or "clean"

    def _clean_item(self, src, name, stem, index, x: Tensor) -> Item:
        """x (C, H, W) in [0, 1] at the model size: simulate y (+ sigma_y noise)."""
        g = self._generator(name)
        x = x[None].to(self.device)
        op = self.op_for(*x.shape[-2:])
        y = op.A(x)
        if self.sigma_y > 0:
            noise = randn_like(y.real, g)
            y = y + self.sigma_y * (op.A(noise) if y.is_complex() else noise)
        return Item(name, stem, src, index, op, y, x, g)

    def _measured_item(self, src, name, stem, index, img: Tensor) -> Item:
        """img (C, h, w) in [0, 1] IS the measurement (sr: low-res; inpaint: with holes;
        deblur: the blurred image)."""
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
        if self.size is None and x.shape[0] == self.channels:
            return
        if tuple(x.shape[-2:]) != (self.size, self.size) or x.shape[0] != self.channels:
            raise io.InputError(f"{io.shown(name)} is {x.shape[-2]}x{x.shape[-1]} with "
                                f"{x.shape[0]} channel(s) but the model takes {self._takes()} "
                                "(resize it first)")

    def _takes(self) -> str:
        kind = "grayscale" if self.channels == 1 else "RGB" if self.channels == 3 else \
            f"{self.channels}-channel"
        return f"{self.size}x{self.size} {kind} images"

    # ---- per format
    def read(self, path: Path) -> Source:
        check_name_length(path, self.out)
        suffix = io.suffix_of(path)
        if suffix in H5_SUFFIXES:
            return self._h5(path)
        if suffix in io.NIFTI_SUFFIXES:
            return self._nifti(path)
        if suffix == ".npy":
            return self._npy(path)
        return self._image(path)

    def _image(self, path: Path) -> Source:
        stem = stem_of(path)
        src = Source(path, "image", stem, f"{stem}.png")
        h, w = io.image_size(path)   # from the header: a wrong size is refused undecoded
        measured = self._kind() == "measurement"
        if not (measured and self.task == "mri"):   # (refused below: MRI measures k-space)
            lr = measured and self.task == "sr"
            want = tuple(self.op.measurement_shape[-2:]) if lr else (self.size, self.size)
            if (h, w) != want:
                what = (f"a measurement for SR x{self.op.factor} is {want[0]}x{want[1]} (the "
                        f"model takes {self._takes()})") if lr else f"the model takes {self._takes()}"
                raise io.InputError(f"{io.shown(path.name)} is {h}x{w} but {what} (resize it "
                                    "first)")
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
        stem = stem_of(path)
        if not np.issubdtype(a.dtype, np.number) and a.dtype != np.bool_:
            raise io.InputError(f"{path.name}: expected a numeric array, got {a.dtype}")
        if np.iscomplexobj(a):
            return self._kspace(path, a[None] if a.ndim == 2 else a, single=a.ndim == 2)
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
        if not measured and self.size is not None:
            stack = _resize(stack, self.size)
        for i in select_slices(len(stack), self.sel, path.name):
            name, s = f"{path.name}[{i}]", f"{stem}_s{i:03d}"
            x = stack[i].expand(self.channels, *stack.shape[-2:]).clone()
            if measured:
                src.items.append(self._measured_item(src, name, s, i, x))
            else:
                src.items.append(self._clean_item(src, name, s, i, x))
        src.meta["n_slices"] = len(stack)
        return src

    def _nifti(self, path: Path) -> Source:
        if self._kind() == "measurement":
            raise io.InputError(f"{path.name}: a NIfTI volume is read as clean images; "
                                "drop --input-kind measurement")
        vol, affine, header = io.read_nifti_image(path)
        if vol.ndim == 4 and vol.shape[3] == 1:
            vol = vol[..., 0]
        if vol.ndim != 3:
            raise io.InputError(f"{path.name}: expected a 3-D volume, got shape {vol.shape}")
        _finite(vol, path.name)
        stem = stem_of(path)
        side = self.size or max(s for i, s in enumerate(vol.shape) if i != self.axis)
        geo: dict = {}
        x = volume_slices(vol, side, axis=self.axis, geometry=geo)   # (S, 1, side, side)
        chosen = select_slices(len(x), self.sel, path.name)
        src = Source(path, "nifti", stem, f"{stem}{io.suffix_of(path)}", multi=True,
                     meta={"n_slices": len(x), "axis": self.axis, "scale": geo["scale"],
                           "header": header,
                           "affine": nifti_affine(affine, geo, self.axis, side, chosen)})
        for i in chosen:
            xi = x[i].expand(self.channels, side, side).clone()
            src.items.append(self._clean_item(src, f"{path.name}[{i}]", f"{stem}_s{i:03d}", i, xi))
        return src

    def _h5(self, path: Path) -> Source:
        return read_source(self, path)

    def _kspace(self, path: Path, k: np.ndarray, single: bool) -> Source:
        """Items for a complex .npy k-space k (S, H, W) in the fastMRI layout (see
        ``kspace_to_ours``; .h5 files go through ``solve.fastmri``).

        The mask: when the k-space is fully sampled, the ``--pattern`` mask
        (retrospective undersampling: the fully sampled image is then the ground truth and
        PSNR/SSIM are reported); else the entries that are non-zero in some slice.
        The image is real (the operator uses k-space's Hermitian symmetry) when the measured
        k-space is Hermitian-symmetric to 1e-3, else complex (real and imaginary parts
        denoised as two images, as score-MRI does).  Scale: y is divided by the 99.5th
        percentile of the zero-filled magnitude over the file, so images lie in about [0, 1];
        outputs are multiplied back.
        """
        name = path.name
        if self.task != "mri":
            raise io.InputError(f"{name}: k-space input needs --task mri")
        if self.channels != 1:
            raise io.InputError(f"{name}: k-space needs a 1-channel or complex model, this one "
                                f"has {self.channels} channels")
        if k.ndim != 3 or k.shape[0] == 0:
            raise io.InputError(f"{name}: k-space must be (slices, H, W), got {k.shape}")
        s, h, w = k.shape
        if self.size is not None and (h, w) != (self.size, self.size):
            raise io.InputError(f"{name}: k-space is {h}x{w} but the model takes "
                                f"{self.size}x{self.size} (crop or resample the k-space first)")
        _finite(k, name)
        k_u = kspace_to_ours(k.astype(np.complex128))
        full = bool((np.abs(k_u).max(0) > 0).all())
        if full:
            mask = make_operator("mri", (1, h, w), **self.params).mask.numpy()
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
        real = hermitian(k_u, mask)
        op = MRI(torch.from_numpy(mask.copy()), (1, h, w), complex_image=self.complex or not real)
        stem = stem_of(path)
        suffix = io.suffix_of(path)
        src = Source(path, "kspace", stem, f"{stem}{suffix}", multi=not single,
                     meta={"scale": scale, "n_slices": s, "mask": origin, "real_image": real,
                           "h5": suffix in H5_SUFFIXES, "single": single})
        y_all = torch.from_numpy((k_u / scale).astype(np.complex64))[:, None]
        for i in select_slices(s, self.sel, name):
            iname = name if single else f"{name}[{i}]"
            istem = stem if single else f"{stem}_s{i:03d}"
            x = None
            if ref is not None:
                x = torch.from_numpy((ref[i] / scale).astype(np.float32))[None, None]
                x = x.to(self.device)
            src.items.append(Item(iname, istem, src, i, op, y_all[i: i + 1].to(self.device), x,
                                  self._generator(iname)))
        return src


def nifti_affine(affine: np.ndarray, geo: dict, axis: int, size: int, chosen: list) -> np.ndarray:
    """The affine of the output volume: voxel (i, j, k) of the reconstruction (size x size
    in-plane, the ``chosen`` slices along ``axis``) -> world, through the input's ``affine``.

    In-plane, output index u maps to the input voxel lo - pad + f u + (f - 1)/2 with
    f = side / size (the voxel centres of the crop, pad and area resize of
    ``datasets.volume_slices``, whose turn the writer undoes); along ``axis``, index k is the
    input slice chosen[0] + (chosen[1] - chosen[0]) k."""
    f = geo["side"] / size
    m = np.zeros((4, 4))
    m[3, 3] = 1.0
    step = chosen[1] - chosen[0] if len(chosen) > 1 else 1
    m[axis, axis], m[axis, 3] = step, chosen[0]
    plane = [d for d in range(3) if d != axis]
    for d, lo, pad in zip(plane, geo["crop_lo"], geo["pad_before"]):
        m[d, d], m[d, 3] = f, lo - pad + (f - 1) / 2
    return np.asarray(affine, dtype=np.float64) @ m
