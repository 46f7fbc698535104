"""All file reading and writing (images, NumPy, NIfTI, fastMRI-style HDF5, IDX, JSON).

Images come back as float32 tensors in [0, 1], shaped (C, H, W).  Writers go through
``atomic_write`` so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


class InputError(ValueError):
    """A user-facing problem with an input file (printed as one line by the CLI)."""


_UMASK = os.umask(0o22)  # read the process umask (and put it back)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def suffix_of(path) -> str:
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


# ---------------------------------------------------------------- images
def read_image(path, channels: int | None = None) -> Tensor:
    """A PNG/JPEG/TIFF as (C, H, W) float32 in [0, 1]; channels=1 converts to grayscale."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if channels == 1:
                im = im.convert("L")
            elif channels == 3 or im.mode not in ("L", "I;16", "I", "F"):
                im = im.convert("RGB")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16 or arr.dtype.kind in "iu":
        arr = arr.astype(np.float32) / max(float(arr.max()), 1.0)
    else:
        arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def write_image(path, img: Tensor) -> None:
    """Write (C, H, W) or (H, W) values in [0, 1] as an 8-bit PNG (atomically)."""
    from PIL import Image

    a = img.detach().float().cpu().clamp(0, 1).numpy()
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    im = Image.fromarray((a * 255 + 0.5).astype(np.uint8))
    with atomic_write(path) as f:
        im.save(f, format="PNG")


# ---------------------------------------------------------------- arrays
def tile(x: Tensor, cols: int) -> Tensor:
    """Images x (N, C, H, W) as one (C, rows H, cols W) grid, row by row; blank cells are 0."""
    n, c, h, w = x.shape
    rows = -(-n // cols)
    x = torch.cat([x, x.new_zeros(rows * cols - n, c, h, w)])
    return x.reshape(rows, cols, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, cols * w)


def read_npy(path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"cannot read {path}: {e}") from None


def write_npy(path, arr) -> None:
    with atomic_write(path) as f:
        np.save(f, np.asarray(arr))


def read_idx(path) -> np.ndarray:
    """An IDX file (MNIST / Fashion-MNIST format, optionally gzipped) as a uint8 array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise InputError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise InputError(f"{path} is truncated")
    return arr.reshape(dims)


def read_nifti(path) -> np.ndarray:
    """A NIfTI volume as a float32 array (x, y, z[, ...]), read with nibabel."""
    import nibabel as nib

    try:
        return np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
    except Exception as e:  # nibabel raises many types for bad files
        raise InputError(f"cannot read NIfTI {path}: {e}") from None


def write_nifti(path, vol: np.ndarray) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(vol, dtype=np.float32), np.eye(4))
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    with atomic_write(path) as f:
        f.write(img.to_bytes() if suffix == ".nii" else gzip.compress(img.to_bytes()))


def read_h5_kspace(path, dataset: str = "kspace") -> tuple[np.ndarray, np.ndarray | None, dict]:
    """A fastMRI-style HDF5 file: (kspace (slices, [coils,] H, W) complex, mask or None, attrs)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise InputError(f"{path} has no '{dataset}' dataset (found: {', '.join(f.keys())})")
            k = np.asarray(f[dataset])
            mask = np.asarray(f["mask"]) if "mask" in f else None
            attrs = dict(f.attrs)
    except OSError as e:
        raise InputError(f"cannot read HDF5 {path}: {e}") from None
    if not np.iscomplexobj(k):
        raise InputError(f"{path}: '{dataset}' must be complex, got {k.dtype}")
    return k, mask, attrs


def write_h5(path, **datasets) -> None:
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in datasets.items():
                f.create_dataset(k, data=np.asarray(v))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------- fastMRI files
FASTMRI_TARGETS = ("reconstruction_rss", "reconstruction_esc")


def read_fastmri(path) -> dict:
    """A fastMRI .h5 file as it ships (Zbontar et al., arXiv 1811.08839):
    {"kspace": (S, H, W) single-coil or (S, coils, H, W) multi-coil complex, centred layout;
    "mask": the test split's (W,) column mask or None; "attrs": dict (acquisition, max, norm,
    patient_id, acceleration ...); "ismrmrd_header": the XML as bytes, or None;
    "targets": {"reconstruction_rss" | "reconstruction_esc": (S, 320, 320)} where present}."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "kspace" not in f:
                raise InputError(f"{Path(path).name} has no 'kspace' dataset (found: "
                                 f"{', '.join(f.keys()) or 'nothing'}); a fastMRI file holds "
                                 "kspace (slices, [coils,] H, W)")
            k = np.asarray(f["kspace"])
            n = k.shape[0] if k.ndim else 0
            out = {"kspace": k, "attrs": dict(f.attrs),
                   "mask": np.asarray(f["mask"]) if "mask" in f else None,
                   "ismrmrd_header": _as_bytes(f["ismrmrd_header"][()])
                   if "ismrmrd_header" in f else None,
                   "targets": {}}
            for key in FASTMRI_TARGETS:
                if key in f and f[key].ndim == 3 and f[key].shape[0] == n:
                    out["targets"][key] = np.asarray(f[key])
    except OSError as e:
        raise InputError(f"cannot read HDF5 {path}: {e}") from None
    if not np.iscomplexobj(out["kspace"]):
        raise InputError(f"{Path(path).name}: 'kspace' must be complex, got {out['kspace'].dtype}")
    return out


def _as_bytes(v) -> bytes:
    if isinstance(v, str):
        return v.encode()
    return v.tobytes() if isinstance(v, np.ndarray) else bytes(v)


def write_h5_file(path, datasets: dict, attrs: dict | None = None) -> None:
    """An HDF5 file with ``datasets`` and root ``attrs``, written atomically."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in datasets.items():
                f.create_dataset(k, data=v if isinstance(v, (bytes, np.bytes_)) else np.asarray(v))
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_nifti_volume(path, vol: np.ndarray, voxel_mm=(1.0, 1.0, 1.0)) -> None:
    """A NIfTI volume with a diagonal affine of the voxel sizes (mm), written atomically."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(vol, dtype=np.float32), np.diag([*voxel_mm, 1.0]))
    img.header.set_xyzt_units("mm")
    with atomic_write(path) as f:
        f.write(gzip.compress(img.to_bytes()) if str(path).endswith(".gz") else img.to_bytes())
