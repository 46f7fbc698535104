"""Automatic t0: estimate the initial error eps0 of x0_hat, then take the shortest path that
the contraction argument says is enough.

Rule.  For data whose prior variance along the error direction is s^2, the reverse chain
shrinks a start error exactly by w = s^2 / (s^2 + sigma_bar^2), sigma_bar^2 = b(t0)^2/a(t0)^2
(the product of the per-step Jacobians of Theorem 1 telescopes for a Gaussian prior; see
``contraction_factor``).  Taking s^2 = eps0 (the error lives at its own scale) and asking
w^2 <= mu gives the smallest t0 with

    b(t0)^2 / a(t0)^2 >= k eps0,      k = 1 / sqrt(mu) - 1

(mu = 0.25: k = 1, the injected noise matches the initial error).  t0 is then clipped to
[t0_min, 1] and rounded up to the grid of N steps.

The Gaussian k is optimistic for the structured errors of real starts (aliasing, blur, a
hole), so ``calibrate`` measures k once per prior, task and start: on validation images (never
the evaluation ones) it sweeps t0, takes the smallest t0 within ``tol`` dB of the best PSNR,
and stores k = (b^2/a^2)(t0*) / eps0 (eps0 as formed at run time, below) with the start's
held-out error in ``autot0.json`` beside the prior (``ccdf calibrate-t0``).  The rule
itself is unchanged: only k is measured.

eps0 (per pixel, in the images' units; ``reconstruction.error_to_model`` turns it into model
space) comes from, in order:
  * the start's held-out error stored with the calibration;
  * the restoration net's own held-out error saved with it (``heldout.mse_net``);
  * otherwise the classic initializer's error on a few images drawn from the prior itself
    (``prior_init_error``: K unconditional DDIM samples, computed once per run);
plus the measurement residual ||y - A x0_hat||^2 / n and the noise level sigma_y^2.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from . import init as _init
from . import io, metrics
from .assets import task_key
from .models.denoiser import from_model
from .samplers import solve
from .schedules import n_prime

CALIBRATION = "autot0.json"
CALIBRATION_GRID = (0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def contraction_factor(schedule, t0: float, s2: float) -> float:
    """w = prod_i lambda_i(s) = a^2 s^2 / (a^2 s^2 + b^2) for a Gaussian prior of variance s^2."""
    a2 = float(schedule.a(t0)) ** 2
    b2 = float(schedule.b(t0)) ** 2
    return a2 * s2 / (a2 * s2 + b2)


def noise_to_signal(schedule, t0: float) -> float:
    """sigma_bar^2 = b(t0)^2 / a(t0)^2: the noise the jump adds, in units of the data."""
    return float(schedule.b(t0)) ** 2 / float(schedule.a(t0)) ** 2


def t0_for_error(schedule, steps: int, eps0_model: float, mu: float = 0.25,
                 t0_min: float = 0.02, k: float | None = None) -> float:
    """Smallest grid t0 in [t0_min, 1] with b^2/a^2 >= k eps0 (k = 1/sqrt(mu) - 1 unless
    given: then contraction_factor(t0, eps0)^2 <= mu)."""
    if not 0 < mu < 1:
        raise ValueError(f"mu must be in (0, 1), got {mu}")
    k = 1 / math.sqrt(mu) - 1 if k is None else k
    lo = max(n_prime(max(t0_min, 1.0 / steps), steps), 1)
    for n in range(lo, steps + 1):
        if noise_to_signal(schedule, n / steps) >= k * eps0_model * (1 - 1e-12):
            return n / steps
    return 1.0


def residual(operator, y, x0_hat) -> float:
    """||y - A x0_hat||^2 / n: the part of the start's error that the measurement shows."""
    return float((y - operator.A(x0_hat)).abs().pow(2).mean())


