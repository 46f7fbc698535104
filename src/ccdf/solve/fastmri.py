"""fastMRI volumes in ``ccdf solve``: single- and multi-coil .h5 files in, submission files out.

Reading (``read_source``), one Source per file, one Item per selected slice:

* ``kspace`` (S, H, W) single-coil or (S, coils, H, W) multi-coil, complex, fastMRI's centred
  layout, any size (readout-oversampled 640 x 368 included) that the prior takes;
* the mask: the test split's ``mask`` dataset ((W,) columns or (H, W)); else, when the k-space
  is fully sampled, the ``--pattern`` mask (retrospective undersampling: the fully sampled
  data is the reference); else the entries that are non-zero;
* multi-coil: coil maps per slice by ESPIRiT (``operators.coils.espirit_maps``) from the
  fully sampled centre of the mask, or ``--coil-maps`` (a .npy/.h5 file of (S, coils, H, W)
  or (coils, H, W) complex maps, or a folder of such files named like the inputs).  The
  image solved for is the SENSE-combined image x with k = M F (S x); the start is CG-SENSE;
* single-coil: the image itself (real when the measured k-space is Hermitian, else complex);
* scale: y is divided by the 99.5th percentile of the zero-filled (RSS) magnitude over the
  selected slices so images lie in about [0, 1]; outputs are multiplied back (input units);
* references: the file's ``reconstruction_rss`` / ``reconstruction_esc``, or, for
  retrospective masks, the RSS / magnitude of the fully sampled data centre-cropped as
  fastMRI crops it; they give fastMRI's per-volume NMSE, PSNR and SSIM (``metrics``).

Writing (``write_source``), per volume: ``NAME.h5`` in fastMRI's submission layout --
``reconstruction`` (S, 320, 320) float32 magnitude (centre-cropped to the target's size,
else the header's reconSpace, else 320 x 320 or the image where smaller), the input's attrs
and ``ismrmrd_header`` untouched, plus ``initial_estimate``, ``slices`` (the indices solved),
``std`` (K > 1 samples) and, with ``--complex-output``, ``reconstruction_complex``
(S, H, W) complex64, the uncropped complex (SENSE-combined) image; ``NAME.nii.gz`` the
cropped magnitude volume (voxel sizes from the header); ``NAME_sNNN.png`` previews (and
``_init``, ``_std``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from .. import io
from ..metrics import center_crop, fastmri_volume
from ..operators import MRI
from ..operators.coils import CalibrationError, check_calibration, coil_images, espirit_maps, rss
from .items import Item, Source, hermitian, kspace_to_ours, select_slices, stem_of

#: CG iterations of the multi-coil pseudo-inverse (the CG-SENSE start and the projection):
#: early-stopped CG-SENSE, as used in practice (more iterations amplify noise)
SENSE_ITERS, SENSE_TOL = 30, 1e-6


def _maps_file(spec: str | None, path: Path) -> Path | None:
    if spec is None:
        return None
    p = Path(spec)
    if p.is_dir():
        stem = path.name[: -len(io.suffix_of(path))]
        for suffix in (".npy", ".h5", ".hdf5"):
            if (p / f"{stem}{suffix}").is_file():
                return p / f"{stem}{suffix}"
        raise io.InputError(f"{path.name}: no coil maps {stem}.npy or {stem}.h5 in {p}")
    if not p.is_file():
        raise io.InputError(f"--coil-maps {spec}: no such file or folder")
    return p


def load_maps(file: Path, shape: tuple, idx: list, name: str) -> np.ndarray:
    """Coil maps (len(idx), C, H, W) complex64 from ``file`` for k-space (S, C, H, W)."""
    s, c, h, w = shape
    if io.suffix_of(file) == ".npy":
        m = io.read_npy(file)
    else:
        import h5py

        try:
            with h5py.File(file, "r") as f:
                keys = [k for k in ("maps", "sens_maps", "sensitivity_maps", "smaps") if k in f]
                if not keys and len(f.keys()) == 1:
                    keys = list(f.keys())
                if not keys:
                    raise io.InputError(f"coil maps {file.name}: expected a dataset 'maps' "
                                        f"(found: {', '.join(f.keys())})")
                m = np.asarray(f[keys[0]])
        except OSError as e:
            raise io.InputError(f"cannot read coil maps {file}: {e}") from None
    if not np.iscomplexobj(m) or m.shape not in ((s, c, h, w), (c, h, w)):
        raise io.InputError(f"coil maps {file.name} are {m.dtype} {m.shape}, but {name}'s "
                            f"k-space {shape} needs complex ({s}, {c}, {h}, {w}) or ({c}, {h}, "
                            f"{w}) maps")
    if not np.isfinite(m).all():
        raise io.InputError(f"coil maps {file.name} contain NaN or Inf")
    m = m[idx] if m.ndim == 4 else np.broadcast_to(m, (len(idx), c, h, w))
    return np.ascontiguousarray(m, dtype=np.complex64)


def _mask(reader, name: str, k: np.ndarray, file_mask) -> tuple[np.ndarray, str]:
    """(mask (H, W) bool centred, origin) -- see the module docstring."""
    from ..operators import make_operator

    h, w = k.shape[-2:]
    if file_mask is not None:
        m = np.asarray(file_mask)
        if m.shape == (w,):
            m = np.broadcast_to(m[None, :], (h, w))
        if m.shape != (h, w):
            raise io.InputError(f"{name}: mask dataset is {m.shape}, expected ({w},) (one entry "
                                f"per k-space column) or ({h}, {w})")
        return np.asarray(m) != 0, "file"
    sampled = (np.abs(k) > 0).reshape(-1, h, w).any(0)
    if sampled.all():
        mask = make_operator("mri", (1, h, w), **reader.params).mask.numpy()
        return np.fft.fftshift(mask), "pattern (retrospective)"
    return sampled, "non-zero k-space entries"


def crop_shape(h: int, w: int, targets: dict, header: bytes | None) -> tuple[int, int]:
    """The output size: the target's, else the header's reconSpace, else min(320, H, W)."""
    for t in targets.values():
        return tuple(int(v) for v in t.shape[-2:])
    if header:
        m = re.search(rb"<reconSpace>\s*<matrixSize>\s*<x>(\d+)</x>\s*<y>(\d+)</y>", header)
        if m and 0 < int(m.group(1)) <= h and 0 < int(m.group(2)) <= w:
            return int(m.group(1)), int(m.group(2))
    return min(320, h), min(320, w)


def voxel_mm(header: bytes | None, crop: tuple[int, int]) -> tuple[float, float, float]:
    """Voxel sizes (mm) of the reconstruction from the header's reconSpace, else 1 mm."""
    if header:
        m = re.search(rb"<reconSpace>.*?<fieldOfView_mm>\s*<x>([\d.eE+-]+)</x>\s*"
                      rb"<y>([\d.eE+-]+)</y>\s*<z>([\d.eE+-]+)</z>", header, re.S)
        if m:
            try:
                fx, fy, fz = (float(v) for v in m.groups())
                if fx > 0 and fy > 0 and fz > 0:
                    return fx / crop[0], fy / crop[1], fz
            except ValueError:
                pass
    return 1.0, 1.0, 1.0


