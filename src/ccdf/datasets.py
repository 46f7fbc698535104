"""Training / evaluation data: built-in data sets and user folders, as (N, C, H, W) in [0, 1].

Built-in (no download; each comes from a package):
  fashion-mnist[:train|:test|:val]  Debian package ``dataset-fashion-mnist``; 28x28 padded to 32x32.
  mni152[:train|:heldout|:val] MNI152 2009a T1 template in the ``nilearn`` wheel; axial slices
                               resized to 64x64.  Axial slices HELDOUT_Z are held out, with a
                               margin of MARGIN slices on each side never used for training.
  brains                       mni152:train plus every axial slice of the Colin27 brain
                               (Debian package ``mricron-data``, ch2bet.nii.gz): a second brain.
  fashion-mnist:sample, mni152:sample   the evaluation images committed in the package
                               (48 Fashion-MNIST test images; the 16 held-out MNI152 slices).
  mri:SET[-complex]            the MRI evaluation sets committed in assets/data/mri (written by
                               scripts/make_mri_eval.py; ``mri_set``), at their own size, NOT
                               clipped (volume 99.5th percentile = 1): heldout256 (the held-out
                               axial band, native 1 mm), val64/val128/val256 (the margin slices,
                               for choosing lambda and t0), ood64/ood128/ood256 (Shepp-Logan,
                               MNI152 sagittal and coronal); -complex adds a smooth phase.
Anything else is a path: a folder of images, a NIfTI volume, a .npy stack or a fastMRI .h5 file.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import io
from .assets import ASSETS, MRI_DIR, SAMPLES

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNI_FILE = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
COLIN_FILE = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
COLIN_HEAD = Path("/usr/share/mricron/templates/ch2.nii.gz")        # 1 mm, with the head
COLIN_HALF_MM = Path("/usr/share/mricron/templates/ch2better.nii.gz")  # 0.5 mm, with the head
HELDOUT_Z = range(86, 102)  # 16 axial slices through the ventricles
MARGIN = 3


def sample(name: str) -> Tensor:
    """The committed evaluation sample of a built-in data set, (N, 1, H, W) in [0, 1]."""
    a = io.read_npy(ASSETS / SAMPLES[name])
    x = torch.from_numpy(a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0))
    return x[:, None]


MRI_SETS = ("heldout256", "val64", "val128", "val256", "ood64", "ood128", "ood256")


def smooth_phase(coef, h: int, w: int) -> Tensor:
    """(N, H, W) float64 phase maps phi = c0 + c1 u + c2 v + c3 u^2 + c4 u v + c5 v^2 for
    coefficients ``coef`` (N, 6), u (columns) and v (rows) in [-1, 1]."""
    c = torch.as_tensor(coef, dtype=torch.float64)
    v, u = torch.meshgrid(torch.linspace(-1, 1, h, dtype=torch.float64),
                          torch.linspace(-1, 1, w, dtype=torch.float64), indexing="ij")
    basis = torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v])  # (6, H, W)
    return torch.einsum("nk,khw->nhw", c, basis)


def mri_set(name: str) -> Tensor:
    """A committed MRI evaluation set: ``heldout256``, ``val64`` ... ``ood256``, with
    ``-complex`` for the version with its smooth phase (``smooth_phase``, coefficients in
    index.json).  Returns (N, 1, H, W) float32 (complex64 with -complex), magnitude scaled so
    that the volume's 99.5th percentile is 1 and not clipped.  See scripts/make_mri_eval.py."""
    base, _, kind = name.partition("-")
    if base not in MRI_SETS or kind not in ("", "complex"):
        raise ValueError(f"unknown MRI set {name!r}; choose one of "
                         f"{', '.join(MRI_SETS)} (optionally with -complex)")
    x = torch.from_numpy(io.read_npy(MRI_DIR / f"{base}.npy").astype(np.float32))
    if kind == "complex":
        meta = json.loads((MRI_DIR / "index.json").read_text())["sets"][base]
        x = torch.polar(x, smooth_phase(meta["phase"], *x.shape[-2:]).float())
    return x[:, None].contiguous()


