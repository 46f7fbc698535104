"""All file reading and writing: images, NumPy, NIfTI, fastMRI-style HDF5, IDX, JSON and
JSON lines, safetensors weights, model folders and torch checkpoints.

Images come back as float32 tensors in [0, 1], shaped (C, H, W), every mode at its full range
(``read_image``).  Readers accept regular files only (a FIFO would block) and check sizes from
the header before decoding (``MAX_PIXELS``, ``MAX_ELEMENTS``).  Writers go through
``atomic_write`` (a temporary ``.ccdf-XXXXXXXX.tmp`` beside the target, then a rename) so an
interrupted run never leaves a half-written file.  What a model folder's config means (which
network family) is ``models.formats``' concern; the bytes on disk are this module's.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import pickle
import stat
import tempfile
import warnings
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


#: images larger than this (from the header, before decoding) are refused: 4096 x 4096
MAX_PIXELS = 1 << 24
#: arrays (.npy, NIfTI, HDF5 datasets) with more elements are refused: 1 GiB of float32
MAX_ELEMENTS = 1 << 28


class InputError(ValueError):
    """A user-facing problem with an input file (printed as one line by the CLI)."""


def shown(name) -> str:
    """A file name as printed in a message: undecodable bytes and control characters (a
    newline in a name) escaped, so the message stays one readable line."""
    s = os.fsencode(str(name)).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in s)


def one_line(e: BaseException) -> str:
    """An exception's message as one line: ccdf's own (``InputError``) whole, its control
    characters escaped (a file name may hold a newline); another's first line."""
    msg = str(e).strip()
    if isinstance(e, InputError):
        msg = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in msg)
    return (msg.splitlines() or [""])[0] or type(e).__name__


def regular_file(path) -> Path:
    """``path`` if it is a regular file (symlinks followed), else InputError: a FIFO or a
    device named like an input would block or never end."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"file not found: {shown(path)}") from None
    except OSError as e:
        raise InputError(f"cannot read {shown(path)}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
            "a device or socket"
        raise InputError(f"{shown(path)} is {what}, not a regular file")
    return path


_UMASK = os.umask(0o22)  # read the process umask (and put it back)
os.umask(_UMASK)
TMP_PREFIX, TMP_SUFFIX = ".ccdf-", ".tmp"   # atomic_write's temporaries: .ccdf-XXXXXXXX.tmp


@contextlib.contextmanager
def _temporary(path: Path):
    """A new temporary file name beside ``path`` (short, whatever the length of the name),
    given the usual mode on success, removed on failure or interruption."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=path.parent)
    try:
        yield fd, tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success."""
    with _temporary(Path(path)) as (fd, _), os.fdopen(fd, mode) as f:
        yield f


@contextlib.contextmanager
def atomic_path(path):
    """``atomic_write`` for writers that take a file name (h5py, safetensors): the name of a
    temporary beside ``path``, renamed onto ``path`` only on success."""
    with _temporary(Path(path)) as (fd, tmp):
        os.close(fd)
        yield tmp


def write_text(path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def read_json(path):
    return json.loads(Path(path).read_text())


def write_json(path, obj) -> None:
    """``obj`` as indented JSON (tuples and other iterables as lists), atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, default=list)
        f.write("\n")


