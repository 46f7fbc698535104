"""Simulated fastMRI-layout k-space from the brains that ship offline (no raw k-space does).

A slice is a real magnitude image (MNI152 at its native 1 mm, ``datasets.native_slices``)
times a smooth random phase (``smooth_phase``), seen by ``ncoil`` simulated birdcage coils
(``sigpy.mri.birdcage_maps``), Fourier transformed in fastMRI's centred layout
(k = fftshift(fft2(ifftshift(S x), norm="ortho"))), optionally with the readout (rows, the
first image axis, as fastMRI's 640 of 640x368) oversampled 2x by zero-padding the field of
view, and optionally undersampled as in fastMRI's test split (``mask`` dataset, k-space zero
off the mask).  Sources (``magnitude_slices``):

* ``heldout``: the 16 axial MNI152 slices of the held-out band (``datasets.HELDOUT_Z``), never
  trained on: in distribution for the embedded MRI prior;
* ``val``: the axial margin slices next to the band (neither trained on nor evaluated): the
  validation slices on which compressed-sensing weights are chosen;
* ``ood``: out of distribution -- MNI152 sagittal and coronal slices (the prior sees only
  axial MNI152) and a Shepp-Logan phantom.

Each slice is fitted into a square ``size`` field of view (area-downsampled if larger,
zero-padded, centred).  ``scripts/simulate_fastmri.py`` writes them as fastMRI files
(``write_volume``).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F

from . import datasets, io

SOURCES = ("heldout", "val", "ood")
ACQUISITION = "AXT1"   # fastMRI brain naming (AXT1, AXT2, AXFLAIR ...); knee: CORPD_FBK ...


def fit(img: np.ndarray, size: int) -> np.ndarray:
    """A 2-D image in a size x size field of view: area-downsampled to fit if larger (aspect
    kept), zero-padded and centred."""
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    h, w = x.shape[-2:]
    if max(h, w) > size:
        s = size / max(h, w)
        x = F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")
        h, w = x.shape[-2:]
    x = F.pad(x, ((size - w) // 2, size - w - (size - w) // 2, (size - h) // 2,
                  size - h - (size - h) // 2))
    return x[0, 0].numpy()


def magnitude_slices(source: str, size: int) -> np.ndarray:
    """(S, size, size) float32 magnitudes scaled by their volume's 99.5th percentile."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    vol = io.read_nifti(datasets.mni152_path())
    band, m = datasets.HELDOUT_Z, datasets.MARGIN
    if source == "heldout":
        out = datasets.native_slices(vol, 2, keep=lambda i: i in band, min_fill=0)
    elif source == "val":
        near = set(range(band.start - m, band.start)) | set(range(band.stop, band.stop + m))
        out = datasets.native_slices(vol, 2, keep=lambda i: i in near, min_fill=0)
    else:
        out = []
        for axis in (0, 1):  # sagittal, coronal: 4 slices each through the middle of the brain
            n = vol.shape[axis]
            picks = {int(round(n * f)) for f in (0.35, 0.45, 0.55, 0.65)}
            out += datasets.native_slices(vol, axis, keep=picks.__contains__, min_fill=0)
        import sigpy

        out.append(np.abs(sigpy.shepp_logan((size, size))).astype(np.float32))
    return np.stack([fit(s, size) for s in out]).astype(np.float32)


def smooth_phase(h: int, w: int, generator: torch.Generator) -> np.ndarray:
    """(H, W) float64 smooth random phase in radians: a constant in [0, 2 pi), a linear ramp
    (N(0, 1.5) radians across the field of view per axis) and a smooth random field (a 4 x 4
    Gaussian grid of random amplitude, bicubic-interpolated), as a coil-combined image has."""
    g = generator
    phi0 = 2 * math.pi * float(torch.rand(1, generator=g))
    grad = torch.randn(2, generator=g, dtype=torch.float64) * 1.5
    u, v = torch.linspace(-0.5, 0.5, h, dtype=torch.float64), torch.linspace(-0.5, 0.5, w,
                                                                             dtype=torch.float64)
    ramp = grad[0] * u[:, None] + grad[1] * v[None, :]
    amp = float(torch.rand(1, generator=g))
    field = F.interpolate(torch.randn(1, 1, 4, 4, generator=g, dtype=torch.float64) * amp,
                          size=(h, w), mode="bicubic", align_corners=True)[0, 0]
    return (phi0 + ramp + field).numpy()


def slice_seed(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 100003 + int(index))


def complex_slices(mag: np.ndarray, seed: int = 0) -> np.ndarray:
    """(S, H, W) complex128: each magnitude slice times its own smooth random phase."""
    s, h, w = mag.shape
    return np.stack([mag[i] * np.exp(1j * smooth_phase(h, w, slice_seed(seed, i)))
                     for i in range(s)])


def birdcage(ncoil: int, h: int, w: int) -> np.ndarray:
    """(Ncoil, H, W) complex128 birdcage maps (sigpy), sum_c |S_c|^2 = 1."""
    import sigpy.mri

    return sigpy.mri.birdcage_maps((int(ncoil), h, w))