def validation_spec(spec: str) -> str | None:
    """The validation set that goes with an evaluation data spec (to choose lambda and t0 on,
    never on the evaluation images): mri:heldout256[-complex] and mri:oodN[-complex] ->
    mri:val256 / mri:valN (same size and kind), mni152:sample -> mni152:val; else None."""
    name, _, split = spec.partition(":")
    if name == "mni152" and split in ("sample", "heldout"):
        return "mni152:val"
    if name == "mri":
        base, _, kind = split.partition("-")
        for prefix in ("heldout", "ood"):
            if base.startswith(prefix) and base in MRI_SETS:
                return f"mri:val{base[len(prefix):]}" + (f"-{kind}" if kind else "")
    return None


def sample_indices() -> Tensor:
    """Indices in the Fashion-MNIST test split of the committed 48-image evaluation sample."""
    return torch.randperm(10000, generator=torch.Generator().manual_seed(0))[:48].sort().values


def _fashion_idx(split: str, kind: str) -> np.ndarray:
    """The raw Fashion-MNIST ``kind`` ('images' | 'labels') array of ``split``."""
    if split == "val":
        keep = np.ones(10000, dtype=bool)
        keep[sample_indices().numpy()] = False
        return _fashion_idx("test", kind)[keep][:1000]
    name = {"train": "train", "test": "t10k"}[split]
    path = FASHION_DIR / f"{name}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: install the Debian package 'dataset-fashion-mnist' "
            "(apt-get install dataset-fashion-mnist)")
    return io.read_idx(path)


def fashion_mnist(split: str = "train") -> Tensor:
    """split: train (60k), test (10k), val (the first 1000 test images outside the sample)."""
    x = torch.from_numpy(_fashion_idx(split, "images").astype(np.float32) / 255.0)[:, None]
    return F.pad(x, (2, 2, 2, 2))


def fashion_mnist_labels(split: str = "train") -> Tensor:
    """Class labels (N,) int64 of ``fashion_mnist(split)``, same order."""
    return torch.from_numpy(_fashion_idx(split, "labels").astype(np.int64))


def mni152_path() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the MNI152 template ships in the 'nilearn' wheel: pip install nilearn")
    return Path(list(spec.submodule_search_locations)[0]) / MNI_FILE


