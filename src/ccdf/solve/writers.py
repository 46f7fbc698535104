"""A solved Source -> its output files in ``out``, each written atomically (temporary name,
then rename: ``io.atomic_write``), so an interrupted run never leaves a half-written file.

Outputs: the reconstruction in the input's format (``NAME.png``, ``NAME.npy``, the NIfTI
volume in the slice geometry (size x size along the other two axes) with the input's header,
its affine adjusted to that geometry (``readers.nifti_affine``) and its intensity units, or
``NAME.h5`` with ``reconstruction`` scaled back to the file's units), PNG previews per slice
for volumes (``NAME_s012.png``), ``<item>_init.png`` (the initial estimate), and
``<item>_std.png`` plus ``NAME_std.npy`` when samples > 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import io
from .items import Source


def magnitude(t: Tensor) -> Tensor:
    """|t| for complex images, as float32 on the CPU."""
    return (t.abs() if t.is_complex() else t).detach().float().cpu()


def planned_outputs(src: Source, samples: int) -> list[str]:
    """The file names ``write_source`` writes for ``src`` (its items must be read)."""
    if src.kind == "fastmri":
        from . import fastmri

        return fastmri.planned_outputs(src, samples)
    names = [src.main]
    for it in src.items:
        names += [f"{it.stem}.png", f"{it.stem}_init.png"]
        if samples > 1:
            names.append(f"{it.stem}_std.png")
    if samples > 1:
        names.append(f"{src.stem}_std.npy")
    return list(dict.fromkeys(names))


def write_source(out: Path, src: Source, samples: int, complex_output: bool = False) -> list[str]:
    """Write the outputs of a solved source; returns their names (``planned_outputs``).
    fastMRI files: ``solve.fastmri.write_source`` (``complex_output``: the complex image too)."""
    if src.kind == "fastmri":
        from . import fastmri

        return fastmri.write_source(out, src, samples, complex_output)
    items = src.items
    xs = [magnitude(it.result.x[0]) for it in items]                # (C, H, W)
    inits = [magnitude(it.x0_hat[0]) for it in items]
    stds = [magnitude(it.result.std[0]) for it in items] if samples > 1 else None
    scale = src.meta.get("scale", 1.0)
    for it, x, x0 in zip(items, xs, inits):
        io.write_image(out / f"{it.stem}_init.png", x0)
        io.write_image(out / f"{it.stem}.png", x)
    if stds is not None:
        top = max(float(s.max()) for s in stds)
        for it, s in zip(items, stds):
            io.write_image(out / f"{it.stem}_std.png", s / max(top, 1e-8))
        arr = torch.stack(stds).numpy() * scale
        io.write_npy(out / f"{src.stem}_std.npy", _squeeze(arr, src.multi))
    vol = torch.stack(xs).numpy()                                     # (S, C, H, W)
    if src.kind in ("npy", "stack"):
        io.write_npy(out / src.main, _squeeze(vol, src.multi))
    elif src.kind == "nifti":
        v = np.rot90(vol[:, 0], -1, axes=(1, 2))                       # undo volume_slices' turn
        io.write_nifti(out / src.main, np.moveaxis(v, 0, src.meta["axis"]) * scale,
                       src.meta["affine"], src.meta["header"])
    elif src.kind == "kspace":
        rec = (vol[:, 0] * scale).astype(np.float32)                  # (S, H, W)
        if not src.meta["h5"]:
            io.write_npy(out / src.main, rec[0] if src.meta["single"] else rec)
        else:
            data = {"reconstruction": rec,
                    "initial_estimate": (torch.stack(inits).numpy()[:, 0] * scale
                                         ).astype(np.float32),
                    "scale": np.float64(scale),
                    "slices": np.asarray([it.index for it in items], np.int64)}
            if stds is not None:
                data["std"] = (torch.stack(stds).numpy()[:, 0] * scale).astype(np.float32)
            io.write_h5(out / src.main, **data)
    return planned_outputs(src, samples)


def _squeeze(arr: np.ndarray, multi: bool) -> np.ndarray:
    """(S, C, H, W) -> (S, H, W) / (H, W) for 1 channel; (S, C, H, W) / (C, H, W) otherwise."""
    if arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr if multi else arr[0]