# ---------------------------------------------------------------- JSON lines (logs, manifests)
def read_jsonl(path) -> list[dict]:
    """The JSON objects of a JSON-lines file, in order; lines that do not parse as an object
    (a torn last line left by a kill, undecodable bytes) are skipped."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if isinstance(e, dict):
                out.append(e)
    return out


def write_jsonl(path, entries) -> None:
    """Replace a JSON-lines file with ``entries`` (one object per line), atomically."""
    with atomic_write(path, "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in entries)


class JsonlWriter:
    """Appends JSON objects to a JSON-lines file, one ``O_APPEND`` write per line (so lines of
    concurrent writers never interleave); a torn last line is cut off when it is opened."""

    def __init__(self, path):
        path = Path(path)
        cut_torn_tail(path)
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def append(self, entry: dict) -> None:
        data = (json.dumps(entry) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data):]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def cut_torn_tail(path) -> None:
    """Truncate a file after its last newline (drops a line cut short by a kill)."""
    try:
        f = open(path, "rb+")
    except FileNotFoundError:
        return
    with f:
        end = pos = f.seek(0, os.SEEK_END)
        while pos > 0:
            start = max(0, pos - 65536)
            f.seek(start)
            k = f.read(pos - start).rfind(b"\n")
            if k >= 0:
                if start + k + 1 != end:
                    f.truncate(start + k + 1)
                return
            pos = start
        f.truncate(0)


# ---------------------------------------------------------------- weights and checkpoints
WEIGHTS, CONFIG = "model.safetensors", "config.json"   # a model folder's two files


def read_weights(path) -> dict:
    """A safetensors file as {name: tensor} (on the CPU)."""
    return safetensors.torch.load_file(str(path))


def write_weights(path, state_dict: dict) -> None:
    """{name: tensor} as a safetensors file (contiguous CPU copies), atomically."""
    sd = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(sd, tmp)


def write_model_folder(folder, state_dict: dict, config: dict) -> Path:
    """``folder/model.safetensors`` + ``folder/config.json``, each written atomically (the
    weights first: a folder whose config.json is there is complete)."""
    folder = Path(folder)
    write_weights(folder / WEIGHTS, state_dict)
    write_json(folder / CONFIG, config)
    return folder


def read_model_folder(folder) -> tuple[dict, dict]:
    """(config, state dict) of a model folder (``write_model_folder``)."""
    folder = Path(folder)
    return read_json(folder / CONFIG), read_weights(folder / WEIGHTS)


def read_checkpoint(path):
    """torch.load(weights_only=True) onto the CPU: tensors, containers and numbers only,
    never code (ValueError for anything else or an unreadable file)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"refusing to load {path}: it holds pickled objects other than tensors, "
                         f"containers and numbers ({str(e).splitlines()[0][:120]}); pickled "
                         "code is never executed") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"cannot read {path} as a torch checkpoint: {e}") from None


def read_state_dict(path) -> dict:
    """A flat {name: tensor} checkpoint (refuses anything else, see ``read_checkpoint``)."""
    sd = read_checkpoint(path)
    if not isinstance(sd, dict) or not sd or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise ValueError(f"{path} is not a flat state dict of tensors")
    return sd


def write_checkpoint(path, obj) -> None:
    """torch.save(obj) atomically (read back with ``read_checkpoint``)."""
    with atomic_write(path) as f:
        torch.save(obj, f)


def suffix_of(path) -> str:
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


# ---------------------------------------------------------------- images
_GRAY_MODES = {"1": 255, "L": 255, "LA": 255, "I;16": 65535, "I;16L": 65535, "I;16B": 65535,
               "I;16N": 65535}
_COLOUR_MODES = ("P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV")


