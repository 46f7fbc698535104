"""Compare snapshots of a prior on VALIDATION images before publishing one (never the
evaluation sets): the same CCDF runs, same seed, for each model folder given.

    python scripts/compare_priors.py mri src/ccdf/assets/models/default-mri out/default-mri-new
    python scripts/compare_priors.py image default out/default-image-new

mri:   2 slices of mri:val256-complex, uniform 1-D x4: the TV start (lambda 0.01, the
       calibrated one) at t0 = 0.02 / 0.05 on N = 100 and 0.005 / 0.01 / 0.02 on N = 1000, and
       the zero-filled start at t0 = 0.3 (N = 100);
image: 32 images of fashion-mnist:val: SR x4 (the 20-step full run, the bicubic start at
       t0 = 0.2 / 0.5, the restorer-sr4 start at t0 = 0.03, mean of 6, and 0.1), box inpainting
       (full run N = 20, restorer-inpaint start t0 = 0.02, mean of 8) and Gaussian deblurring
       sigma 2, sigma_y 0.01 (full run N = 20, restorer-deblur start t0 = 0.03, mean of 6).
Prints one line per run: PSNR (dB, mean over the images; MRI: of the magnitude).
"""

import argparse
import time

import torch

from ccdf import init, metrics
from ccdf.bench import make_setup
from ccdf.reconstruction import reconstruct

MRI = [({"task": "mri", "pattern": "uniform1d", "accel": 4.0}, 0.0,
        [("tv", 0.02, 100, 1), ("tv", 0.05, 100, 1), ("tv", 0.005, 1000, 1),
         ("tv", 0.01, 1000, 1), ("tv", 0.02, 1000, 1), ("classic", 0.3, 100, 1)])]
IMAGE = [({"task": "sr", "factor": 4, "kernel": "avg"}, 0.0,
          [("classic", 1.0, 20, 1), ("classic", 0.2, 100, 1), ("classic", 0.5, 100, 1),
           ("net", 0.03, 100, 6), ("net", 0.1, 100, 1)]),
         ({"task": "inpaint", "mask": "box"}, 0.0, [("classic", 1.0, 20, 1), ("net", 0.02, 100, 8)]),
         ({"task": "deblur", "kernel": "gaussian", "kernel_sigma": 2.0}, 0.01,
          [("classic", 1.0, 20, 1), ("net", 0.03, 100, 6)])]

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("kind", choices=["mri", "image"])
p.add_argument("models", nargs="+", help="model folders (or 'default')")
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
data, n = ("mri:val256-complex", 2) if a.kind == "mri" else ("fashion-mnist:val", 32)
for model in a.models:
    for task, sigma_y, runs in (MRI if a.kind == "mri" else IMAGE):
        s = make_setup(task, model, data, n, "none" if a.kind == "mri" else "default",
                       extras=False, sigma_y=sigma_y)
        if a.kind == "mri":
            s.starts["tv"] = init.CompressedSensing("tv", 0.01)(s.op, s.y, 0.0)
        for start, t0, steps, k in runs:
            tic = time.perf_counter()
            r = reconstruct(s.model, s.op, s.y, s.starts[start], t0=t0, steps=steps, samples=k,
                            sigma_y=sigma_y, generator=torch.Generator().manual_seed(0))
            psnr = float(metrics.psnr(r.x.abs(), s.x.abs()).mean())
            print(f"{model} | {task['task']} | {start} start, t0 = {t0:g}, N = {steps}"
                  f"{f', mean of {k}' if k > 1 else ''} | {psnr:.2f} dB "
                  f"({time.perf_counter() - tic:.0f} s)", flush=True)
