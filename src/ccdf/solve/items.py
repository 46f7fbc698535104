"""What a batch run reads an input into, shared by the readers (``solve.readers``) and the
fastMRI reader (``solve.fastmri``): ``Source`` (one input file), ``Item`` (one image or slice to
solve), names, slice selection and the fastMRI k-space layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import io


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
    failed: str | None = None     # the reason, once one of its items failed


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
    class_label: int | None = None  # a class-conditional model's label for this item
    result: object = None
    seconds: float = 0.0
    ood: float | None = None      # out-of-distribution score of the result (``ccdf.ood``)

    def rng(self) -> torch.Generator:
        """A fresh copy of the generator (so a retried solve draws the same noise)."""
        g = torch.Generator(device=self.generator.device)
        return g.set_state(self.generator.get_state())


def stem_of(path: Path) -> str:
    return path.name[: -len(io.suffix_of(path))]


def select_slices(n: int, sel: slice | None, name: str) -> list[int]:
    idx = list(range(n))[sel] if sel is not None else list(range(n))
    if not idx:
        raise io.InputError(f"--slices selects none of the {n} slices of {name}")
    return idx


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


def hermitian(k_u: np.ndarray, mask: np.ndarray, tol: float = 1e-3) -> bool:
    """True when measured k-space is that of a real image: k(-w) = conj k(w) where both measured."""
    def flip(a):
        return np.roll(np.flip(a, (-2, -1)), (1, 1), (-2, -1))

    both = mask & flip(mask)
    if not both.any():
        return False
    d = (k_u - flip(k_u).conj())[..., both]
    return float(np.linalg.norm(d)) <= tol * max(float(np.linalg.norm(k_u[..., both])), 1e-30)