def operator_key(operator) -> tuple:
    """A key that differs whenever the operator does: its type and every attribute, tensors
    and arrays by dtype, shape and a hash of their bytes (``repr`` elides large tensors, so two
    64x64 masks would share one)."""
    import hashlib

    import numpy as np

    def part(v):
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            data = torch.view_as_real(v) if v.is_complex() else v
            raw = data.contiguous().view(-1).view(torch.uint8).numpy() if data.numel() else b""
            return ("tensor", str(v.dtype), tuple(v.shape), hashlib.sha1(raw).hexdigest())
        if isinstance(v, np.ndarray):
            return ("array", str(v.dtype), v.shape, hashlib.sha1(np.ascontiguousarray(v)).hexdigest())
        if isinstance(v, (list, tuple)):
            return tuple(part(u) for u in v)
        if isinstance(v, dict):
            return tuple((k, part(u)) for k, u in sorted(v.items()))
        if hasattr(v, "__dict__") and not isinstance(v, type):
            return operator_key(v)
        return repr(v)

    attrs = getattr(operator, "__dict__", None)
    if attrs is None:
        return (type(operator).__name__, repr(operator))
    return (type(operator).__qualname__, tuple((k, part(v)) for k, v in sorted(attrs.items())))


def prior_init_error(model, operator, n: int = 8, steps: int = 20, seed: int = 0) -> float:
    """Per-pixel MSE of the classic initializer on n samples of the prior (images in [0, 1];
    a complex prior's samples at the operator's size, magnitude ~[0, 1])."""
    c, h, w = operator.image_shape
    cplx = bool(getattr(model, "complex", False))
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros(n, c, h, w, dtype=torch.complex64 if cplx else torch.float32)
    res = solve(model, z, steps=steps, t0=1.0, sampler="ddim", generator=g)
    x = res.x if cplx else from_model(model, res.x).clamp(0, 1)
    x_init = _init.classic(operator, operator.A(x))
    return float((x_init - x).abs().pow(2).mean())


# ----------------------------------------------------------------------------- calibration
def start_key(restorer=None) -> str:
    """'classic', 'cs:<kind>' for a compressed-sensing start (``init.CompressedSensing``), or
    'net:<folder name>' for a restoration network loaded from a folder."""
    if restorer is None:
        return "classic"
    if isinstance(getattr(restorer, "key", None), str):
        return restorer.key
    return f"net:{Path(getattr(restorer, 'source', 'restorer')).name}"


def calibration_file(model) -> Path | None:
    """Where a prior's calibration lives: ``autot0.json`` in its folder (None: not from disk)."""
    src = getattr(model, "source", None)
    if src is None:
        return None
    src = Path(src)
    return src / CALIBRATION if src.is_dir() else src.with_suffix(".autot0.json")


def find_calibration(model, task: dict, start: str) -> dict | None:
    """The stored calibration of (prior, task, start), or None."""
    f = calibration_file(model)
    if f is None or not f.exists():
        return None
    try:
        return io.read_json(f).get(task_key(task), {}).get(start)
    except (OSError, ValueError):
        return None


def calibrated_steps(calibration: dict | None, default: int = 100) -> int:
    """N of the grid a start's auto t0 was calibrated on (t0* is the best t0 on that grid: at
    small t0 a finer grid takes more, smaller steps, N' = t0 N), else ``default``."""
    return int((calibration or {}).get("steps") or default)


