"""Ways of spending 20 network evaluations from the restorer-sr4 start on SR x4 (the embedded
prior, 32 fashion-mnist:val images): one sample on a fine grid or the mean of K samples on a
coarse one.  PSNR of each (dB, mean over the images) against the net alone.

    python scripts/posterior_mean_sr.py [--model default]
"""

import argparse

import torch

from ccdf import metrics
from ccdf.bench import make_setup
from ccdf.reconstruction import reconstruct

RUNS = [(100, 0.03, 6), (1000, 0.02, 1), (1000, 0.01, 2), (500, 0.02, 2), (300, 0.03, 2),
        (200, 0.05, 2), (100, 0.05, 4), (100, 0.1, 2), (100, 0.02, 8), (1000, 0.005, 4)]

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--model", default="default")
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
s = make_setup({"task": "sr", "factor": 4, "kernel": "avg"}, a.model, "fashion-mnist:val", 32,
               "default", extras=False)
net = float(metrics.psnr(s.starts["net"], s.x).mean())
print(f"feed-forward net alone: {net:.2f} dB")
for steps, t0, k in RUNS:
    r = reconstruct(s.model, s.op, s.y, s.starts["net"], t0=t0, steps=steps, samples=k,
                    generator=torch.Generator().manual_seed(0))
    psnr = float(metrics.psnr(r.x, s.x).mean())
    print(f"N = {steps}, t0 = {t0:g}, mean of {k}: {r.nfe} NFE, {psnr:.2f} dB ({psnr - net:+.2f})",
          flush=True)
