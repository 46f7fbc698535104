"""Multi-coil MRI in ``ccdf bench`` (``--coils N``): the simulated acquisition and its rows.

``problem``: images x (N, 1, H, W) (complex slices with a smooth phase, e.g. the
``mri:heldout256-complex`` set, or real ones) seen by N simulated birdcage coils
(``simulate.birdcage``: the TRUE maps, used only to simulate), undersampled by the task's
mask; the operator solved with uses ESPIRiT maps estimated per slice from the measured centre
(``operators.coils.espirit_maps``), as on real data, with the early-stopped CG-SENSE
pseudo-inverse (``solve.fastmri.SENSE_ITERS``): the classic start is CG-SENSE.  The bench
scores magnitudes against the true magnitude.

Rows besides the bench's: zero-filled RSS (the root sum of squares of the zero-filled coil
images, fastMRI's multi-coil baseline), and compressed sensing with the ESPIRiT maps
(``classical``, sigpy) whose lambda is chosen on validation slices simulated the same way
with their own ESPIRiT maps (``validation``).  ``targets``: the multi-coil targets.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from . import simulate
from .operators import MRI, make_operator
from .operators.coils import coil_images, espirit_maps, rss


def to_centred(y: Tensor) -> np.ndarray:
    """The operator's unshifted k-space y (B, C, H, W) -> fastMRI's centred layout (numpy)."""
    return simulate.fft2c(torch.fft.ifft2(y.to(torch.complex128), norm="ortho").numpy())


def problem(x: Tensor, task: dict, sigma_y: float = 0.0,
            seed: int = 0) -> tuple[MRI, Tensor, Tensor]:
    """(operator with ESPIRiT maps, k-space y (N, C, H, W) complex64, zero-filled RSS
    (N, 1, H, W)) for images x (N, 1, H, W) and the task ({"task": "mri", ..., "coils": N});
    ``sigma_y``: white complex noise of that std (real and imaginary parts) on every measured
    k-space entry of every coil, drawn from ``seed``."""
    from .solve.fastmri import SENSE_ITERS, SENSE_TOL

    n, _, h, w = x.shape
    truth = torch.from_numpy(simulate.birdcage(int(task["coils"]), h, w))
    params = {k: v for k, v in task.items() if k not in ("task", "coils")}
    mask = make_operator("mri", (1, h, w), **params).mask
    sim = MRI(mask, (1, h, w), complex_image=True, coils=truth)
    y = sim.A(x.to(torch.complex128)).to(torch.complex64)
    if sigma_y > 0:
        g = torch.Generator().manual_seed(int(seed))
        z = torch.complex(torch.randn(y.shape, generator=g), torch.randn(y.shape, generator=g))
        y = y + sigma_y * z * mask
    k = to_centred(y)
    mask_c = np.fft.fftshift(mask.numpy())
    maps = np.stack([espirit_maps(k[i], mask_c, f"slice {i}") for i in range(n)])
    op = MRI(mask, (1, h, w), complex_image=True, coils=torch.from_numpy(maps),
             cg_iters=SENSE_ITERS, cg_tol=SENSE_TOL)
    zf = torch.from_numpy(rss(coil_images(k))[:, None].astype(np.float32))
    return op, y, zf


def validation(spec: str, task: dict, n: int | None = None, sigma_y: float = 0.0,
               seed: int = 0):
    """(x_val, y_val, op_val): validation images (``n`` spread over the set) simulated as the
    evaluation ones, with their own ESPIRiT maps -- for ``classical.choose_lambda``."""
    from . import datasets

    x = datasets.load(spec)
    if n and n < len(x):
        x = x[torch.linspace(0, len(x) - 1, n).round().long()]
    op, y, _ = problem(x, task, sigma_y, seed + 1)
    return x, y, op


def targets(res: dict) -> list:
    """The multi-coil targets (CCDF at <= 20 NFE against compressed sensing and the SENSE
    start; the full-run target is ``bench_report``'s, as for one coil); out-of-distribution
    data (``ood`` in the name) asks CS + 0 dB."""
    rows = res["rows"]
    ccdf20 = [r for r in rows if r["method"].startswith("CCDF") and 0 < r["nfe"] <= 20]
    if not ccdf20:
        return []
    c = max(ccdf20, key=lambda r: r["psnr"])
    by = {r["method"]: r for r in rows}
    ood = "ood" in str(res.get("multicoil", {}).get("data", ""))
    out = []
    cs = [r for r in rows if r["method"].startswith("CS ")]
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
    return out
