"""Multi-coil MRI in ``ccdf bench`` (``--coils N``): the problem and its classical baselines.

The problem (``make_setup``): complex slices (a magnitude times a smooth random phase,
``simulate``) seen by N simulated birdcage coils (``simulate.birdcage``: the TRUE maps, used
only to simulate), undersampled by the task's mask; the operator solved with uses ESPIRiT maps
estimated per slice from the measured centre (``operators.coils.espirit_maps``), as on real
data.  Scored on the magnitude against the true magnitude (images in about [0, 1]).

Baselines, each a bench row (``rows``):

* zero-filled RSS: the root sum of squares of the zero-filled coil images (what fastMRI's
  multi-coil baseline shows);
* the SENSE start: CG-SENSE with the ESPIRiT maps (the operator's pseudo-inverse, 30 CG
  iterations) -- the classic initial estimate of CCDF here;
* compressed sensing with the ESPIRiT maps, sigpy's ``L1WaveletRecon`` (Daubechies-4) and
  ``TotalVariationRecon`` (Lustig, Donoho & Pauly, MRM 58:1182, 2007), each weight lambda
  chosen from ``LAMBDAS`` on validation slices (``simulate`` source ``val``: the margin next
  to the held-out band), never on the evaluation ones.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from . import simulate
from .operators import MRI, make_operator
from .operators.coils import coil_images, espirit_maps, rss

LAMBDAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
CS_ITERS = 100
CS_METHODS = {"L1-wavelet": "L1WaveletRecon", "TV": "TotalVariationRecon"}


def to_centred(y: Tensor) -> np.ndarray:
    """The operator's unshifted k-space y (B, C, H, W) -> fastMRI's centred layout (numpy)."""
    return simulate.fft2c(torch.fft.ifft2(y.to(torch.complex128), norm="ortho").numpy())


def _problem(mag: np.ndarray, task: dict, ncoil: int, seed: int):
    """(x magnitude (N, 1, H, W) float32, y (N, C, H, W) complex64, op with ESPIRiT maps)."""
    n, h, w = mag.shape
    img = simulate.complex_slices(mag, seed)
    truth = torch.from_numpy(simulate.birdcage(ncoil, h, w))
    params = {k: v for k, v in task.items() if k not in ("task", "coils")}
    mask = make_operator("mri", (1, h, w), **params).mask
    sim = MRI(mask, (1, h, w), complex_image=True, coils=truth)
    y = sim.A(torch.from_numpy(img)[:, None]).to(torch.complex64)
    mask_c = np.fft.fftshift(mask.numpy())
    k = to_centred(y)
    maps = np.stack([espirit_maps(k[i], mask_c, f"slice {i}") for i in range(n)])
    from .solve.fastmri import SENSE_ITERS, SENSE_TOL

    op = MRI(mask, (1, h, w), complex_image=True, coils=torch.from_numpy(maps),
             cg_iters=SENSE_ITERS, cg_tol=SENSE_TOL)
    return torch.from_numpy(mag[:, None].astype(np.float32)), y, op


def magnitudes(data: str | None, size: int, n: int | None) -> np.ndarray:
    """(N, size, size) magnitudes: a ``simulate`` source (default: heldout) or a data spec."""
    from . import datasets

    data = data or "heldout"
    if data in simulate.SOURCES:
        mag = simulate.magnitude_slices(data, size)
    else:
        mag = datasets.load(data, size=size)[:, 0].numpy()
    return mag[:n] if n else mag


def make_setup(task: dict, model: str = "default", data: str | None = None,
               n_images: int | None = None, seed: int = 0, size: int = 256):
    """The bench Setup of a multi-coil task ({"task": "mri", ..., "coils": N}); the size is
    the prior's (a size-independent prior: ``size``)."""
    from .bench import ASSET_MODELS, Setup, _task_name
    from .init import classic
    from .models import load_model

    m = load_model(ASSET_MODELS / "default-mri" if model == "default" else model)
    size = m.image_size or size
    ncoil = int(task["coils"])
    mag = magnitudes(data, size, n_images)
    x, y, op = _problem(mag, task, ncoil, seed)
    name = f"{_task_name(task)}, {size}x{size}, ESPIRiT maps, CG-SENSE start, {data or 'heldout'}"
    s = Setup(name=name, task=task, model=m, op=op, x=x, y=y, starts={"classic": classic(op, y)})
    s.extras["multicoil"] = {"data": data or "heldout", "size": size, "seed": seed}
    return s


