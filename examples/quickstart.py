"""Quick start: x4 super-resolution of Fashion-MNIST test images with the embedded prior.

Compares, at the same 20 network evaluations, the full-run baseline (ILVR-style, t0 = 1,
N = 20) with CCDF (N = 100, t0 = 0.2 -> N' = 20 steps from the bicubic estimate).
Run:  python examples/quickstart.py --out out/quickstart
"""

import argparse
import time
from pathlib import Path

import torch

from ccdf import datasets, init, io, metrics
from ccdf.models import load_model
from ccdf.operators import make_operator
from ccdf.reconstruction import reconstruct

p = argparse.ArgumentParser()
p.add_argument("--out", default="out/quickstart")
p.add_argument("--n", type=int, default=16, help="number of test images")
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

model = load_model(datasets.ASSETS / "models" / "default-image")     # a local folder
x = datasets.sample("fashion-mnist")[: a.n]                            # (n, 1, 32, 32) in [0, 1]
op = make_operator("sr", x.shape[1:], factor=4)                        # A: 4x4 average pooling
y = op.A(x)                                                            # (n, 1, 8, 8)
x0_hat = init.classic(op, y)                                           # bicubic upsampling

rows = {"bicubic (init)": (x0_hat, 0, 0.0)}
for name, steps, t0 in [("full run, N=20, t0=1", 20, 1.0), ("CCDF, N=100, t0=0.2", 100, 0.2)]:
    g = torch.Generator().manual_seed(a.seed)
    tic = time.perf_counter()
    r = reconstruct(model, op, y, x0_hat, t0=t0, steps=steps, generator=g)
    rows[name] = (r.x, r.nfe, time.perf_counter() - tic)

print(f"{'method':24s} {'NFE':>4s} {'PSNR':>7s} {'SSIM':>6s} {'s/img':>6s}")
for name, (xr, nfe, sec) in rows.items():
    print(f"{name:24s} {nfe:4d} {metrics.psnr(xr, x).mean():7.2f} "
          f"{metrics.ssim(xr, x).mean():6.3f} {sec / len(x):6.3f}")
out = Path(a.out)
grid = torch.cat([torch.cat(list(v[0][:8]), 2) for v in rows.values()] + [torch.cat(list(x[:8]), 2)], 1)
io.write_image(out / "quickstart.png", grid)
print(f"grid (rows: {', '.join(rows)}, ground truth) written to {out / 'quickstart.png'}")
