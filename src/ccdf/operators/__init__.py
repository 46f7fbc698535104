"""Forward operators y = A x of the CCDF tasks (and deblurring), and ``make_operator`` to build one by name.

Every operator has ``A``, ``A_adjoint`` (real inner product), ``A_pinv`` (Moore-Penrose) and
``project`` (P = A_pinv A), validates its input shape, and keeps the input's dtype and device;
what the solvers ask of it beyond that (its classic start, SVD, peer settings, how its
measurement is drawn) it answers itself (``base.LinearOperator``), so a new operator is one
subclass.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import io
from .base import LinearOperator, Spectral, cg, kron_svd
from .blur import (
    BLUR_KERNELS,
    Blur,
    gaussian_kernel,
    kernel_from_array,
    make_kernel,
    motion_kernel,
    uniform_kernel,
)
from .inpaint import Inpainting, box_mask, mask_from_array, random_mask
from .mri import (
    MASKS,
    MRI,
    PATTERNS,
    birdcage_maps,
    centered,
    centre_lines,
    gaussian1d,
    random1d,
    uniform1d,
    vd2d,
    zero_filled,
)
from .sr import KERNELS, SuperResolution, upsample_bicubic

TASKS = ("sr", "inpaint", "mri", "deblur")

__all__ = [
    "LinearOperator", "cg", "kron_svd", "SuperResolution", "upsample_bicubic", "Inpainting",
    "box_mask",
    "random_mask", "mask_from_array", "MRI", "uniform1d", "random1d", "gaussian1d", "vd2d",
    "centre_lines", "centered",
    "birdcage_maps", "zero_filled", "make_operator", "TASKS", "PATTERNS", "KERNELS", "MASKS",
    "Spectral", "Blur", "BLUR_KERNELS", "gaussian_kernel", "uniform_kernel", "motion_kernel",
    "kernel_from_array", "make_kernel",
]


def _take(params: dict, task: str, allowed: dict) -> dict:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for task {task!r}; "
                         f"valid: {', '.join(allowed)}")
    return {k: params.get(k, v) for k, v in allowed.items()}


def _inpaint_mask(spec, image_shape: tuple, seed: int) -> torch.Tensor:
    _, h, w = image_shape
    if isinstance(spec, str):
        name, _, arg = spec.partition(":")
        if name in ("box", "random"):
            try:
                fraction = float(arg) if arg else (0.25 if name == "box" else None)
            except ValueError:
                fraction = None
            if fraction is None:
                raise ValueError(f"inpainting mask {spec!r}: expected 'box', 'box:FRACTION' or "
                                 f"'random:FRACTION' with a number FRACTION") from None
            if name == "box":
                return box_mask(h, w, fraction)
            return random_mask(h, w, fraction, torch.Generator().manual_seed(int(seed)))
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"mask must be 'box', 'random:FRACTION', a 2-D array or an image/.npy "
                             f"file; got {spec!r}")
        arr = io.read_npy(path) if path.suffix.lower() == ".npy" else io.read_image(path, channels=1)
        return mask_from_array(arr, image_shape)
    if isinstance(spec, torch.Tensor) and spec.dtype == torch.bool and spec.dim() == 3:
        return spec
    return mask_from_array(spec, image_shape)


def make_operator(task: str, image_shape: tuple, **params) -> LinearOperator:
    """Build the operator of ``task`` for images shaped (C, H, W).

    * ``"sr"``: factor=4, kernel="avg" | "bicubic";
    * ``"inpaint"``: mask="box" | "box:FRAC" | "random:FRACTION" | a 2-D array in [0, 1] |
      a path to an image or .npy file (white = observed); seed=0 for random masks;
    * ``"mri"``: pattern="uniform1d" | "random1d" | "gaussian1d" | "vd2d", accel=4, acs=None
      (1-D patterns: fastMRI's centre fraction, 0.08 at x4 and 0.04 at x8, or a number of lines
      or a fraction, see ``mri.centre_lines``; vd2d: a max(2, min(H, W) // 8) pixel disc),
      seed=0 (the random lines, the equispaced offset), complex_image=False, coils=None (a
      number of birdcage coils or a
      complex (Ncoil, H, W) tensor; implies complex_image=True);
    * ``"deblur"``: kernel="gaussian" | "uniform" | "motion" | a path to a .npy or image file |
      a 2-D array, kernel_sigma=2.0 (the Gaussian's std in pixels), kernel_size=None (the
      kernel's side; see ``blur.make_kernel``), seed=0 (the motion trajectory); circular
      boundaries.
    """
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {image_shape}")
    _, h, w = image_shape
    if task == "sr":
        p = _take(params, task, {"factor": 4, "kernel": "avg"})
        return SuperResolution(p["factor"], image_shape, kernel=p["kernel"])
    if task == "inpaint":
        p = _take(params, task, {"mask": "box", "seed": 0})
        return Inpainting(_inpaint_mask(p["mask"], image_shape, p["seed"]), image_shape=image_shape)
    if task == "mri":
        p = _take(params, task, {"pattern": "uniform1d", "accel": 4, "acs": None, "seed": 0,
                                 "complex_image": None, "coils": None})
        pattern = p["pattern"]
        if pattern not in MASKS:
            raise ValueError(f"unknown MRI pattern {pattern!r}; valid patterns: {', '.join(PATTERNS)}")
        g = torch.Generator().manual_seed(int(p["seed"] or 0))
        mask = MASKS[pattern](h, w, p["accel"], acs=p["acs"], generator=g)
        coils = p["coils"]
        if coils is not None and not isinstance(coils, torch.Tensor):
            coils = birdcage_maps(int(coils), h, w)
        complex_image = p["complex_image"] if p["complex_image"] is not None else coils is not None
        return MRI(mask, image_shape, complex_image=complex_image, coils=coils)
    if task == "deblur":
        p = _take(params, task, {"kernel": "gaussian", "kernel_sigma": 2.0, "kernel_size": None,
                                 "seed": 0})
        return Blur(make_kernel(p["kernel"], p["kernel_sigma"], p["kernel_size"], p["seed"] or 0),
                    image_shape)
    raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
