"""Coil sensitivities for multi-coil MRI: ESPIRiT calibration (sigpy), coil combination.

Layouts: k-space here is fastMRI's CENTRED layout (DC at [H // 2, W // 2], the layout of the
files and of sigpy's ``sp.fft``), coil images and maps are in the image space of
``fftshift(ifft2(ifftshift(k), norm="ortho"))`` -- the image ``operators.mri.MRI`` works on
after ``solve.readers.kspace_to_ours``.  Maps S (Ncoil, H, W) complex, normalised by sigpy's
ESPIRiT to sum_c |S_c|^2 = 1 where the object is and 0 outside (eigenvalue crop).

* ``calibration_width(mask)``: the side of the largest fully sampled centred square of a
  sampling mask -- the calibration (ACS) region ESPIRiT can use;
* ``espirit_maps(kspace, mask)``: ESPIRiT maps (Uecker et al., MRM 71:990, 2014) by
  ``sigpy.mri.app.EspiritCalib`` with the calibration width taken from the mask and a kernel
  width that fits it (fastMRI's 8% / 4% centres at 256-368 columns give 20-29 / 10-15 lines),
  computed on a coarser grid of the same field of view for large images (coil sensitivities
  are smooth; ESPIRiT's cost is a full-size FFT per kernel: 20 s a 640 x 368 x 15 slice on
  one core, 2-3 s on the coarse grid, with the same per-pixel map directions to 1e-5) and
  interpolated back;
* ``rss`` (root sum of squares, fastMRI's multi-coil target) and ``sense_combine``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: fewer fully sampled centre lines than this and ESPIRiT's maps are not trusted (refused)
MIN_CALIBRATION = 8
#: ESPIRiT settings: eigenvalue threshold of the calibration matrix, eigenvalue crop of maps
THRESH, CROP, MAX_CALIBRATION = 0.02, 0.95, 32
#: the coarse grid ESPIRiT runs on has about this many pixels along the shorter side
COARSE_SIDE = 96


class CalibrationError(ValueError):
    """The sampling mask has too few fully sampled centre lines for ESPIRiT."""


def calibration_width(mask_centred: np.ndarray) -> int:
    """Side cw of the largest square [H//2 - cw//2, +cw) x [W//2 - cw//2, +cw) (sigpy's
    centred crop) that ``mask_centred`` (H, W) bool, centred layout, samples fully."""
    m = np.asarray(mask_centred, dtype=bool)
    h, w = m.shape
    cw = 0
    while cw + 1 <= min(h, w):
        c = cw + 1
        r0, c0 = h // 2 - c // 2, w // 2 - c // 2
        if not m[r0:r0 + c, c0:c0 + c].all():
            break
        cw = c
    return cw


def kernel_width(cw: int) -> int:
    """ESPIRiT kernel width for a calibration width cw: sigpy's 6 from 14 lines, smaller below
    (at least 3), so the calibration matrix keeps (cw - k + 1)^2 >= 25 rows of k x k blocks."""
    return int(min(6, max(3, (cw - 2) // 2)))


def check_calibration(mask_centred: np.ndarray, name: str = "k-space") -> int:
    """The calibration width of the mask, or CalibrationError (one line) when it is too small."""
    cw = calibration_width(mask_centred)
    if cw < MIN_CALIBRATION:
        raise CalibrationError(
            f"{name}: ESPIRiT needs at least {MIN_CALIBRATION} fully sampled centre lines to "
            f"estimate coil maps, this mask has {cw}; sample a larger centre (--acs) or give "
            "the maps with --coil-maps FILE")
    return cw


def espirit_maps(kspace: np.ndarray, mask_centred: np.ndarray | None = None,
                 name: str = "k-space", thresh: float = THRESH, crop: float = CROP,
                 coarse: int | None = None) -> np.ndarray:
    """ESPIRiT coil maps (Ncoil, H, W) complex64 of one slice's k-space (Ncoil, H, W), centred.

    The calibration region is the largest fully sampled centred square of ``mask_centred``
    (default: the entries non-zero in every coil), capped at 32 lines.  ``coarse`` = f > 1
    runs ESPIRiT on the centre (H // f, W // f) of k-space (the same field of view at f times
    the pixel size) and interpolates the maps back (bilinear, renormalised to unit RSS where
    the interpolated RSS is >= 0.5); default f = min(H, W) // ``COARSE_SIDE`` (1 below 192
    pixels).  Raises CalibrationError when the calibration region has fewer than
    ``MIN_CALIBRATION`` lines, and ValueError when ESPIRiT returns no map."""
    from sigpy.mri.app import EspiritCalib

    k = np.asarray(kspace)
    if k.ndim != 3 or not np.iscomplexobj(k):
        raise ValueError(f"{name}: ESPIRiT takes complex k-space (coils, H, W), got {k.dtype} "
                         f"{k.shape}")
    if mask_centred is None:
        mask_centred = (np.abs(k) > 0).all(0)
    cw = min(check_calibration(mask_centred, name), MAX_CALIBRATION)
    h, w = k.shape[-2:]
    f = max(1, min(h, w) // COARSE_SIDE) if coarse is None else max(1, int(coarse))
    f = min(f, max(1, min(h, w) // max(cw, 2 * kernel_width(cw))))  # keep the calibration
    if f > 1:
        hc, wc = h // f, w // f
        k = k[:, h // 2 - hc // 2: h // 2 - hc // 2 + hc, w // 2 - wc // 2: w // 2 - wc // 2 + wc]
    maps = EspiritCalib(k.astype(np.complex64), calib_width=cw, thresh=thresh,
                        kernel_width=kernel_width(cw), crop=crop, show_pbar=False).run()
    maps = np.nan_to_num(np.asarray(maps))
    if f > 1:
        maps = _interpolate(maps, h, w)
    if not np.abs(maps).max() > 0:
        raise ValueError(f"{name}: ESPIRiT returned all-zero coil maps (calibration width {cw})")
    return maps.astype(np.complex64)


def _interpolate(maps: np.ndarray, h: int, w: int) -> np.ndarray:
    """Maps (C, h', w') on a coarse grid of the same (centred) field of view -> (C, h, w):
    bilinear in the real and imaginary parts at the fine pixel centres, then unit RSS where
    the interpolated RSS is >= 0.5 (the eigenvalue crop's support) and 0 elsewhere."""
    hc, wc = maps.shape[-2:]
    # fine pixel i sits at (i - h // 2) / (h / hc) + hc // 2 coarse pixels (centres aligned)
    u = (torch.arange(h, dtype=torch.float64) - h // 2) * (hc / h) + hc // 2
    v = (torch.arange(w, dtype=torch.float64) - w // 2) * (wc / w) + wc // 2
    gy, gx = torch.meshgrid(2 * u / (hc - 1) - 1, 2 * v / (wc - 1) - 1, indexing="ij")
    t = torch.from_numpy(np.concatenate([maps.real, maps.imag]).astype(np.float64))[None]
    o = F.grid_sample(t, torch.stack([gx, gy], -1)[None], mode="bilinear",
                      padding_mode="border", align_corners=True)[0].numpy()
    n = len(maps)
    out = o[:n] + 1j * o[n:]
    r = np.sqrt((np.abs(out) ** 2).sum(0))
    return np.where(r >= 0.5, out / np.maximum(r, 1e-12), 0)


def coil_images(kspace: np.ndarray) -> np.ndarray:
    """fastMRI's ``ifft2c``: centred k-space (..., H, W) -> centred coil images (..., H, W)."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=axes), norm="ortho"),
                           axes=axes)


def rss(images: np.ndarray, axis: int = -3) -> np.ndarray:
    """Root sum of squares over the coil axis: fastMRI's multi-coil reconstruction and target."""
    return np.sqrt((np.abs(images) ** 2).sum(axis))


def sense_combine(images: np.ndarray, maps: np.ndarray, axis: int = -3) -> np.ndarray:
    """sum_c conj(S_c) I_c / sum_c |S_c|^2 (0 where the maps are): the coil-combined image."""
    num = (np.conj(maps) * images).sum(axis)
    den = (np.abs(maps) ** 2).sum(axis)
    return np.where(den > 0, num / np.maximum(den, 1e-30), 0)