def read_source(reader, path: Path):
    """A fastMRI .h5 file -> a Source of kind 'fastmri' with one Item per selected slice."""
    name = path.name
    if reader.task != "mri":
        raise io.InputError(f"{name}: k-space input needs --task mri")
    f = io.read_fastmri(path)
    k = f["kspace"]
    if k.ndim not in (3, 4) or k.shape[0] == 0:
        raise io.InputError(f"{name}: 'kspace' must be (slices, H, W) single-coil or (slices, "
                            f"coils, H, W) multi-coil, got {k.shape}")
    multi = k.ndim == 4
    s, h, w = k.shape[0], k.shape[-2], k.shape[-1]
    size = reader.size
    if size is not None and (h, w) != (size, size):
        raise io.InputError(f"{name}: k-space is {h}x{w} but the model takes {size}x{size} "
                            "(a size-independent prior takes any size; crop or resample the "
                            "k-space first)")
    if reader.channels != 1:
        raise io.InputError(f"{name}: k-space needs a 1-channel or complex model, this one has "
                            f"{reader.channels} channels")
    if multi and k.shape[1] < 2:
        raise io.InputError(f"{name}: multi-coil k-space needs 2 or more coils, got {k.shape}")
    if not multi and reader.coil_maps:
        raise io.InputError(f"{name}: --coil-maps is for multi-coil k-space (slices, coils, H, "
                            f"W); this file is single-coil {k.shape}")
    if not np.isfinite(k).all():
        raise io.InputError(f"{name} contains NaN or Inf")
    idx = select_slices(s, reader.sel, name)
    k = k[idx]
    mask_c, origin = _mask(reader, name, k, f["mask"])
    if not mask_c.any():
        raise io.InputError(f"{name}: the sampling mask is empty")
    retro = origin.startswith("pattern")
    full = k if retro else None
    k = k * mask_c                                          # (S, [C,] H, W) * (H, W)
    maps, cw = None, None
    if multi:
        mfile = _maps_file(reader.coil_maps, path)
        if mfile is not None:
            maps, maps_origin = load_maps(mfile, (s, *k.shape[1:]), idx, name), mfile.name
        else:
            cw = check_calibration(mask_c, name)       # one line, before any ESPIRiT work
            maps = np.stack([espirit_maps(k[j], mask_c, f"{name}[{i}]")
                             for j, i in enumerate(idx)])
            maps_origin = "ESPIRiT"
    zf = coil_images(k)
    zf = rss(zf) if multi else np.abs(zf)                   # (S, H, W)
    scale = float(np.percentile(zf, 99.5))
    if not scale > 0:
        raise io.InputError(f"{name}: the measured k-space is all zeros")
    targets = {key: t[idx] for key, t in f["targets"].items()
               if key == ("reconstruction_rss" if multi else "reconstruction_esc")}
    ref_full = None
    if full is not None:
        ref_full = rss(coil_images(full)) if multi else np.abs(coil_images(full))
    crop = crop_shape(h, w, targets, f["ismrmrd_header"])
    target, target_kind = next(iter(targets.values()), None), next(iter(targets), None)
    if target is None and ref_full is not None:
        target = center_crop(ref_full, crop)
        target_kind = f"{'RSS' if multi else 'magnitude'} of the fully sampled data"
    mask_u = torch.from_numpy(np.ascontiguousarray(np.fft.ifftshift(mask_c)))
    k_u = kspace_to_ours(k.astype(np.complex128)) / scale
    real = False if multi else hermitian(k_u, mask_u.numpy())
    single_op = None if multi else MRI(mask_u, (1, h, w), complex_image=reader.complex or not real)
    stem = stem_of(path)
    meta = {"scale": scale, "n_slices": s, "mask": origin, "real_image": real,
            "coils": int(k.shape[1]) if multi else 1, "crop": list(crop),
            "attrs": f["attrs"], "ismrmrd_header": f["ismrmrd_header"],
            "target": target, "target_kind": target_kind}
    if multi:
        meta.update(coil_maps=maps_origin, calibration_width=cw)
    src = Source(path, "fastmri", stem, f"{stem}.h5", multi=True, meta=meta)
    for j, i in enumerate(idx):
        iname, istem = f"{name}[{i}]", f"{stem}_s{i:03d}"
        if multi:
            op = MRI(mask_u, (1, h, w), complex_image=True,
                     coils=torch.from_numpy(maps[j]).to(reader.device), cg_iters=SENSE_ITERS,
                     cg_tol=SENSE_TOL)
            y = torch.from_numpy(k_u[j].astype(np.complex64))[None]
        else:
            op = single_op
            y = torch.from_numpy(k_u[j].astype(np.complex64))[None, None]
        x = None
        if ref_full is not None:
            x = torch.from_numpy((ref_full[j] / scale).astype(np.float32))[None, None]
            x = x.to(reader.device)
        src.items.append(Item(iname, istem, src, i, op, y.to(reader.device), x,
                              reader._generator(iname)))
    return src


