"""Copy a training run's EMA model into the package assets with a quality report.

    python scripts/snapshot_model.py training/default-image default-image --samples 36 --steps 50

Writes src/ccdf/assets/models/NAME/{model.safetensors, config.json,
REPORT.md} and a figure, according to the kind of model:
  prior (ccdf-model)          unconditional DDIM samples (samples.png);
  SR3 (ccdf-model + condition) PSNR/SSIM on the evaluation sample and a grid (LR, SR3, truth);
  restorer (ccdf-restorer)     PSNR of the classic start and of the net on the held-out data
                               (from its config) and on the evaluation sample; a grid;
  classifier (ccdf-classifier) its test accuracy.
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from ccdf import datasets, init, io, metrics

p = argparse.ArgumentParser()
p.add_argument("run")
p.add_argument("name")
p.add_argument("--samples", type=int, default=36)
p.add_argument("--steps", type=int, default=50)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--fp16", action="store_true", help="store the weights in float16 (half the size)")
a = p.parse_args()
torch.set_num_threads(a.threads)
run, dst = Path(a.run), datasets.ASSETS / "models" / a.name
dst.mkdir(parents=True, exist_ok=True)
for f in ("model.safetensors", "config.json"):
    shutil.copy(run / f, dst / f)
if a.fp16:
    from safetensors.torch import load_file, save_file

    sd = load_file(str(dst / "model.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in sd.items()},
              str(dst / "model.safetensors"))
cfg = json.loads((dst / "config.json").read_text())
log = [json.loads(ln) for ln in (run / "train_log.jsonl").read_text().splitlines() if ln.strip()]
last, tail = log[-1], log[-200:]
command = cfg.get("extra", {}).get("command") or cfg.get("train_config", {}).get("extra", {}).get(
    "command", "?")
head = f"""# {a.name}

Trained on: {cfg.get('trained_on')}  
Training command: `{command}`  
Snapshot at step {last['step']} ({last['time'] / 3600:.2f} h of training on a shared 2-core
CPU), mean loss over the last {len(tail)} steps {sum(r['loss'] for r in tail) / len(tail):.4f};
the loss of every step is in the training run's `train_log.jsonl` ({run}).
"""


def grid(cols, path, n=8):
    io.write_image(path, torch.cat([torch.cat([c[i] for c in cols], 2) for i in range(n)], 1))


def sample_of(task):
    return datasets.sample("mni152" if task["task"] == "mri" else "fashion-mnist")


MRI_SEEN = """
What it has seen: native-resolution 2-D slices (no resampling) of two brains -- MNI152 2009a
(1 mm, axial slices outside the held-out band z = 83..104) and Colin27 (1 mm with the head,
and 0.5 mm, in all three orientations) -- as random {patch} patches, flipped, rotated by
multiples of 90 degrees, scaled in intensity by 0.6-1.2, and multiplied by smooth random phase
maps (10% real, 15% a constant phase, else a constant + a linear ramp + a smooth 4x4 random
field). What it has not seen: MNI152 sagittal and coronal slices, the held-out axial band,
the Shepp-Logan phantom (all in ``mri:heldout256`` / ``mri:ood*``), knees, other contrasts
(T2, FLAIR, PD), pathology, real receiver noise and coil-combined real k-space.
"""

if cfg.get("complex") or cfg.get("kind") == "mri-unrolled":
    size_note = ("Takes complex (or real) images of any size H x W (fully convolutional; "
                 "reflect-padded to a multiple of its downsampling), magnitude ~[0, 1] "
                 "after ccdf's scaling (inputs in any units are scaled and scaled back).")
else:
    size_note = ""

if cfg.get("kind") == "mri-unrolled":
    from ccdf.models.formats import load_restorer
    from ccdf.operators import make_operator

    net = load_restorer(dst)
    x = datasets.load("mri:heldout256-complex")[:8]
    rows, cols = [], [x.abs()]
    for pattern, accel in (("uniform1d", 4), ("random1d", 8), ("gaussian1d", 6), ("vd2d", 8)):
        op = make_operator("mri", x.shape[1:], pattern=pattern, accel=accel, complex_image=True)
        y = op.A(x)
        zf, out = init.classic(op, y), init.feed_forward(net, op, y)
        rows.append(f"| {pattern} x{accel} | {float(metrics.psnr(zf.abs(), x.abs()).mean()):.2f} | "
                    f"{float(metrics.psnr(out.abs(), x.abs()).mean()):.2f} |")
        if pattern == "uniform1d":
            cols += [zf.abs(), out.abs()]
    grid([c.clamp(0, 1) for c in cols], dst / "examples.png", n=4)
    body = f"""
The unrolled MRI start (`{net.iters}` iterations of x <- DC(x + UNet(x, k))) for any Cartesian
mask, trained with random masks (uniform/equispaced, random and Gaussian 1-D, 2-D variable
density; accelerations 2-12; centres of 4-8% of the columns) on 64-128 pixel crops.
{size_note}

