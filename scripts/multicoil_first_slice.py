"""CCDF on the first slice of the multi-coil x4 bench alone, beside the bench's 1000-step full
run (which ran on that slice only: ~20 min of one CPU thread), with the N = 100 grid and with
the N = 1000 grid at t0 = 0.02 (20 NFE: the paper's setting of a fine grid and a short jump).

    python scripts/multicoil_first_slice.py > docs/results/mc4-256-first-slice.log

Same setup as `bash scripts/results_multicoil.sh`'s first bench (8 birdcage coils, ESPIRiT
maps, CG-SENSE start, uniform 1-D x4, mri:heldout256-complex, 2 slices spread over the band).
"""

import dataclasses

import torch

torch.set_num_threads(1)

from ccdf.bench import Bench, make_setup  # noqa: E402

task = {"task": "mri", "pattern": "uniform1d", "accel": 4, "coils": 8}
s = make_setup(task, "default", "mri:heldout256-complex", 2, "none")
s1 = dataclasses.replace(s, x=s.x[:1], y=s.y[:1], op=s.op.first(1),
                         starts={k: v[:1] for k, v in s.starts.items()})
b = Bench(s1, 0, print, "projection")
b.initial()
for t0, n, k in ((0.1, 100, 1), (0.2, 100, 1), (0.1, 100, 2), (0.02, 1000, 1), (0.1, 200, 1)):
    b.ccdf(f"CCDF classic start, N={n}, t0={t0}" + (f", mean of {k}" if k > 1 else ""),
           "classic", t0, n, samples=k)
