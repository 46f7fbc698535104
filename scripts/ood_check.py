"""The numbers behind ``ccdf.ood``'s threshold: scores of reconstructions of in-distribution
images and of photograph crops, with the embedded priors.

    python scripts/ood_check.py image     # default-image: SR x4 and box inpainting (~2 min)
    python scripts/ood_check.py mri       # default-mri: MRI x4 uniform 1D (~5 min)

In-distribution: half of the committed sample (the other half is the reference here, so the
images scored are never the reference's); foreign: crops of matplotlib's grace_hopper.jpg,
at full resolution ("photo") and downscaled 4x first ("photo/4", more detail per crop).
For each start and t0 it prints the PSNR of CCDF and of its start, and the score
d(x_rec) / q95(reference) (``ccdf.ood``): min, median, max and the fraction above 1.5.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from matplotlib import cbook
from PIL import Image

from ccdf import datasets, init, metrics, ood
from ccdf.models import load_model
from ccdf.models.formats import load_restorer
from ccdf.operators import make_operator
from ccdf.reconstruction import reconstruct

torch.set_num_threads(1)
which = sys.argv[1] if len(sys.argv) > 1 else "image"
size = 32 if which == "image" else 64
model = load_model(datasets.ASSETS / "models" / f"default-{which}")
if ood.OODCheck(model).z is None:
    sys.exit(f"default-{which} is a prior of any size or of complex images, which ccdf.ood "
             "does not check (the MRI numbers in its docstring are of the retired 64x64 "
             "magnitude prior)")
photo = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
                   .convert("L"), np.float32) / 255
rng = np.random.default_rng(0)


def crops(img, n):
    out = []
    for _ in range(n):
        i, j = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        out.append(img[i:i + size, j:j + size])
    return torch.from_numpy(np.stack(out))[:, None]


small = torch.nn.functional.avg_pool2d(torch.from_numpy(photo)[None, None], 4)[0, 0].numpy()
x = datasets.sample("fashion-mnist" if which == "image" else "mni152")
x_in, ref = x[::2][:24], x[1::2]
n_out = 16 if which == "image" else 8
sets = {"in": x_in, "photo": crops(photo, n_out), "photo/4": crops(small, n_out)}
tasks = ([("sr", {"factor": 4}, "restorer-sr4"), ("inpaint", {"mask": "box"}, None)]
         if which == "image" else [("mri", {"pattern": "uniform1d", "accel": 4}, "restorer-mri4")])
z = ood.fixed_noise((1, size, size))
q95 = float(ood.denoising_error(model, ref, z=z).quantile(0.95))
print(f"reference: {len(ref)} images, q95 of d = {q95:.4f}")
for task, params, rname in tasks:
    op = make_operator(task, (1, size, size), **params)
    net = load_restorer(datasets.ASSETS / "models" / rname) if rname else None
    for name, xs in sets.items():
        y = op.A(xs)
        for start in ["classic"] + (["net"] if net is not None else []):
            x0 = init.classic(op, y) if start == "classic" else init.feed_forward(net, op, y)
            for t0 in (0.05, 0.2, 1.0):
                r = reconstruct(model, op, y, x0, t0=t0, steps=100,
                                generator=torch.Generator().manual_seed(0))
                s = ood.denoising_error(model, r.x.abs(), z=z) / q95
                print(f"{task} {name:8s} {start:7s} t0={t0:<4}: PSNR "
                      f"{float(metrics.psnr(r.x.abs(), xs).mean()):.2f} (start "
                      f"{float(metrics.psnr(x0.abs(), xs).mean()):.2f}); score min "
                      f"{float(s.min()):.2f} median {float(s.median()):.2f} max "
                      f"{float(s.max()):.2f}; above {ood.FACTOR}: "
                      f"{float((s > ood.FACTOR).float().mean()):.2f}")