def fft2c(x: np.ndarray) -> np.ndarray:
    """fastMRI's centred orthonormal 2-D DFT over the last two axes."""
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), norm="ortho"), axes=ax)


def multicoil_kspace(img: np.ndarray, ncoil: int = 8, oversample: int = 1, noise: float = 0.0,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Coil k-space of complex slices img (S, H, W): (kspace (S, Ncoil, oversample H, W)
    complex64 centred, maps (Ncoil, oversample H, W)).  The readout (rows) field of view is
    ``oversample`` times larger (zero-padded image).  ``noise``: std of complex white Gaussian
    k-space noise (real and imaginary parts each), relative to the largest image magnitude."""
    s, h, w = img.shape
    if oversample > 1:
        pad = (oversample - 1) * h
        img = np.pad(img, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))
    maps = birdcage(ncoil, img.shape[1], w)
    k = fft2c(maps[None] * img[:, None])
    if noise > 0:
        rng = np.random.default_rng(seed)
        sd = noise * float(np.abs(img).max())
        k = k + sd * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    return k.astype(np.complex64), maps


def crop_size(h: int, w: int, size: int = 320) -> tuple[int, int]:
    """fastMRI's reconstruction size (320 x 320), or the image where it is smaller."""
    return min(size, h), min(size, w)


def header(h: int, w: int, ncoil: int, recon: tuple[int, int], fov_mm: float = 1.0) -> bytes:
    """A minimal ISMRMRD XML header as fastMRI files carry it (what fastMRI's SliceDataset
    reads: encodedSpace and reconSpace matrix sizes, the phase-encode encoding limits)."""
    fx, fy = h * fov_mm, w * fov_mm
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        f"<acquisitionSystemInformation><receiverChannels>{ncoil}</receiverChannels>"
        "</acquisitionSystemInformation><encoding>"
        f"<encodedSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>"
        f"<fieldOfView_mm><x>{fx}</x><y>{fy}</y><z>1</z></fieldOfView_mm></encodedSpace>"
        f"<reconSpace><matrixSize><x>{recon[0]}</x><y>{recon[1]}</y><z>1</z></matrixSize>"
        f"<fieldOfView_mm><x>{recon[0] * fov_mm}</x><y>{recon[1] * fov_mm}</y><z>1</z>"
        "</fieldOfView_mm></reconSpace><trajectory>cartesian</trajectory>"
        "<encodingLimits><kspace_encoding_step_1>"
        f"<minimum>0</minimum><maximum>{w - 1}</maximum><center>{w // 2}</center>"
        "</kspace_encoding_step_1></encodingLimits></encoding></ismrmrdHeader>").encode()


def volume(img: np.ndarray, ncoil: int = 8, oversample: int = 1, noise: float = 0.0,
           mask_cols: np.ndarray | None = None, name: str = "volume", seed: int = 0,
           acceleration: float | None = None) -> tuple[dict, dict]:
    """One fastMRI file's (datasets, attrs) for complex slices img (S, H, W).

    ``ncoil`` >= 2: multi-coil, kspace (S, Ncoil, H', W), reconstruction_rss; ``ncoil`` = 1:
    single-coil, kspace (S, H', W), reconstruction_esc (the image's magnitude).  Targets are
    centre-cropped to ``crop_size`` from the fully sampled data.  ``mask_cols`` (W,) bool,
    centred: the test split's layout -- kspace zero off the mask, a ``mask`` dataset, attrs
    acceleration and num_low_frequency, no targets."""
    from .operators.coils import coil_images, rss

    if ncoil >= 2:
        k, _ = multicoil_kspace(img, ncoil, oversample, noise, seed)
        target, key = rss(coil_images(k)), "reconstruction_rss"
    else:
        pad = (oversample - 1) * img.shape[1]
        im = np.pad(img, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))
        k = fft2c(im)
        if noise > 0:
            rng = np.random.default_rng(seed)
            k = k + noise * float(np.abs(im).max()) * (rng.standard_normal(k.shape)
                                                       + 1j * rng.standard_normal(k.shape))
        k = k.astype(np.complex64)
        target, key = np.abs(coil_images(k)), "reconstruction_esc"
    from .metrics import center_crop

    hh, ww = k.shape[-2:]
    recon = crop_size(img.shape[-2], ww)  # the field of view before readout oversampling
    target = center_crop(target, recon).astype(np.float32)
    attrs = {"acquisition": ACQUISITION, "max": float(target.max()),
             "norm": float(np.linalg.norm(target)),
             "patient_id": hashlib.sha256(name.encode()).hexdigest()[:16]}
    data = {"kspace": k, "ismrmrd_header": np.bytes_(header(hh, ww, max(ncoil, 1), recon))}
    if mask_cols is None:
        data[key] = target
    else:
        m = np.asarray(mask_cols, dtype=bool)
        data["kspace"] = (k * m).astype(np.complex64)
        data["mask"] = m.astype(np.float32)
        from .operators.coils import calibration_width

        attrs["num_low_frequency"] = int(calibration_width(np.broadcast_to(m, (hh, ww))))
        attrs["acceleration"] = float(acceleration if acceleration else ww / max(m.sum(), 1))
    return data, attrs