def zero_filled_rss(y: Tensor) -> Tensor:
    """(N, 1, H, W) RSS of the zero-filled coil images of y (N, C, H, W) (unshifted layout)."""
    return torch.from_numpy(rss(coil_images(to_centred(y)))[:, None].astype(np.float32))


def cs_recon(method: str, y: Tensor, op: MRI, lamda: float, iters: int | None = None) -> Tensor:
    """Compressed sensing with sigpy (``CS_METHODS``) with the operator's coil maps and mask:
    (N, 1, H, W) complex, one slice at a time."""
    import sigpy.mri.app as app

    cls = getattr(app, CS_METHODS[method])
    k = to_centred(y)
    maps = op.coils.to(torch.complex128).numpy()
    maps = np.broadcast_to(maps, (len(k), *maps.shape[-3:])) if maps.ndim == 3 else maps
    w = np.fft.fftshift(op.mask.numpy()).astype(np.float64)
    out = [cls(k[i], maps[i], lamda, weights=w, max_iter=iters or CS_ITERS, show_pbar=False).run()
           for i in range(len(k))]
    return torch.from_numpy(np.stack(out)[:, None].astype(np.complex64))


def choose_lambda(method: str, task: dict, ncoil: int, size: int, seed: int = 0,
                  n_val: int = 4, log=print) -> tuple[float, list]:
    """The lambda of ``LAMBDAS`` with the best mean PSNR on ``n_val`` validation slices."""
    from . import metrics

    x, y, op = _problem(magnitudes("val", size, n_val), task, ncoil, seed + 1)
    curve = []
    for lam in LAMBDAS:
        p = float(metrics.psnr(cs_recon(method, y, op, lam).abs(), x).mean())
        curve.append((lam, p))
    best = max(curve, key=lambda c: c[1])
    log(f"  {method}: lambda = {best[0]:g} on {len(x)} validation slices "
        f"({', '.join(f'{lam:g}: {p:.2f}' for lam, p in curve)})")
    return best[0], curve


def rows(bench, log=print, quick: bool = False) -> dict:
    """Add the zero-filled RSS and the CS rows to ``bench`` (after its initial rows); returns
    the lambdas chosen on validation (4 slices; 2 when ``quick``)."""
    s = bench.s
    info = s.extras["multicoil"]
    tic = time.perf_counter()
    bench.add("zero-filled RSS", zero_filled_rss(s.y), 0, time.perf_counter() - tic)
    chosen = {}
    for method in CS_METHODS:
        lam, curve = choose_lambda(method, s.task, int(s.task["coils"]), info["size"],
                                   info["seed"], n_val=2 if quick else 4, log=log)
        tic = time.perf_counter()
        xh = cs_recon(method, s.y, s.op, lam)
        bench.add(f"CS {method} (sigpy, lambda={lam:g} on validation)", xh, 0,
                  time.perf_counter() - tic)
        chosen[method] = {"lambda": lam, "validation_curve": curve}
    return chosen


def targets(res: dict) -> list:
    """Issue targets for multi-coil (in distribution: heldout; out of distribution: ood)."""
    rows_ = res["rows"]
    ccdf20 = [r for r in rows_ if r["method"].startswith("CCDF") and 0 < r["nfe"] <= 20]
    if not ccdf20:
        return []
    c = max(ccdf20, key=lambda r: r["psnr"])
    by = {r["method"]: r for r in rows_}
    cs = [r for r in rows_ if r["method"].startswith("CS ")]
    out = []
    ood = res.get("multicoil", {}).get("data") == "ood"
    if cs:
        b = max(cs, key=lambda r: r["psnr"])
        margin = 0.0 if ood else 1.0
        out.append((f"CCDF (<= 20 NFE) >= best compressed sensing + {margin:g} dB", 
                    c["psnr"] >= b["psnr"] + margin,
                    f"{c['psnr']:.2f} ({c['method']}) vs {b['psnr']:.2f} ({b['method']})"))
    start = by.get("initial estimate (classic)")
    if start and not ood:
        out.append(("CCDF (<= 20 NFE) >= SENSE start + 3 dB", c["psnr"] >= start["psnr"] + 3,
                    f"{c['psnr']:.2f} vs {start['psnr']:.2f}"))
    full = by.get("full run (t0=1), N=1000")
    if full:
        out.append(("CCDF (<= 20 NFE) >= full run N=1000 - 0.3 dB",
                    c["psnr"] >= full["psnr"] - 0.3, f"{c['psnr']:.2f} vs {full['psnr']:.2f}"))
    return out
