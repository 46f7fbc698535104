"""Write the MRI evaluation sets committed in src/ccdf/assets/data/mri/ (deterministic).

    PYTHONPATH=src python scripts/make_mri_eval.py [--out src/ccdf/assets/data/mri]

Needs nilearn (the MNI152 2009a T1 template) and sigpy (the Shepp-Logan phantom).  Reading
them back: ``ccdf.datasets.mri_set`` (data specs ``mri:heldout256``, ``mri:ood64-complex``...).

Every set is a float16 magnitude stack (N, H, W), scaled as the MRI prior's training data
(``datasets.native_slices``): divided by the 99.5th percentile of the volume's positive voxels,
NOT clipped (the brightest voxels lie a little above 1).  Images are oriented anterior
(axial) or superior (sagittal, coronal) up, as the training slices.

* ``heldout256``: the held-out MNI152 axial band z = 86..101 (``datasets.HELDOUT_Z``, 16
  slices, never trained on), at the native 1 mm, zero-padded (centred) to 256 x 256;
* ``val256``, ``val128``, ``val64``: the margin slices z = 83..85 and 102..104 (never trained
  on, never evaluated): the validation slices on which the compressed-sensing lambda and
  t0 are chosen;
* ``ood256``, ``ood128``, ``ood64``: out of distribution: the modified Shepp-Logan phantom
  (``sigpy.shepp_logan``, drawn at each size), then MNI152 sagittal slices x = 73, 98, 123
  and coronal slices y = 80, 115, 150 (the prior is trained on MNI152 axial slices only).

Sizes: 256 is the native 1 mm slice zero-padded to 256 x 256; 128 and 64 crop the slice to
the volume's bounding box in the slice plane (voxels above 5% of the maximum, as
``datasets.volume_slices``), zero-pad it to a square and area-resize it (the phantom is drawn
at the size).  The 64-pixel axial validation slices are thus framed like the embedded
``mni152:sample``.

The complex versions (``-complex``) multiply each magnitude by a fixed smooth phase, a
seeded second-order polynomial in the normalised image coordinates u (columns) and v (rows)
in [-1, 1] (``datasets.smooth_phase``):

    phi = c0 + c1 u + c2 v + c3 u^2 + c4 u v + c5 v^2,
    c0 ~ U(-pi, pi),  c1, c2 ~ N(0, (pi / 2)^2),  c3, c4, c5 ~ N(0, (pi / 4)^2),

the low-order phase of B0 inhomogeneity and receiver offsets; the coefficients are drawn from
numpy's default_rng(seed) (one seed per set, ``SEEDS``), stored in index.json, and shared by
the sizes of one image, so its 64-, 128- and 256-pixel versions have the same phase.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ccdf import datasets, io

SIZES = (64, 128, 256)
VAL_Z = [83, 84, 85, 102, 103, 104]
SAGITTAL_X = [73, 98, 123]
CORONAL_Y = [80, 115, 150]
SEEDS = {"heldout": 1101, "val": 1102, "ood": 1103}


def pad_to(s: np.ndarray, n: int) -> np.ndarray:
    h, w = s.shape
    if h > n or w > n:
        raise ValueError(f"slice {h}x{w} does not fit {n}x{n}")
    top, left = (n - h) // 2, (n - w) // 2
    return np.pad(s, ((top, n - h - top), (left, n - w - left)))


def resized(s: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad to a square, then area-resize to n x n."""
    m = max(s.shape)
    t = torch.from_numpy(np.ascontiguousarray(pad_to(s, m)))[None, None].double()
    return F.interpolate(t, size=(n, n), mode="area")[0, 0].numpy()


def slices(vol: np.ndarray, axis: int, idx: list[int], size: int) -> list[np.ndarray]:
    """Slices ``idx`` of ``vol`` along ``axis`` at ``size`` (see the module docstring)."""
    if size != 256:
        nz = np.argwhere(vol > 0.05 * vol.max())
        lo, hi = nz.min(0), nz.max(0) + 1
        box = [slice(int(a), int(b)) for a, b in zip(lo, hi)]
        box[axis] = slice(None)
        vol = vol[tuple(box)]
    out = []
    for i in idx:
        s = np.rot90(np.take(vol, i, axis=axis))
        out.append(pad_to(s, 256) if size == 256 else resized(s, size))
    return out


def phantom(size: int) -> np.ndarray:
    import sigpy

    p = np.abs(sigpy.shepp_logan((size, size))).astype(np.float64)
    return p / np.percentile(p[p > 0], 99.5)


def phase_coefficients(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.empty((n, 6))
    c[:, 0] = rng.uniform(-math.pi, math.pi, n)
    c[:, 1:3] = rng.normal(0, math.pi / 2, (n, 2))
    c[:, 3:6] = rng.normal(0, math.pi / 4, (n, 3))
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(datasets.ASSETS / "data" / "mri"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    v = io.read_nifti(datasets.mni152_path()).astype(np.float64)
    vol = v / np.percentile(v[v > 0], 99.5)  # as datasets.native_slices: not clipped
    band = list(datasets.HELDOUT_Z)
    items = {
        "heldout": [f"MNI152 2009a axial z={z}" for z in band],
        "val": [f"MNI152 2009a axial z={z}" for z in VAL_Z],
        "ood": ["Shepp-Logan phantom (sigpy.shepp_logan)"]
        + [f"MNI152 2009a sagittal x={x}" for x in SAGITTAL_X]
        + [f"MNI152 2009a coronal y={y}" for y in CORONAL_Y],
    }
    stacks = {}
    for size in SIZES:
        stacks[f"val{size}"] = slices(vol, 2, VAL_Z, size)
        stacks[f"ood{size}"] = [phantom(size)] + slices(vol, 0, SAGITTAL_X, size) \
            + slices(vol, 1, CORONAL_Y, size)
    stacks["heldout256"] = slices(vol, 2, band, 256)
    index = {"description": __doc__, "phase_model": "phi = c0 + c1 u + c2 v + c3 u^2 + c4 u v "
             "+ c5 v^2, u (columns) and v (rows) in [-1, 1]", "sets": {}}
    for name, imgs in sorted(stacks.items()):
        base = name.rstrip("0123456789")
        a = np.stack(imgs).astype(np.float16)
        assert np.isfinite(a).all() and a.min() >= 0
        io.write_npy(out / f"{name}.npy", a)
        coef = phase_coefficients(len(a), SEEDS[base])
        index["sets"][name] = {"file": f"{name}.npy", "shape": list(a.shape),
                               "items": items[base], "phase_seed": SEEDS[base],
                               "phase": coef.round(12).tolist(), "max": float(a.max())}
        print(f"{name}: {a.shape} max {float(a.max()):.3f}")
    io.write_json(out / "index.json", index)


if __name__ == "__main__":
    main()