def _open_image(path):
    """PIL's lazy open (header only) of a regular file; InputError for what it cannot open
    and for images over MAX_PIXELS (checked before any pixel is decoded)."""
    from PIL import Image, UnidentifiedImageError

    path = regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as e:
        claim = str(e).split(",")[0]  # "Image size (N pixels) exceeds limit of M pixels"
        raise InputError(f"{shown(path)}: refused, not decoded: {claim}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"cannot read image {shown(path)}: {e}") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        im.close()
        raise InputError(f"{shown(path)}: refused, the header claims {w}x{h} pixels (more than "
                         f"{MAX_PIXELS} = 4096x4096); not decoded")
    return im


def image_size(path) -> tuple[int, int]:
    """(H, W) of an image from its header, without decoding it."""
    with _open_image(path) as im:
        return im.size[1], im.size[0]


def read_image(path, channels: int | None = None, convert: bool = False) -> Tensor:
    """A PNG/JPEG/TIFF/BMP as (C, H, W) float32 in [0, 1], every mode at its full range.

    8-bit modes are divided by 255, 16-bit ones (``I;16``, a 16-bit PNG) by 65535, 32-bit
    integer PNGs (16-bit data) by 65535; float images (``F``, e.g. a float TIFF) must already
    lie in [0, 1] (like ``.npy``).  32-bit integer TIFFs, multi-frame files and images with
    transparent pixels are refused: their meaning is ambiguous.  ``channels``: 1 gives gray
    (a colour image whose channels are all equal is gray; a real colour image is refused
    unless ``convert``, which takes its luminance, ITU-R 601), 3 gives RGB (gray repeated).
    """
    with _open_image(path) as im:
        name = shown(path)
        if getattr(im, "n_frames", 1) > 1:
            raise InputError(f"{name} has {im.n_frames} frames; only single images are read "
                             "(save a stack as .npy)")
        try:
            im.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"cannot read image {name}: {e}") from None
        mode = im.mode
        if mode in ("LA", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in im.info):
            alpha = im.convert("RGBA").getchannel("A")
            if alpha.getextrema()[0] < 255:
                raise InputError(f"{name} has transparent pixels (mode {mode}); flatten it onto "
                                 "a background first")
        if mode in _GRAY_MODES:
            arr = np.asarray(im.convert("L") if mode in ("1", "LA") else im)
            arr = arr.astype(np.float32) / _GRAY_MODES[mode]
        elif mode == "I" and im.format == "PNG":  # 16-bit PNG data held as 32-bit integers
            arr = np.asarray(im).astype(np.float32) / 65535.0
        elif mode == "I":
            a = np.asarray(im)
            raise InputError(f"{name} is a 32-bit integer image (values {a.min()} to {a.max()}); "
                             "its range is ambiguous: save it as an 8- or 16-bit image, or as "
                             "floats in [0, 1] (float TIFF or .npy)")
        elif mode == "F":
            arr = np.asarray(im).astype(np.float32)
            if not np.isfinite(arr).all():
                raise InputError(f"{name} contains NaN or Inf")
            lo, hi = float(arr.min()), float(arr.max())
            if lo < 0 or hi > 1:
                raise InputError(f"{name}: a float image's values must lie in [0, 1], got "
                                 f"[{lo:.3g}, {hi:.3g}] (scale it first)")
        elif mode in _COLOUR_MODES:
            arr = np.asarray(im.convert("RGB")).astype(np.float32) / 255.0
        else:
            raise InputError(f"{name}: unsupported image mode {mode} (supported: 8/16-bit gray, "
                             "8-bit palette/RGB/CMYK, float in [0, 1])")
    if arr.ndim == 3:
        arr = arr.transpose(2, 0, 1)
        gray = bool((arr[0] == arr[1]).all() and (arr[0] == arr[2]).all())
        if channels == 1 and gray:
            arr = arr[:1]
        elif channels == 1 and convert:
            arr = (0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2])[None]
        elif channels == 1:
            raise InputError(f"{name} is a colour image (mode {mode}) but a grayscale (1-channel) "
                             "image is needed; convert it to grayscale first (it is not "
                             "converted silently)")
    else:
        arr = arr[None]
        if channels == 3:
            arr = np.repeat(arr, 3, 0)
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


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
    """A .npy array (never a pickle); its shape is checked against the file size and
    MAX_ELEMENTS before anything is allocated (the file is memory-mapped first)."""
    path = regular_file(path)
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
        if a.size > MAX_ELEMENTS:
            raise InputError(f"{shown(path)}: refused, the array {a.shape} has more than "
                             f"{MAX_ELEMENTS} elements")
        return np.array(a)
    except (ValueError, OSError, EOFError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"cannot read {shown(path)}: {e}") from None


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
    return read_nifti_image(path)[0]


def read_nifti_image(path):
    """(volume float32 (x, y, z[, ...]) in the file's units (scl_slope/inter applied), its
    affine (4, 4), its header); the shape is checked from the header before reading."""
    import nibabel as nib

    path = regular_file(path)
    try:
        img = nib.load(str(path))
        n = int(np.prod(img.shape))
        if n > MAX_ELEMENTS:
            raise InputError(f"{shown(path)}: refused, the header claims a volume {img.shape} "
                             f"with more than {MAX_ELEMENTS} voxels")
        return np.asarray(img.get_fdata(dtype=np.float32)), np.asarray(img.affine), img.header
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 -- nibabel raises many types for bad files
        raise InputError(f"cannot read NIfTI {shown(path)}: {e}") from None


