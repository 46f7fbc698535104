"""Ways to give a diffusion prior complex MRI images, measured on the same data.

(A) complex prior: the image x = m e^{i phi} is reconstructed as it is, the prior seeing its
    real and imaginary parts as two channels (the embedded MRI prior is trained with smooth
    random phase maps): ``reconstruct(..., phase="none")``.
(B) the start's phase in the operator: the smooth phase phi_hat of the start (its low-passed
    image, ``operators.mri.smooth_phase``) is absorbed into the operator
    A_phi x = M F (e^{i phi_hat} x) and a real image is reconstructed from Re(e^{-i phi_hat}
    x0_hat): Im x is held at its diffused value 0 (``consistency.RealImage``).  The library's
    default for single-coil k-space: ``reconstruct(..., phase="start")``, ``--phase auto``.
(C) the same with the phase of the fully sampled centre (``operators.mri.centre_phase``),
    session 9's version of (B).

Every method runs CCDF from the same start (``--start``: zero-filled, sigpy's total-variation
reconstruction at ``--cs-lambda``, or the embedded feed-forward net) with the same prior,
sampler (DDPM, N = ``--steps``), seed and t0 grid; PSNR/SSIM are of the magnitude against |x|.
The phase estimates' errors against the true phase (mean |angle difference| weighted by the
magnitude) are reported too.

    python scripts/complex_vs_phase.py --data mri:val256-complex --n-images 2 --start tv \
        --steps 1000 --t0 0.02 --out docs/results/complex-vs-phase-tv-val --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ccdf import bench, datasets, init, metrics
from ccdf.models import load_model
from ccdf.models.formats import load_restorer
from ccdf.operators import MRI, make_operator
from ccdf.operators.mri import centre_phase, smooth_phase
from ccdf.reconstruction import reconstruct


def run(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    x = datasets.load(args.data)[: args.n_images]
    if not x.is_complex():
        x = x.to(torch.complex64)
    _, c, h, w = x.shape
    op = make_operator("mri", (c, h, w), pattern=args.pattern, accel=args.accel,
                       complex_image=True, seed=0)
    y = op.A(x)
    ref = x.abs()
    phi = centre_phase(op.mask, y)
    ops_c = [MRI(op.mask, (c, h, w), complex_image=True, phase=phi[i]) for i in range(len(x))]
    rows = []

    def row(method, t0, xs, secs):
        rows.append({"method": method, "t0": t0, "psnr": float(metrics.psnr(xs.abs(), ref).mean()),
                     "ssim": float(metrics.ssim(xs.abs(), ref).mean()),
                     "seconds_per_image": secs / len(x)})
        print(f"  {method:34s} t0 {t0!s:5s} PSNR {rows[-1]['psnr']:6.2f} SSIM {rows[-1]['ssim']:.3f}")

    zf = op.A_pinv(y)
    row("zero-filled", None, zf, 0.0)
    if args.start == "tv":
        zf = init.CompressedSensing("tv", args.cs_lambda)(op, y)
        row(f"TV (lambda {args.cs_lambda:g})", None, zf, 0.0)
    elif args.start == "net":
        zf = init.feed_forward(load_restorer(bench.default_restorer({"task": "mri"})), op, y)
        row("feed-forward net", None, zf, 0.0)
    mag, true = x[:, 0].abs().double(), torch.angle(x[:, 0]).double()
    errors = {}
    for name, est in (("centre", phi), ("start", smooth_phase(zf))):
        e = torch.angle(torch.exp(1j * (est - true))).abs()
        errors[name] = float(((e * mag).sum(dim=(-2, -1)) / mag.sum(dim=(-2, -1))).mean())
        print(f"  phase error of the {name}'s estimate: {errors[name]:.4f} rad")
    rows.append({"method": "phase error (rad)", **errors})
    for t0 in args.t0:
        tic = time.perf_counter()
        r = reconstruct(model, op, y, zf, t0=t0, steps=args.steps, phase="none",
                        generator=torch.Generator().manual_seed(0))
        row("(A) complex prior", t0, r.x, time.perf_counter() - tic)
        tic = time.perf_counter()
        out = [reconstruct(model, op, y[i:i + 1], zf[i:i + 1], t0=t0, steps=args.steps,
                           phase="start", generator=torch.Generator().manual_seed(0)).x
               for i in range(len(x))]
        row("(B) the start's phase, real image", t0, torch.cat(out), time.perf_counter() - tic)
        tic = time.perf_counter()
        out = []
        for i, op_c in enumerate(ops_c):
            start = (zf[i:i + 1] * op_c.phase.conj().to(zf.dtype)).real  # op_c.phase: e^{i phi}
            out.append(reconstruct(model, op_c, y[i:i + 1],
                                   torch.complex(start, torch.zeros_like(start)), t0=t0,
                                   steps=args.steps, real_image=True, phase="none",
                                   generator=torch.Generator().manual_seed(0)).x)
        row("(C) the centre's phase, real image", t0, torch.cat(out), time.perf_counter() - tic)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(datasets.ASSETS / "models" / "default-mri"))
    p.add_argument("--data", default="mri:heldout256-complex")
    p.add_argument("--n-images", type=int, default=8)
    p.add_argument("--pattern", default="uniform1d")
    p.add_argument("--accel", type=float, default=4)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--start", choices=["zf", "tv", "net"], default="zf",
                   help="zero-filled, TV compressed sensing (sigpy) at --cs-lambda, or the "
                   "embedded feed-forward net (restorer-mri)")
    p.add_argument("--cs-lambda", type=float, default=0.01)
    p.add_argument("--t0", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="docs/results/complex-vs-phase")
    a = p.parse_args()
    rows = run(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=2))
    start = {"tv": "TV", "net": "feed-forward net", "zf": "zero-filled"}[a.start]
    err = next(r for r in rows if r["method"] == "phase error (rad)")
    lines = [f"# Complex prior vs phase in the operator ({a.data}, first {a.n_images}, "
             f"{a.pattern} x{a.accel:g}, N = {a.steps}, {start} start)", "",
             f"Phase error (mean |angle difference| weighted by the magnitude): the centre's "
             f"estimate {err['centre']:.4f} rad, the start's {err['start']:.4f} rad.", "",
             "| method | t0 | PSNR | SSIM | s/image |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['t0'] if r['t0'] is not None else '-'} | {r['psnr']:.2f} | "
              f"{r['ssim']:.3f} | {r['seconds_per_image']:.2f} |" for r in rows if r is not err]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