def volume_slices(vol: np.ndarray, size: int, axis: int = 2, pct: float = 99.5,
                  geometry: dict | None = None) -> Tensor:
    """Slices of a volume along ``axis`` as (S, 1, size, size) in [0, 1].

    Intensities are scaled by the volume's ``pct`` percentile; each slice is zero-padded to a
    square, then area-resized to ``size``.  Slices are rotated so anterior is up.
    ``geometry`` (a dict), when given, receives what undoes this: ``scale`` (the percentile),
    ``crop_lo`` and ``crop_shape`` (the bounding box along the two in-plane axes, in the
    volume's axis order), ``pad_before`` (the zero padding before each of them) and ``side``
    (the padded square's side, resized to ``size``).
    """
    vol = np.asarray(vol, dtype=np.float32)
    lo = [0] * vol.ndim
    nz = np.argwhere(vol > 0.05 * vol.max())
    if len(nz):  # crop to the object's bounding box (all axes but the slice axis)
        lo, hi = nz.min(0), nz.max(0) + 1
        sl = [slice(int(a), int(b)) for a, b in zip(lo, hi)]
        sl[axis] = slice(None)
        vol = vol[tuple(sl)]
    vol = np.moveaxis(vol, axis, 0)
    scale = float(np.percentile(vol[vol > 0], pct)) if (vol > 0).any() else 1.0
    x = torch.from_numpy(np.clip(vol / max(scale, 1e-8), 0, 1))
    x = torch.rot90(x, 1, (1, 2))[:, None]
    h, w = x.shape[-2:]
    m = max(h, w)
    x = F.pad(x, ((m - w) // 2, m - w - (m - w) // 2, (m - h) // 2, m - h - (m - h) // 2))
    if geometry is not None:  # rows of the turned slice run along the 2nd in-plane axis, reversed
        geometry.update(scale=max(scale, 1e-8), side=m,
                        crop_lo=[int(v) for i, v in enumerate(lo) if i != axis],
                        crop_shape=[w, h], pad_before=[(m - w) // 2, m - h - (m - h) // 2])
    return F.interpolate(x, size=(size, size), mode="area").clamp(0, 1)


def native_slices(vol: np.ndarray, axis: int, pct: float = 99.5, every: int = 1,
                  keep=None, min_fill: float = 0.15) -> list:
    """2-D slices of a volume along ``axis`` at its native resolution, anterior/superior up.

    Intensities are divided by the volume's ``pct`` percentile (not clipped); each slice is
    cropped to the object's bounding box (threshold 5% of the maximum).  Slices whose object
    fills less than ``min_fill`` of the box are dropped; ``keep(i)`` selects slice indices.
    Returns a list of float32 arrays of varying sizes.
    """
    vol = np.asarray(vol, dtype=np.float32)
    scale = float(np.percentile(vol[vol > 0], pct)) if (vol > 0).any() else 1.0
    vol = np.moveaxis(vol / max(scale, 1e-8), axis, 0)
    out = []
    for i in range(0, vol.shape[0], every):
        if keep is not None and not keep(i):
            continue
        s = np.rot90(vol[i])
        fg = s > 0.05 * max(float(vol.max()), 1e-8)
        if fg.mean() < 0.02:
            continue
        rows, cols = np.where(fg.any(1))[0], np.where(fg.any(0))[0]
        s = s[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        if fg[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].mean() >= min_fill and min(s.shape) >= 16:
            out.append(np.ascontiguousarray(s))
    return out


def brains_native() -> list:
    """The slices the size-independent MRI prior is trained on (native resolution, 2-D arrays).

    MNI152 (1 mm): axial slices outside the held-out band and its margin.  Colin27: all three
    orientations at 1 mm (ch2, with the head) and at 0.5 mm (ch2better, every second slice).
    MNI152's sagittal and coronal slices are NOT used: they are the out-of-distribution set.
    """
    for f in (COLIN_HEAD, COLIN_HALF_MM):
        if not f.exists():
            raise FileNotFoundError(f"{f} not found: apt-get install mricron-data")
    near = range(HELDOUT_Z.start - MARGIN, HELDOUT_Z.stop + MARGIN)
    out = native_slices(io.read_nifti(mni152_path()), 2, keep=lambda i: i not in near)
    head, half = io.read_nifti(COLIN_HEAD), io.read_nifti(COLIN_HALF_MM)
    for axis in range(3):
        out += native_slices(head, axis)
        out += native_slices(half, axis, every=2)
    return out


def native_set(spec: str) -> list:
    """Native-resolution 2-D slices for patch training: ``brains-native``, or a NIfTI file or
    a folder of NIfTI files (slices along all three axes)."""
    if spec == "brains-native":
        return brains_native()
    path = Path(spec)
    files = sorted(p for p in path.iterdir() if io.suffix_of(p) in io.NIFTI_SUFFIXES) \
        if path.is_dir() else [path]
    if not files or not all(f.exists() and io.suffix_of(f) in io.NIFTI_SUFFIXES for f in files):
        raise FileNotFoundError(f"patch training takes brains-native or NIfTI volumes, got {spec}")
    out = []
    for f in files:
        vol = io.read_nifti(f)
        for axis in range(3):
            out += native_slices(vol, axis)
    return out


def mni152(split: str = "train", size: int = 64) -> Tensor:
    """Axial MNI152 slices with brain content (mean > 0.08); train excludes the held-out band."""
    x = volume_slices(io.read_nifti(mni152_path()), size, axis=2)
    keep = x.mean(dim=(1, 2, 3)) > 0.08
    z = torch.arange(len(x))
    band = (z >= HELDOUT_Z.start) & (z < HELDOUT_Z.stop)
    near = (z >= HELDOUT_Z.start - MARGIN) & (z < HELDOUT_Z.stop + MARGIN)
    if split == "heldout":
        return x[band]
    if split == "val":  # the margin slices: neither trained on nor in the evaluation band
        return x[near & ~band & keep]
    if split == "train":
        return x[keep & ~near]
    raise ValueError(f"mni152 split must be train, heldout or val, got {split!r}")


def load(spec: str, size: int | None = None, channels: int = 1) -> Tensor:
    """Resolve a data spec (built-in name or path) to (N, C, H, W) float32 in [0, 1]
    (``mri:`` sets and complex .npy files: their own size, complex, not clipped; ``size`` must
    match)."""
    name, _, split = spec.partition(":")
    if split == "sample" and name in SAMPLES:
        return sample(name)
    if name == "mri":
        x = mri_set(split)
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            raise ValueError(f"{spec} holds {x.shape[-2]}x{x.shape[-1]} images but "
                             f"{size}x{size} were asked for (the model's size)")
        return x
    if name == "fashion-mnist":
        return fashion_mnist(split or "train")
    if name == "mni152":
        return mni152(split or "train", size or 64)
    if name == "brains":
        if not COLIN_FILE.exists():
            raise FileNotFoundError(f"{COLIN_FILE} not found: apt-get install mricron-data")
        colin = volume_slices(io.read_nifti(COLIN_FILE), size or 64, axis=2)
        colin = colin[colin.mean(dim=(1, 2, 3)) > 0.08]
        return torch.cat([mni152("train", size or 64), colin])
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"data not found: {spec} (built-in: fashion-mnist, mni152, "
                                f"brains, mri:{'|'.join(MRI_SETS)}[-complex])")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if io.suffix_of(p) in io.IMAGE_SUFFIXES)
        if not files:
            raise io.InputError(f"no images in {path}")
        x = torch.stack([io.read_image(p, channels, convert=True) for p in files])
    elif io.suffix_of(path) in io.NIFTI_SUFFIXES:
        x = volume_slices(io.read_nifti(path), size or 64, axis=2)
        x = x[x.mean(dim=(1, 2, 3)) > 0.08]
    elif io.suffix_of(path) == ".npy":
        a = io.read_npy(path)
        if np.iscomplexobj(a):  # complex MRI images: kept as they are (units, phase, size)
            if a.ndim not in (3, 4):
                raise io.InputError(f"{path}: complex images must be (N, H, W) or (N, 1, H, "
                                    f"W), got {a.shape}")
            if size is not None and tuple(a.shape[-2:]) != (size, size):
                raise ValueError(f"{spec} holds {a.shape[-2]}x{a.shape[-1]} complex images but "
                                 f"{size}x{size} were asked for (the model's size)")
            return torch.from_numpy(a.astype(np.complex64)).reshape(len(a), 1, *a.shape[-2:])
        a = a.astype(np.float32)
        x = torch.from_numpy(a if a.ndim == 4 else a[:, None])
    elif io.suffix_of(path) in (".h5", ".hdf5"):
        k, _, _ = io.read_h5_kspace(path)
        img = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"),
                                     axes=(-2, -1)))
        if img.ndim == 4:  # (slices, coils, H, W): root-sum-of-squares
            img = np.sqrt((img**2).sum(1))
        img = img / np.percentile(img, 99.5)
        x = torch.from_numpy(np.clip(img, 0, 1).astype(np.float32))[:, None]
    else:
        raise io.InputError(f"unsupported data file {path}")
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x.clamp(0, 1)