def write_nifti(path, vol: np.ndarray, affine=None, header=None) -> None:
    """Write a float32 volume; ``affine`` (default identity) goes into the sform and qform
    (with the codes of ``header`` when given, whose units and orientation fields are kept)."""
    import nibabel as nib

    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    hdr = None
    if header is not None:
        hdr = header.copy()
        hdr.set_data_dtype(np.float32)
        hdr["cal_min"], hdr["cal_max"] = 0, 0
    img = nib.Nifti1Image(np.asarray(vol, dtype=np.float32), affine, hdr)
    if header is not None:
        s_code, q_code = int(header["sform_code"]), int(header["qform_code"])
        img.set_sform(affine, s_code or (0 if q_code else 2))
        img.set_qform(affine, q_code or (0 if s_code else 2))
    img.header.set_slope_inter(1.0, 0.0)
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    with atomic_write(path) as f:
        f.write(img.to_bytes() if suffix == ".nii" else gzip.compress(img.to_bytes()))


def read_h5_kspace(path, dataset: str = "kspace") -> tuple[np.ndarray, np.ndarray | None, dict]:
    """A fastMRI-style HDF5 file: (kspace (slices, [coils,] H, W) complex, mask or None, attrs)."""
    import h5py

    path = regular_file(path)
    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise InputError(f"{path} has no '{dataset}' dataset (found: {', '.join(f.keys())})")
            if f[dataset].size > MAX_ELEMENTS:
                raise InputError(f"{shown(path)}: refused, '{dataset}' {f[dataset].shape} has "
                                 f"more than {MAX_ELEMENTS} elements")
            k = np.asarray(f[dataset])
            mask = np.asarray(f["mask"]) if "mask" in f else None
            attrs = dict(f.attrs)
    except OSError as e:
        raise InputError(f"cannot read HDF5 {path}: {e}") from None
    if not np.iscomplexobj(k):
        raise InputError(f"{path}: '{dataset}' must be complex, got {k.dtype}")
    return k, mask, attrs


def write_h5(path, **datasets) -> None:
    """Write datasets to an HDF5 file (atomically, with the usual file mode)."""
    write_h5_file(path, datasets)


# ---------------------------------------------------------------- fastMRI files
FASTMRI_TARGETS = ("reconstruction_rss", "reconstruction_esc")


def read_fastmri(path) -> dict:
    """A fastMRI .h5 file as it ships (Zbontar et al., arXiv 1811.08839):
    {"kspace": (S, H, W) single-coil or (S, coils, H, W) multi-coil complex, centred layout;
    "mask": the test split's (W,) column mask or None; "attrs": dict (acquisition, max, norm,
    patient_id, acceleration ...); "ismrmrd_header": the XML as bytes, or None;
    "targets": {"reconstruction_rss" | "reconstruction_esc": (S, 320, 320)} where present}."""
    import h5py

    path = regular_file(path)
    try:
        with h5py.File(path, "r") as f:
            if "kspace" not in f:
                raise InputError(f"{shown(path.name)} has no 'kspace' dataset (found: "
                                 f"{', '.join(f.keys()) or 'nothing'}); a fastMRI file holds "
                                 "kspace (slices, [coils,] H, W)")
            if f["kspace"].size > MAX_ELEMENTS:
                raise InputError(f"{shown(path)}: refused, 'kspace' {f['kspace'].shape} has "
                                 f"more than {MAX_ELEMENTS} elements")
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
        raise InputError(f"cannot read HDF5 {shown(path)}: {e}") from None
    if not np.iscomplexobj(out["kspace"]):
        raise InputError(f"{shown(path.name)}: 'kspace' must be complex, got "
                         f"{out['kspace'].dtype}")
    return out


def _as_bytes(v) -> bytes:
    if isinstance(v, str):
        return v.encode()
    return v.tobytes() if isinstance(v, np.ndarray) else bytes(v)


def write_h5_file(path, datasets: dict, attrs: dict | None = None) -> None:
    """An HDF5 file with ``datasets`` and root ``attrs``, written atomically (the usual mode)."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v if isinstance(v, (bytes, np.bytes_)) else np.asarray(v))
        for k, v in (attrs or {}).items():
            f.attrs[k] = v


def write_nifti_volume(path, vol: np.ndarray, voxel_mm=(1.0, 1.0, 1.0)) -> None:
    """A NIfTI volume with a diagonal affine of the voxel sizes (mm) (``write_nifti``)."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_xyzt_units("mm")
    write_nifti(path, vol, np.diag([*map(float, voxel_mm), 1.0]), hdr)