PSNR (magnitude) on the first 8 slices of `mri:heldout256-complex` (held-out axial band at
256x256 with a smooth phase):

| mask | zero-filled | this net |
|---|---:|---:|
{chr(10).join(rows)}

Columns of `examples.png` (uniform 1-D x4): ground truth, zero-filled, this net.
{MRI_SEEN.format(patch='64-128 pixel')}
![examples](examples.png)
"""
elif cfg.get("complex"):
    cmd = [sys.executable, "-m", "ccdf", "sample", "--model", str(dst), "--n", str(a.samples),
           "--size", "128", "--steps", str(a.steps), "--sampler", "ddim",
           "--out", str(dst / "samples.png")]
    subprocess.run(cmd, check=True)
    body = f"""
The embedded MRI prior: a complex-image (2-channel: real, imaginary), size-independent VP
diffusion prior (diffusers UNet2DModel, no attention). {size_note}
{MRI_SEEN.format(patch=str(cfg.get('patch', 64)) + 'x' + str(cfg.get('patch', 64)))}
Unconditional samples at 128x128 (magnitude; DDIM, {a.steps} steps, made with
`ccdf sample --model {a.name} --n {a.samples} --size 128 --steps {a.steps} --sampler ddim`).
A patch prior's unconditional samples show local brain texture, not whole-slice anatomy: the
measurement supplies the global structure.

![samples](samples.png)
"""
elif cfg["format"] == "ccdf-classifier":
    body = f"\nTest accuracy on the 10,000 Fashion-MNIST test images: {cfg['test_accuracy']:.4f}.\n"
elif cfg["format"] == "ccdf-restorer":
    from ccdf.models.formats import load_restorer
    from ccdf.models.restorer import evaluate_restorer, simulate

    net = load_restorer(dst)
    x = sample_of(net.task)
    ev = evaluate_restorer(net, x)
    held = cfg.get("heldout", {})
    op = net.operator(x.shape[1:])
    sigma_y = float(net.meta.get("sigma_y", 0.0))
    y = simulate(op, x, sigma_y, torch.Generator().manual_seed(0))
    grid([x, init.classic(op, y, sigma_y), init.feed_forward(net, op, y, sigma_y)],
         dst / "examples.png")
    body = f"""
Restoration network for `{net.task}` ({cfg.get('extra', {}).get('kind', 'L1')}), measurement
noise sigma_y = {sigma_y:g}.

| images | PSNR classic start | PSNR net | MSE net |
|---|---:|---:|---:|
| held-out data ({held.get('n_images', '?')} images; `heldout` in config.json, used by `--t0 auto`) | {held.get('psnr_init', float('nan')):.2f} | {held.get('psnr_net', float('nan')):.2f} | {held.get('mse_net', float('nan')):.3g} |
| the evaluation sample ({ev['n_images']} images) | {ev['psnr_init']:.2f} | {ev['psnr_net']:.2f} | {ev['mse_net']:.3g} |

Columns of `examples.png`: ground truth, classic start, this net.

![examples](examples.png)
"""
elif cfg.get("condition"):
    from ccdf.models import load_model
    from ccdf.models.sr3 import Conditioned, condition
    from ccdf.operators import make_operator
    from ccdf.samplers import solve

    m = load_model(dst)
    x = sample_of(m.meta["condition"])
    t = m.meta["condition"]
    op = make_operator("sr", x.shape[1:], **{k: v for k, v in t.items() if k != "task"})
    y = op.A(x)
    cond = condition(m, y, x.shape[1:])
    r = solve(Conditioned(m, cond), torch.zeros_like(cond), steps=100, t0=1.0,
              generator=torch.Generator().manual_seed(0))
    xs = ((r.x + 1) / 2).clamp(0, 1)
    grid([x, (cond + 1) / 2, xs], dst / "examples.png")
    body = f"""
SR3-style conditional model for `{t}`, sampled with N = 100 DDPM steps on the
{len(x)}-image evaluation sample: PSNR {float(metrics.psnr(xs, x).mean()):.2f}, SSIM
{float(metrics.ssim(xs, x).mean()):.3f} (bicubic start: PSNR
{float(metrics.psnr((cond + 1) / 2, x).mean()):.2f}).

Columns of `examples.png`: ground truth, bicubic upsampling (the condition), SR3 sample.

![examples](examples.png)
"""
else:
    cmd = [sys.executable, "-m", "ccdf", "sample", "--model", str(dst), "--n", str(a.samples),
           "--steps", str(a.steps), "--sampler", "ddim", "--out", str(dst / "samples.png")]
    subprocess.run(cmd, check=True)
    body = f"""
Unconditional samples (DDIM, {a.steps} steps, made with
`ccdf sample --model {a.name} --n {a.samples} --steps {a.steps} --sampler ddim`):

![samples](samples.png)
"""
(dst / "REPORT.md").write_text(head + body)
(dst / "model.safetensors").chmod(0o644)
print(f"snapshot of {run} at step {last['step']} written to {dst}")