def calibrate(model, operator, x, x0_hat, steps: int = 100, grid=CALIBRATION_GRID,
              tol: float = 0.1, seed: int = 0, log=None, y=None, sigma_y: float = 0.0,
              phase: str = "auto") -> dict:
    """Measure k for one start: x (B, C, H, W) validation images in [0, 1], x0_hat their start,
    y their measurement (default A x, noiseless) with noise std sigma_y; ``phase``: MRI's
    phase handling (``reconstruction.phase_operator``), as the runs it calibrates use.

    Sweeps t0 over ``grid`` (CCDF, DDPM, projection, N = ``steps``), takes t0* = the smallest t0
    whose PSNR is within ``tol`` dB of the best, and returns {"k", "eps0", "t0_best", "steps",
    "n_images", "curve": [[t0, psnr], ...]}; k = (b^2/a^2)(t0*) / (eps0 + residual) in model
    space, the same eps0 that ``choose_t0`` forms at run time (so that it returns t0* here):
    (eps0 + residual + sigma_y^2)."""
    from .reconstruction import error_to_model, reconstruct

    y = operator.A(x) if y is None else y
    curve = []
    for t0 in grid:
        r = reconstruct(model, operator, y, x0_hat, t0=t0, steps=steps, sigma_y=sigma_y,
                        phase=phase, generator=torch.Generator().manual_seed(seed))
        curve.append([float(t0), float(metrics.psnr(r.x.abs(), x.abs()).mean())])
        if log:
            log(f"  t0 = {t0:<5g} PSNR {curve[-1][1]:.2f}")
    best = max(p for _, p in curve)
    t_best = min(t for t, p in curve if p >= best - tol)
    eps0 = float((x0_hat - x).abs().pow(2).mean())
    resid = residual(operator, y, x0_hat)
    k = noise_to_signal(model.schedule, t_best) / (error_to_model(model, x0_hat)
                                                   * max(eps0 + resid + sigma_y**2, 1e-12))
    return {"k": k, "eps0": eps0, "residual": resid, "sigma_y": float(sigma_y),
            "t0_best": t_best, "psnr_best": best,
            "steps": steps, "n_images": len(x), "tol_db": tol, "phase": phase, "curve": curve}


def save_calibration(model, task: dict, start: str, entry: dict) -> Path:
    """Merge ``entry`` into the prior's ``autot0.json`` (atomic); returns the file."""
    f = calibration_file(model)
    if f is None:
        raise ValueError("this model was not loaded from a folder: nowhere to save autot0.json")
    data = io.read_json(f) if f.exists() else {}
    data.setdefault(task_key(task), {})[start] = entry
    try:
        io.write_json(f, data)
    except OSError as e:
        raise OSError(f"cannot write {f} ({e.strerror or e}); copy the model folder somewhere "
                      "writable and pass --model PATH") from None
    return f


def choose_t0(model, operator, y, x0_hat, steps: int, sigma_y: float = 0.0,
              init_meta: dict | None = None, mu: float = 0.25, t0_min: float = 0.02,
              cache: dict | None = None, calibration: dict | None = None) -> tuple[float, str]:
    """(t0, reason) for images x0_hat (B, C, H, W) in [0, 1] and their measurement y.

    ``calibration`` (``find_calibration``) gives the start's held-out eps0 and the measured k;
    ``cache`` (a dict) keeps the prior-based estimate across calls of one run.
    """
    held = (init_meta or {}).get("heldout") or {}
    k = None
    if calibration:
        base, k = float(calibration["eps0"]), float(calibration["k"])
        src = (f"this start's MSE on {calibration['n_images']} validation images, calibrated "
               f"k = {k:.3g}")
    elif "mse_net" in held:
        base, src = float(held["mse_net"]), "restoration net's held-out MSE"
    else:
        key = ("prior_init_error", id(model), operator_key(operator))
        if cache is not None and key in cache:
            base = cache[key]
        else:
            base = prior_init_error(model, operator)
            if cache is not None:
                cache[key] = base
        src = "classic initializer's MSE on 8 prior samples"
    resid = residual(operator, y, x0_hat)
    eps0 = base + resid + float(sigma_y) ** 2
    from .reconstruction import error_to_model

    t0 = t0_for_error(model.schedule, steps, error_to_model(model, x0_hat) * eps0, mu, t0_min, k)
    rule = (f"k = {k:.3g} (calibrated)" if k is not None else
            f"k = 1/sqrt(mu) - 1 = {1 / math.sqrt(mu) - 1:.3g} (Gaussian prior, mu = {mu})")
    reason = (f"eps0 = {eps0:.3g} per pixel ({src}: {base:.3g} + residual {resid:.3g} + "
              f"sigma_y^2 {float(sigma_y) ** 2:.3g}); smallest t0 with b^2/a^2 >= k eps0, "
              f"{rule}: t0 = {t0:.3f} (N' = {n_prime(t0, steps)} of N = {steps}, PSNR of "
              f"x0_hat ~ {-10 * math.log10(max(eps0, 1e-12)):.1f} dB)")
    return t0, reason