# ----------------------------------------------------------------------------- outputs
def planned_outputs(src, samples: int) -> list[str]:
    names = [src.main, f"{src.stem}.nii.gz"]
    for it in src.items:
        names += [f"{it.stem}.png", f"{it.stem}_init.png"]
        if samples > 1:
            names.append(f"{it.stem}_std.png")
    return names


def write_source(out: Path, src, samples: int, complex_output: bool = False) -> list[str]:
    """Write a solved fastMRI Source (see the module docstring); returns the file names."""
    items, meta = src.items, src.meta
    scale, crop = meta["scale"], tuple(meta["crop"])
    x = torch.cat([it.result.x for it in items]).detach().cpu()[:, 0]       # (S, H, W)
    x0 = torch.cat([it.x0_hat for it in items]).detach().cpu()[:, 0]
    mag = (x.abs() if x.is_complex() else x).double().numpy() * scale
    init = (x0.abs() if x0.is_complex() else x0).double().numpy() * scale
    rec = center_crop(mag, crop).astype(np.float32)
    data = {"reconstruction": rec, "initial_estimate": center_crop(init, crop).astype(np.float32),
            "slices": np.asarray([it.index for it in items], np.int64)}
    std = None
    if samples > 1:
        std = torch.cat([it.result.std for it in items]).detach().cpu()[:, 0].double().numpy()
        data["std"] = center_crop(std * scale, crop).astype(np.float32)
    if complex_output:
        xc = x if x.is_complex() else x.to(torch.complex64)
        data["reconstruction_complex"] = (xc.to(torch.complex128).numpy() * scale
                                          ).astype(np.complex64)
    if meta["ismrmrd_header"] is not None:
        data["ismrmrd_header"] = np.bytes_(meta["ismrmrd_header"])
    io.write_h5_file(out / src.main, data, meta["attrs"])
    io.write_nifti_volume(out / f"{src.stem}.nii.gz", np.moveaxis(rec, 0, -1),
                          voxel_mm(meta["ismrmrd_header"], crop))
    for j, it in enumerate(items):
        io.write_image(out / f"{it.stem}.png", torch.from_numpy(rec[j] / scale))
        io.write_image(out / f"{it.stem}_init.png",
                       torch.from_numpy(data["initial_estimate"][j] / scale))
        if std is not None:
            s = data["std"][j]
            io.write_image(out / f"{it.stem}_std.png",
                           torch.from_numpy(s / max(float(data["std"].max()), 1e-12)))
    if meta["target"] is not None:
        meta["fastmri_metrics"] = fastmri_volume(meta["target"], rec)
    return planned_outputs(src, samples)


__all__ = ["read_source", "write_source", "planned_outputs", "load_maps", "CalibrationError"]
