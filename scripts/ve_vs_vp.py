"""VE (SMLD, the paper's choice for MRI) against VP (DDPM) as the MRI prior, at an equal budget.

Both priors are trained with the same network, data, batch, seed and number of steps (the
default-mri command with only --schedule changed):

    for s in vp ve; do
      ccdf train --data brains --out runs/mri-$s-600 --schedule $s --image-size 64 \\
        --channels-mult 32,64,128,128 --batch-size 16 --lr 3e-4 --steps 600 --hflip \\
        --threads 1 --checkpoint-every 100 --no-progress
    done
    python scripts/ve_vs_vp.py runs/mri-vp-600 runs/mri-ve-600 --out docs/results/ve-vs-vp

Then each solves MRI x4 uniform 1D (real magnitude) on the validation slices (mni152:val,
never trained on, not the evaluation band) with CCDF from the zero-filled start at N = 100
(DDPM steps for VP; for VE both the SMLD reverse-SDE steps and the posterior-variance ones)
over a t0 sweep, and draws unconditional samples (DDPM for VP, SMLD for VE).  Writes
results.md, results.json, psnr_vs_t0.png, samples_vp.png and samples_ve.png to --out.
"""

import argparse
import json
from pathlib import Path

import torch

from ccdf import datasets, init, io, metrics
from ccdf.bench_report import _plt, _save
from ccdf.models import load_model
from ccdf.operators import make_operator
from ccdf.reconstruction import reconstruct
from ccdf.samplers import solve

GRID = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)

p = argparse.ArgumentParser()
p.add_argument("vp")
p.add_argument("ve")
p.add_argument("--out", default="docs/results/ve-vs-vp")
p.add_argument("--steps", type=int, default=100)
p.add_argument("--samples", type=int, default=16)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
out = Path(a.out)
out.mkdir(parents=True, exist_ok=True)

x = datasets.load("mni152:val", size=64)
op = make_operator("mri", x.shape[1:], pattern="uniform1d", accel=4)
y = op.A(x)
x0 = init.classic(op, y)
zf = float(metrics.psnr(x0, x).mean())
res = {"n_images": len(x), "zero_filled_psnr": zf, "steps": a.steps, "runs": {}}
for name, path in (("vp", a.vp), ("ve", a.ve)):
    m = load_model(path)
    log = [json.loads(ln) for ln in (Path(path) / "train_log.jsonl").read_text().splitlines()]
    cmd = json.loads((Path(path) / "config.json").read_text()).get("extra", {}).get("command")
    # VP: DDPM steps; VE: SMLD reverse-SDE steps (its own) and the posterior-variance steps
    for sampler in ("ddpm",) if name == "vp" else ("smld", "ddpm"):
        curve = []
        for t0 in GRID:
            r = reconstruct(m, op, y, x0, t0=t0, steps=a.steps, sampler=sampler,
                            generator=torch.Generator().manual_seed(0))
            curve.append([t0, float(metrics.psnr(r.x, x).mean()),
                          float(metrics.ssim(r.x, x).mean())])
            print(f"{name} {sampler} t0={t0}: PSNR {curve[-1][1]:.2f} SSIM {curve[-1][2]:.3f}",
                  flush=True)
        res["runs"][f"{name.upper()} ({sampler})"] = {
            "path": str(path), "steps_trained": log[-1]["step"], "sampler": sampler,
            "final_loss_mean_last100": sum(r["loss"] for r in log[-100:]) / len(log[-100:]),
            "curve": curve, "command": cmd}
    sampler = "ddpm" if name == "vp" else "smld"
    s = solve(m, torch.zeros(a.samples, 1, 64, 64), steps=a.steps, t0=1.0, sampler=sampler,
              generator=torch.Generator().manual_seed(0))
    io.write_image(out / f"samples_{name}.png",
                   io.tile(((s.x + 1) / 2).clamp(0, 1), int(a.samples ** 0.5)))

plt = _plt()
fig, ax = plt.subplots(figsize=(5.2, 3.6))
for name, r in res["runs"].items():
    ax.plot([c[0] for c in r["curve"]], [c[1] for c in r["curve"]], "o-",
            label=f"{name} prior, {r['steps_trained']} steps")
ax.axhline(zf, ls=":", c="gray", label="zero-filled")
ax.set_xscale("log")
ax.set_xlabel("t0")
ax.set_ylabel("PSNR (dB)")
ax.set_title(f"MRI x4 uniform 1D, {len(x)} validation slices, N = {a.steps}", fontsize=9)
ax.legend(fontsize=7)
fig.tight_layout()
_save(fig, out / "psnr_vs_t0.png")

lines = ["# VE against VP as the MRI prior, equal budget", "",
         f"{len(x)} validation slices (mni152:val), MRI x4 uniform 1D, CCDF from the zero-filled "
         f"start ({zf:.2f} dB), N = {a.steps}, seed 0.", "",
         "| t0 | " + " | ".join(f"{n} PSNR / SSIM" for n in res["runs"]) + " |",
         "|---:|" + "---:|" * len(res["runs"])]
for i, t0 in enumerate(GRID):
    lines.append(f"| {t0:g} | " + " | ".join(f"{r['curve'][i][1]:.2f} / {r['curve'][i][2]:.3f}"
                                            for r in res["runs"].values()) + " |")
lines += [""] + [f"- {n}: {r['steps_trained']} steps, mean loss of the last 100 "
                 f"{r['final_loss_mean_last100']:.4f} (its own loss; VP and VE losses are not "
                 f"comparable); `{r['command']}`" for n, r in res["runs"].items()]
lines += ["", "![PSNR vs t0](psnr_vs_t0.png)", "",
          "Unconditional samples (N = 100): VP ![vp](samples_vp.png) VE ![ve](samples_ve.png)", ""]
io.write_json(out / "results.json", res)
(out / "results.md").write_text("\n".join(lines))
print(f"written to {out}/results.md")
