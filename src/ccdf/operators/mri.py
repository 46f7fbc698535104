"""Cartesian compressed-sensing MRI: y = A x = M F x (single coil) or M F (S x) (multi-coil).

Conventions:

* F is the ORTHONORMAL 2-D DFT over the last two axes (``torch.fft.fft2(norm="ortho")``), so
  F^H F = I and ||F x|| = ||x||.
* k-space is stored UNSHIFTED: the DC coefficient is at index [0, 0] and index k holds the
  frequency k (mod n).  Sampling masks M are bool (H, W) in this same layout; ``centered``
  (fftshift) moves DC to the middle for display.  Columns (the last axis) are phase encodes.
* A measurement y is complex, zero off the mask, shaped (B, 1, H, W) for a single coil and
  (B, Ncoil, H, W) for ``coils`` sensitivity maps S (Ncoil, H, W).

Three operators (see ``MRI``):

* complex images: A x = M F x, A_adjoint y = F^H M y = A_pinv y (F unitary, M a projection);
* real images (the default; magnitude images): A x = M F x with the adjoint for the real inner
  product A^T y = Re F^H M y.  A real image has Hermitian-symmetric k-space, so a measured
  k(w) also gives k(-w): A^T A = F^H D F with D = (M + Mflip) / 2, Mflip[k] = M[-k mod n].
  A_pinv averages the available estimates y(w) and conj(y(-w)) of k(w) and inverts F, and
  P = Re F^H M_sym F with M_sym = M | Mflip;
* multi-coil (complex images): A x = M F (S x), A_adjoint y = sum_c conj(S_c) F^H M y_c, and
  A_pinv solves the normal equations A^H A x = A^H y by conjugate gradients from zero (the
  minimum-norm least-squares solution), in float64 (in the input's precision for a loose
  ``cg_tol`` >= 1e-6).

The SVD (``MRI.svd``, single coil): complex images, V^T = F (times the known phase), s = M;
real images, V = F again (its coefficients of a real image are Hermitian symmetric, and a real
orthonormal basis pairs k with -k), s = sqrt((M(k) + M(-k)) / 2): 1 where both of a conjugate
pair are sampled, 1/sqrt(2) where one is (A^T A = F^H D F above).  Multi-coil: none (no cheap
formula gives it).  The classic start is the base's clamp(A^+ y) (real images: >= 0, not
clipped above); DPS's step size, not in the paper, is inpainting's (zeta = 0.5): the operator
is a mask of an orthogonal transform too.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from .base import LinearOperator, Spectral, cg

PATTERNS = ("uniform1d", "random1d", "gaussian1d", "vd2d")


# ----------------------------------------------------------------- k-space helpers
def fft2c(x: Tensor) -> Tensor:
    """Orthonormal 2-D DFT over the last two axes, unshifted layout (DC at [0, 0])."""
    return torch.fft.fft2(x, norm="ortho")


def ifft2c(k: Tensor) -> Tensor:
    """Inverse of ``fft2c`` (= its adjoint F^H)."""
    return torch.fft.ifft2(k, norm="ortho")


def flip_freq(t: Tensor) -> Tensor:
    """t[..., (-k) mod H, (-l) mod W]: the value at the mirrored frequency (unshifted layout)."""
    return torch.roll(torch.flip(t, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def centered(mask: Tensor) -> Tensor:
    """fftshift over the last two axes: DC moves from [0, 0] to [H // 2, W // 2] (for display)."""
    return torch.fft.fftshift(mask, dim=(-2, -1))


def uncentered(mask: Tensor) -> Tensor:
    """Inverse of ``centered`` (ifftshift)."""
    return torch.fft.ifftshift(mask, dim=(-2, -1))


# ----------------------------------------------------------------- sampling masks
def _check_size(h, w) -> tuple[int, int]:
    if isinstance(h, bool) or isinstance(w, bool) or int(h) != h or int(w) != w or h < 2 or w < 2:
        raise ValueError(f"k-space size must be integers >= 2, got {h}x{w}")
    return int(h), int(w)


def _check_accel(accel) -> float:
    accel = float(accel)
    if not math.isfinite(accel) or accel <= 1:
        raise ValueError(f"acceleration must be a number > 1, got {accel}")
    return accel


# fastMRI's default centre fractions (``fastmri.data.subsample``: 0.08 at x4, 0.04 at x8); other
# accelerations keep the same share of the sampled lines in the centre, 0.32 / accel.
CENTRE_FRACTIONS = {4.0: 0.08, 8.0: 0.04}


def centre_lines(w: int, accel: float, acs=None) -> int:
    """Number of fully sampled centre (ACS) columns of a 1-D mask with w columns.

    ``acs``: an integer number of lines; a float in (0, 1), a centre fraction (round(w acs)
    lines, as fastMRI's ``center_fractions``); None: fastMRI's default fraction, 0.08 at x4 and
    0.04 at x8 (0.32 / accel otherwise).
    """
    if acs is None:
        acs = CENTRE_FRACTIONS.get(float(accel), 0.32 / float(accel))
    if isinstance(acs, bool):
        raise ValueError(f"acs must be a number of centre lines or a fraction in (0, 1), got {acs}")
    if isinstance(acs, float) and 0 < acs < 1:
        acs = round(w * acs)  # Python's round, as fastMRI's MaskFunc
    if int(acs) != acs or not 0 <= acs < w:
        raise ValueError(f"acs (fully sampled centre columns) must be an integer in [0, {w}) or a "
                         f"fraction in (0, 1), got {acs}")
    return int(acs)


def _budget_1d(w: int, accel: float, acs) -> tuple[int, int]:
    """(columns in total = round(w / accel), centre columns) for a 1-D pattern."""
    acs = centre_lines(w, accel, acs)
    n = round(w / accel)
    if n < 1:
        raise ValueError(f"acceleration {accel} leaves no column of {w} to sample")
    if acs > n:
        raise ValueError(f"acs={acs} centre columns exceed the budget of w/accel = {w}/{accel:g} "
                         f"= {n} columns; lower acs or the acceleration")
    return n, acs


def _acs_columns(w: int, acs: int) -> Tensor:
    """Centred-layout indices of the acs centre columns, fastMRI's block [pad, pad + acs) with
    pad = (w - acs + 1) // 2 (DC is at w // 2)."""
    return (w - acs + 1) // 2 + torch.arange(acs)


def _columns_to_mask(h: int, cols_centred: Tensor, w: int) -> Tensor:
    row = torch.zeros(w, dtype=torch.bool)
    row[cols_centred] = True
    return uncentered(row.expand(h, w).clone())


def _outer_columns(w: int, acs: int) -> Tensor:
    """Centred-layout indices of the columns outside the centre block."""
    keep = torch.ones(w, dtype=torch.bool)
    keep[_acs_columns(w, acs)] = False
    return torch.arange(w)[keep]


def uniform1d(h: int, w: int, accel: float, acs=None,
              generator: torch.Generator | None = None) -> Tensor:
    """(H, W) bool, unshifted: the centre columns plus equispaced phase-encode columns.

    fastMRI's equispaced mask with its acceleration counted over all lines (``mask_type
    equispaced_fraction``, ``EquispacedMaskFractionFunc``, the masks of the fastMRI multi-coil
    data): with c = ``centre_lines`` centre columns, the outer columns sit at
    round(offset + m a), m = 0, 1, ..., below w - 1, at the spacing
    a = accel (w - c) / (w - c accel), so that about w / accel columns are sampled in all
    (+-1 for rounding and the overlap with the centre).  The offset is drawn from
    [0, round(a)) with ``generator`` (0 without one).  fastMRI's plain ``equispaced`` mask
    (spacing accel outside the centre) samples more than w / accel lines; it is not this one.
    """
    h, w = _check_size(h, w)
    accel = _check_accel(accel)
    _, acs = _budget_1d(w, accel, acs)
    outer = torch.zeros(0, dtype=torch.long)
    if acs * accel < w:  # else the centre alone holds the budget
        a = accel * (w - acs) / (w - acs * accel)
        offset = 0 if generator is None else \
            int(torch.randint(max(round(a), 1), (1,), generator=generator))
        outer = torch.arange(offset, w - 1, a, dtype=torch.float64).round().long()
    return _columns_to_mask(h, torch.cat([_acs_columns(w, acs), outer]), w)


def random1d(h: int, w: int, accel: float, acs=None,
             generator: torch.Generator | None = None) -> Tensor:
    """(H, W) bool, unshifted: the centre columns plus columns drawn uniformly at random.

    fastMRI's random mask (``RandomMaskFunc``): c = ``centre_lines`` centre columns, and each
    other column sampled with probability p = (w / accel - c) / (w - c), so that w / accel
    columns are sampled on average.  Here the count is fixed at its mean: exactly
    round(w / accel) - c outer columns drawn without replacement (every column still has
    probability p), so each mask has the nominal acceleration and a small one still has
    random lines outside its centre.  Reproducible for a seeded ``generator``.
    """
    h, w = _check_size(h, w)
    accel = _check_accel(accel)
    n, acs = _budget_1d(w, accel, acs)
    outer = _outer_columns(w, acs)
    pick = outer[torch.randperm(len(outer), generator=generator)[:n - acs]]
    return _columns_to_mask(h, torch.cat([_acs_columns(w, acs), pick]), w)


def gaussian1d(h: int, w: int, accel: float, acs=None,
               generator: torch.Generator | None = None, sigma: float | None = None) -> Tensor:
    """(H, W) bool, unshifted: c = ``centre_lines`` centre columns plus round(w / accel) - c
    columns drawn without replacement with density exp(-(k / sigma)^2 / 2) in the frequency k
    (sigma = w / 5 by default).  Reproducible for a seeded ``generator``."""
    h, w = _check_size(h, w)
    accel = _check_accel(accel)
    n, acs = _budget_1d(w, accel, acs)
    sigma = w / 5 if sigma is None else float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    outer = _outer_columns(w, acs)
    freq = outer.to(torch.float64) - w // 2
    weight = torch.exp(-0.5 * (freq / sigma) ** 2).clamp_min(1e-300)
    extra = outer[torch.multinomial(weight, n - acs, replacement=False, generator=generator)] \
        if n > acs else torch.zeros(0, dtype=torch.long)
    return _columns_to_mask(h, torch.cat([_acs_columns(w, acs), extra]), w)


def vd2d(h: int, w: int, accel: float, generator: torch.Generator | None = None,
         acs: int | None = None, sigma: float | None = None) -> Tensor:
    """(H, W) bool, unshifted: 2-D variable-density random sampling of round(H W / accel) points.

    A fully sampled centre disc of diameter ``acs`` pixels (a float in (0, 1): that fraction
    of min(H, W); None: max(2, min(H, W) // 8)),
    then points drawn without replacement with density exp(-(r / sigma)^2 / 2) in the
    k-space radius r (sigma = min(H, W) / 4 by default).  Reproducible for a seeded generator.
    """
    h, w = _check_size(h, w)
    accel = _check_accel(accel)
    acs = max(2, min(h, w) // 8) if acs is None else acs
    if isinstance(acs, float) and 0 < acs < 1:  # a fraction of the shorter side
        acs = round(min(h, w) * acs)
    if isinstance(acs, bool) or not 0 <= acs < min(h, w):
        raise ValueError(f"acs (centre disc diameter) must be in [0, {min(h, w)}), got {acs}")
    n = round(h * w / accel)
    if n < 1:
        raise ValueError(f"acceleration {accel} leaves no k-space point of {h}x{w} to sample")
    sigma = min(h, w) / 4 if sigma is None else float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    ky = torch.arange(h, dtype=torch.float64) - h // 2
    kx = torch.arange(w, dtype=torch.float64) - w // 2
    r = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    disc = r <= acs / 2
    n_disc = int(disc.sum())
    if n_disc > n:
        raise ValueError(f"the centre disc (acs={acs}) holds {n_disc} points, more than the budget "
                         f"H W / accel = {n}; lower acs or the acceleration")
    weight = torch.exp(-0.5 * (r / sigma) ** 2).clamp_min(1e-300).flatten()
    weight[disc.flatten()] = 0
    mask = disc.flatten().clone()
    if n > n_disc:
        mask[torch.multinomial(weight, n - n_disc, replacement=False, generator=generator)] = True
    return uncentered(mask.view(h, w))


MASKS = {"uniform1d": uniform1d, "random1d": random1d, "gaussian1d": gaussian1d, "vd2d": vd2d}


def birdcage_maps(ncoil: int, h: int, w: int, r: float = 1.5) -> Tensor:
    """(Ncoil, H, W) complex128 simulated birdcage coil sensitivities, sum_c |S_c|^2 = 1.

    As sigpy.mri.birdcage_maps: coil c sits at radius r (in units of the half field of view)
    at angle 2 pi c / Ncoil; its map is exp(i phi) / distance, normalised by the root sum of
    squares over coils.
    """
    if isinstance(ncoil, bool) or int(ncoil) != ncoil or ncoil < 1:
        raise ValueError(f"ncoil must be a positive integer, got {ncoil}")
    h, w = _check_size(h, w)
    c = torch.arange(int(ncoil), dtype=torch.float64)[:, None, None]
    y = torch.arange(h, dtype=torch.float64)[None, :, None]
    x = torch.arange(w, dtype=torch.float64)[None, None, :]
    angle = c * (2 * math.pi / ncoil)
    x_co = (x - w / 2) / (w / 2) - r * torch.cos(angle)
    y_co = (y - h / 2) / (h / 2) - r * torch.sin(angle)
    rr = torch.sqrt(x_co**2 + y_co**2)
    phi = torch.atan2(x_co, -y_co) - angle
    maps = torch.polar(1.0 / rr, phi)
    rss = maps.abs().pow(2).sum(0, keepdim=True).sqrt()
    return maps / rss


# ----------------------------------------------------------------- the operator
class MRI(LinearOperator):
    """Cartesian MRI, A x = M F x or M F (S x); see the module docstring for the three cases.

    ``mask``: bool (H, W), unshifted.  ``image_shape``: (C, H, W), default (1, H, W) (C = 1 with
    coils).  x: (B, C, H, W), real (``complex_image=False``) or complex.  y: complex
    (B, C, H, W), or (B, Ncoil, H, W) with ``coils`` (Ncoil, H, W) complex -- or per image
    (B, Ncoil, H, W), e.g. ESPIRiT maps of each slice (``operators.coils``).

    With coils, A_pinv runs at most ``cg_iters`` CG iterations to a normal-equation residual of
    ``cg_tol`` (relative).  A well-conditioned coil/mask set converges in tens of iterations;
    an ill-conditioned one (more aliasing than the coils resolve) converges slowly, and the
    result after ``cg_iters`` is an early-stopped, regularised pseudo-inverse.

    Images keep their units: a real (magnitude) image is >= 0 but not bounded above
    (``value_range``), so a pixel brighter than the data's scale is never clipped.
    """

    value_range = (0.0, None)
    #: the peers' MRI settings (``peers.run_peer``): DPS zeta as for inpainting (see module)
    peer_defaults = {"dps": {"zeta": 0.5}}

    def __init__(self, mask, image_shape: tuple | None = None, complex_image: bool = False,
                 coils: Tensor | None = None, cg_iters: int = 200, cg_tol: float = 1e-10,
                 phase: Tensor | None = None):
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or mask.dim() != 2:
            raise ValueError(f"the MRI mask must be a bool (H, W) tensor, got {mask.dtype} "
                             f"{tuple(mask.shape)}")
        h, w = mask.shape
        image_shape = (1, h, w) if image_shape is None else tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or image_shape[1:] != (h, w):
            raise ValueError(f"mask {h}x{w} does not fit images shaped {image_shape}")
        self.image_shape = image_shape
        self.complex_image = bool(complex_image)
        self.mask = mask
        self.mask_flip = flip_freq(mask)
        self.mask_sym = mask | self.mask_flip
        self.coils = None
        if coils is not None:
            coils = torch.as_tensor(coils)
            if not self.complex_image:
                raise ValueError("multi-coil MRI needs complex_image=True")
            if not coils.is_complex() or coils.dim() not in (3, 4) or \
                    tuple(coils.shape[-2:]) != (h, w):
                raise ValueError(f"coils must be complex (Ncoil, {h}, {w}) or (B, Ncoil, {h}, "
                                 f"{w}), got {coils.dtype} {tuple(coils.shape)}")
            if image_shape[0] != 1:
                raise ValueError(f"multi-coil MRI takes one image channel, got {image_shape}")
            self.coils = coils
        self.phase = None
        if phase is not None:  # a known phase absorbed in the operator: A x = M F (e^{i phi} x)
            phase = torch.as_tensor(phase, dtype=torch.float64)
            if not self.complex_image or coils is not None or phase.is_complex() or \
                    phase.dim() not in (2, 3) or tuple(phase.shape[-2:]) != (h, w):
                raise ValueError(f"phase must be a real (H, W) = ({h}, {w}) map, or one per "
                                 f"image (B, {h}, {w}), of a single-coil complex operator, got "
                                 f"{tuple(phase.shape)}")
            e = torch.polar(torch.ones_like(phase), phase)
            self.phase = e if e.dim() == 2 else e[:, None]   # (H, W) or (B, 1, H, W)
        n_out = image_shape[0] if coils is None else coils.shape[-3]
        self.measurement_shape = (n_out, h, w)
        self.cg_iters, self.cg_tol = int(cg_iters), float(cg_tol)
        self.support = self._support(self.coils)  # computed once: the maps do not change

    def norm(self, n_iter: int = 30) -> float:
        """||A|| (the largest over the images when the coil maps are per image; a phase, being
        unitary, leaves it unchanged)."""
        if self.phase is not None:
            plain = copy.copy(self)
            plain.phase = None
            return plain.norm(n_iter)
        if self.coils is None or self.coils.dim() == 3:
            return super().norm(n_iter)
        g = torch.Generator().manual_seed(0)
        shape = (self.coils.shape[0], *self.image_shape)
        x = torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                          torch.randn(shape, generator=g, dtype=torch.float64))
        s = torch.zeros(shape[0], 1, 1, 1, dtype=torch.float64)
        for _ in range(n_iter):
            x = self.A_adjoint(self.A(x))
            s = torch.linalg.vector_norm(x, dim=(1, 2, 3), keepdim=True)
            x = x / s.clamp_min(1e-300)
        return float(s.max()) ** 0.5

    @property
    def name(self) -> str:
        return "MRI with coil maps" if self.coils is not None else "MRI"

    def first(self, k: int) -> MRI:
        """The operator of the first k slices: per-slice coil maps (B, Ncoil, H, W) and phase
        maps (B, 1, H, W) cut to k."""
        per_coils = self.coils is not None and self.coils.dim() == 4
        per_phase = self.phase is not None and self.phase.dim() == 4
        if not (per_coils or per_phase):
            return self
        sub = copy.copy(self)
        if per_coils:
            sub.coils = self.coils[:k]
            sub.support = self._support(sub.coils)
        if per_phase:
            sub.phase = self.phase[:k]
        return sub

    def with_phase(self, phase: Tensor) -> MRI:
        """This single-coil complex operator with the phase phi (radians; (H, W), or (B, H, W)
        one per image) absorbed: A x = M F (e^{i phi} x), so a real image x has measurement y."""
        return MRI(self.mask, self.image_shape, complex_image=True, cg_iters=self.cg_iters,
                   cg_tol=self.cg_tol, phase=phase)

    def svd(self) -> Spectral | None:
        """Single coil: V^T = F (times the known phase), s from the mask (see the module
        docstring); None with coil maps."""
        if self.coils is not None:
            return None
        m = self.mask.to(torch.float64)
        if self.complex_image:  # a known phase e: A = M F diag(e), so V^T = F diag(e)
            return Spectral(lambda x: fft2c(self._mod(x)),
                            lambda c: self._mod(ifft2c(c), conj=True), m)
        s = ((m + self.mask_flip.to(torch.float64)) / 2).sqrt()
        return Spectral(fft2c, lambda c: ifft2c(c).real.contiguous(), s)

    def show(self, y: Tensor) -> Tensor:
        """The zero-filled image |A^T y| (coil-combined with coil maps), clipped to [0, 1]."""
        return self.A_adjoint(y).abs().clamp(0, 1)

    # ---- validation
    def check(self, x: Tensor) -> None:
        super().check(x)
        if x.is_complex() and not self.complex_image:
            raise ValueError("this MRI operator takes real images; use complex_image=True "
                             "for complex ones")
        if not (x.is_floating_point() or x.is_complex()):
            raise ValueError(f"MRI takes floating-point images, got {x.dtype}")

    def _image(self, x: Tensor) -> Tensor:
        self.check(x)
        if self.complex_image and not x.is_complex():
            x = x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
        return x

    def _kspace(self, y: Tensor) -> Tensor:
        if y.dim() != 4 or tuple(y.shape[1:]) != self.measurement_shape:
            raise ValueError(f"k-space shape {tuple(y.shape)} does not match the operator's "
                             f"(B, {', '.join(map(str, self.measurement_shape))})")
        if not y.is_complex():
            if not y.is_floating_point():
                raise ValueError(f"k-space must be complex, got {y.dtype}")
            y = y.to(torch.complex128 if y.dtype == torch.float64 else torch.complex64)
        return y * self.mask.to(y.device)

    def _maps(self, t: Tensor) -> Tensor:
        """The maps for a batch t (B', ...): (Ncoil, H, W), or per item (B, Ncoil, H, W), each
        map serving B' / B consecutive items (K posterior samples of an image lie together)."""
        s = self.coils.to(device=t.device, dtype=t.dtype)
        if s.dim() == 4 and s.shape[0] != t.shape[0]:
            if t.shape[0] % s.shape[0]:
                raise ValueError(f"{s.shape[0]} sets of coil maps for a batch of {t.shape[0]}")
            s = s.repeat_interleave(t.shape[0] // s.shape[0], 0)
        return s

    @staticmethod
    def _support(coils: Tensor | None) -> Tensor | None:
        """(1 or B, 1, H, W) bool: the pixels some coil sees (sum_c |S_c|^2 > 0), or None where
        every pixel is seen (no coils, birdcage maps).  ESPIRiT's eigenvalue crop leaves the
        maps 0 where no object is; A is blind there, so those pixels are measured zeros (the
        support constraint ``consistency.Support``), not left to the prior."""
        if coils is None:
            return None
        energy = (coils.abs() ** 2).sum(-3, keepdim=True)
        seen = energy > 1e-6 * energy.amax(dim=(-2, -1), keepdim=True)
        if bool(seen.all()):
            return None
        return seen if seen.dim() == 4 else seen[None]

    def _mod(self, x: Tensor, conj: bool = False) -> Tensor:
        """x e^{i phi} (or x e^{-i phi}); per-image maps (B, 1, H, W) serve B' / B consecutive
        items of a batch of B' (K posterior samples of an image lie together)."""
        if self.phase is None:
            return x
        e = self.phase.to(device=x.device, dtype=x.dtype)
        if e.dim() == 4 and e.shape[0] != x.shape[0]:
            if x.shape[0] % e.shape[0]:
                raise ValueError(f"{e.shape[0]} phase maps for a batch of {x.shape[0]}")
            e = e.repeat_interleave(x.shape[0] // e.shape[0], 0)
        return x * (e.conj() if conj else e)

    # ---- A, A_adjoint, A_pinv, P
    def A(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> y = M F x (or M F (S x)), complex (B, C or Ncoil, H, W)."""
        x = self._mod(self._image(x))
        if self.coils is not None:
            x = self._maps(x) * x
        return fft2c(x) * self.mask.to(x.device)

    def A_adjoint(self, y: Tensor) -> Tensor:
        """F^H M y (complex), Re F^H M y (real images), or sum_c conj(S_c) F^H M y_c (coils)."""
        z = ifft2c(self._kspace(y))
        if self.coils is not None:
            return (self._maps(z).conj() * z).sum(1, keepdim=True)
        return self._mod(z, conj=True) if self.complex_image else z.real.contiguous()

    def A_pinv(self, y: Tensor) -> Tensor:
        """The minimum-norm least-squares image for k-space y (see the module docstring)."""
        if self.coils is not None:
            return self._pinv_cg(y)
        if self.complex_image:
            return self.A_adjoint(y)
        y = self._kspace(y)
        flip = self.mask_flip.to(y.device)
        count = (self.mask.to(y.device).to(y.real.dtype) + flip.to(y.real.dtype)).clamp_min(1)
        y_tilde = (y + flip_freq(y).conj() * flip) / count
        return ifft2c(y_tilde).real.contiguous()

    def _pinv_cg(self, y: Tensor) -> Tensor:
        """CG in complex128, or in y's precision when ``cg_tol`` >= 1e-6 (early-stopped
        CG-SENSE, ``solve.fastmri``: float32 resolves that tolerance, at half the cost)."""
        y = self._kspace(y)
        y64 = y.to(torch.complex128) if self.cg_tol < 1e-6 else y
        b = self.A_adjoint(y64)
        x = cg(lambda v: self.A_adjoint(self.A(v)), b, n_iter=self.cg_iters, tol=self.cg_tol)
        return x.to(y.dtype)

    def project(self, x: Tensor) -> Tensor:
        """P = A_pinv A: Re F^H M_sym F x (real), F^H M F x (complex), CG for coils."""
        if self.coils is not None:
            return super().project(x)
        x = self._image(x)
        k = fft2c(self._mod(x))
        if self.complex_image:
            return self._mod(ifft2c(k * self.mask.to(x.device)), conj=True)
        return ifft2c(k * self.mask_sym.to(x.device)).real.contiguous()


def centre_block(mask: Tensor) -> Tensor:
    """(H, W) bool, unshifted: the largest fully sampled rectangle of k-space around DC
    (the calibration / ACS region), found by growing it while every entry is sampled."""
    m = centered(mask)
    h, w = m.shape
    cy, cx = h // 2, w // 2
    if not bool(m[cy, cx]):
        return torch.zeros_like(mask)
    t, b, l, r = cy, cy + 1, cx, cx + 1   # the block is m[t:b, l:r]; grow each side in turn
    grown = True
    while grown:
        grown = False
        if l > 0 and bool(m[t:b, l - 1].all()):
            l, grown = l - 1, True
        if r < w and bool(m[t:b, r].all()):
            r, grown = r + 1, True
        if t > 0 and bool(m[t - 1, l:r].all()):
            t, grown = t - 1, True
        if b < h and bool(m[b, l:r].all()):
            b, grown = b + 1, True
    out = torch.zeros_like(m)
    out[t:b, l:r] = True
    return uncentered(out)


def _hann_phase(k: Tensor, top: int, left: int, ny: int, nx: int) -> Tensor:
    """(B, H, W) float64 phase of the image of unshifted k-space k (B, H, W) weighted by a
    separable Hann window of ny x nx entries whose corner is (top, left) in the centred layout
    (the window's end points are kept non-zero: hann(n + 2)[1:-1])."""
    win = torch.zeros(k.shape[-2:], dtype=torch.float64)
    wy = torch.hann_window(ny + 2, periodic=False, dtype=torch.float64)[1:-1]
    wx = torch.hann_window(nx + 2, periodic=False, dtype=torch.float64)[1:-1]
    win[top:top + ny, left:left + nx] = wy[:, None] * wx[None, :]
    return torch.angle(ifft2c(k.to(torch.complex128) * uncentered(win).to(k.device)))


def centre_phase(mask: Tensor, y: Tensor) -> Tensor:
    """(B, H, W) float64 phase (radians) of the low-resolution image from the fully sampled
    centre of single-coil k-space y (B, 1, H, W), Hann-windowed: the smooth phase a
    magnitude prior needs absorbed into the operator (``MRI(..., phase=)``)."""
    block = centre_block(mask)
    if not bool(block.any()):
        raise ValueError("the mask has no fully sampled centre to estimate the phase from")
    c = centered(block)
    rows, cols = torch.where(c.any(1))[0], torch.where(c.any(0))[0]
    return _hann_phase(y[:, 0], int(rows[0]), int(cols[0]), len(rows), len(cols))


def smooth_phase(x: Tensor, band: float = 0.2) -> Tensor:
    """(B, H, W) float64 phase (radians) of a complex image x (B, 1, H, W) low-passed by a Hann
    window over the central ``band`` of k-space in each axis (0.2: frequencies up to 10% of
    the extent on either side): the smooth phase of a start x0_hat, which uses every measured
    line (``centre_phase`` uses only the fully sampled centre).  On 2 validation slices its
    magnitude-weighted error is 0.010 rad from the TV start against the centre's 0.030 (x4)
    and 0.026 from the net start against 0.091 (x8, a 10-line centre;
    ``scripts/complex_vs_phase.py``, README)."""
    if not 0 < band <= 1:
        raise ValueError(f"band must be in (0, 1], got {band}")
    h, w = x.shape[-2:]
    ny, nx = max(int(h * band) | 1, 3), max(int(w * band) | 1, 3)   # odd: symmetric about DC
    return _hann_phase(fft2c(x[:, 0].to(torch.complex128)), h // 2 - ny // 2, w // 2 - nx // 2,
                       ny, nx)


def zero_filled(op: MRI, y: Tensor) -> Tensor:
    """The zero-filled reconstruction A_adjoint y: F^H M y (complex), Re F^H M y (real images),
    the coil-combined sum_c conj(S_c) F^H M y_c (coils) -- the classic initial estimate."""
    return op.A_adjoint(y)
