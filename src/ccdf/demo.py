"""``ccdf demo``: the main job on the embedded models, no arguments, no download.

For SR x4 and box inpainting (default-image, Fashion-MNIST test images) and MRI x4 uniform 1D
(default-mri, held-out MNI152 slices): the initial estimates, the full-run baseline (t0 = 1)
at the same NFE as CCDF and at N = 1000, CCDF from the classic and from the feed-forward start
(and with auto t0), a PSNR-vs-t0 sweep; writes report.md, results.json, an image grid and a
plot per task.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from . import autot0, datasets, init, io, metrics
from .models import load_model
from .operators import make_operator
from .reconstruct import reconstruct

TASKS = {
    "sr4": {"title": "Super-resolution x4 (average pooling)", "model": "default-image",
            "data": "fashion-mnist", "task": "sr", "params": {"factor": 4},
            "restorer": "restorer-sr4"},
    "inpaint-box": {"title": "Inpainting, centred box", "model": "default-image",
                    "data": "fashion-mnist", "task": "inpaint", "params": {"mask": "box"},
                    "restorer": None},
    "mri4": {"title": "MRI x4, uniform 1D, real magnitude", "model": "default-mri",
             "data": "mni152", "task": "mri", "params": {"pattern": "uniform1d", "accel": 4},
             "restorer": "restorer-mri4"},
}


def _asset(name: str) -> Path:
    return datasets.ASSETS / "models" / name


def _measurement_view(op, y, x_shape) -> torch.Tensor:
    """Something showable for y: nearest-upsampled LR image, masked image, zero-filled MRI."""
    if hasattr(op, "factor"):
        return torch.nn.functional.interpolate(y, size=x_shape[-2:], mode="nearest")
    return op.A_adjoint(y).abs().clamp(0, 1) if y.is_complex() else y


def run_task(key: str, out: Path, quick: bool, seed: int, log=print) -> dict:
    spec = TASKS[key]
    model = load_model(_asset(spec["model"]))
    x = datasets.sample(spec["data"])[: (4 if quick else 16)]
    op = make_operator(spec["task"], x.shape[1:], **spec["params"])
    y = op.A(x)
    starts = {"classic": init.classic(op, y)}
    restorer_meta = {}
    if spec["restorer"] and (_asset(spec["restorer"]) / "config.json").exists():
        from .models.restorer import load_restorer

        net = load_restorer(_asset(spec["restorer"]))
        starts["net"] = init.feed_forward(net, op, y)
        restorer_meta = net.meta
    rows, recon = [], {}

    def run(method, x0_hat, steps, t0, samples=1, start="classic"):
        g = torch.Generator().manual_seed(seed)
        tic = time.perf_counter()
        r = reconstruct(model, op, y, x0_hat, t0=t0, steps=steps, samples=samples, generator=g)
        sec = (time.perf_counter() - tic) / len(x)
        row = {"method": method, "start": start, "nfe": r.nfe, "t0": t0, "steps": steps,
               "psnr": float(metrics.psnr(r.x, x).mean()), "ssim": float(metrics.ssim(r.x, x).mean()),
               "seconds_per_image": sec}
        rows.append(row)
        log(f"  {method:34s} NFE {r.nfe:5d}  PSNR {row['psnr']:6.2f}  SSIM {row['ssim']:.3f}")
        return r

    for name, x0 in starts.items():
        rows.append({"method": f"initial estimate ({name})", "start": name, "nfe": 0, "t0": None,
                     "steps": 0, "psnr": float(metrics.psnr(x0, x).mean()),
                     "ssim": float(metrics.ssim(x0, x).mean()), "seconds_per_image": 0.0})
        log(f"  {rows[-1]['method']:34s} NFE     0  PSNR {rows[-1]['psnr']:6.2f}")
    recon["baseline"] = run("full run (t0=1), N=20", starts["classic"], 20, 1.0).x
    run("full run (t0=1), N=1000", starts["classic"], 1000, 1.0)
    r = run("CCDF classic start, N=100 t0=0.2, mean of 4", starts["classic"], 100, 0.2,
            samples=4)
    recon["ccdf"], recon["std"] = r.x, r.std
    t0a, why = autot0.choose_t0(model, op, y, starts["classic"], 100)
    log(f"  auto t0 (classic): {why}")
    run(f"CCDF classic start, auto t0={t0a:.2f}", starts["classic"], 100, t0a)
    if "net" in starts:
        t0n, why_n = autot0.choose_t0(model, op, y, starts["net"], 100, init_meta=restorer_meta)
        log(f"  auto t0 (net): {why_n}")
        recon["ccdf_net"] = run(f"CCDF net start, auto t0={t0n:.2f}", starts["net"], 100, t0n,
                                start="net").x
        run("CCDF net start, N=100 t0=0.1", starts["net"], 100, 0.1, start="net")
    sweep = [0.05, 0.1, 0.2, 0.5, 1.0] if quick else [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]
    curve = {}
    for name, x0 in starts.items():
        curve[name] = []
        for t0 in sweep:
            g = torch.Generator().manual_seed(seed)
            rr = reconstruct(model, op, y, x0, t0=t0, steps=100, generator=g)
            curve[name].append((t0, float(metrics.psnr(rr.x, x).mean())))
        log(f"  sweep ({name} start, N=100): " + ", ".join(f"t0={t}: {p:.2f}" for t, p in curve[name]))
    # figures
    view = _measurement_view(op, y, x.shape)
    cols = [x, view.real if view.is_complex() else view, starts["classic"], recon["baseline"],
            recon["ccdf"]] + ([recon["ccdf_net"]] if "ccdf_net" in recon else [])
    std = recon["std"] / recon["std"].amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
    cols.append(std)
    n_show = min(4, len(x))
    grid = torch.cat([torch.cat([c[i] for c in cols], 2) for i in range(n_show)], 1)
    io.write_image(out / f"{key}_grid.png", grid)
    _plot_sweep(curve, rows, out / f"{key}_psnr_vs_t0.png", spec["title"])
    labels = ["ground truth", "measurement", "initial (classic)", "full run N=20",
              "CCDF 20 NFE (mean of 4)"] + (["CCDF net start"] if "ccdf_net" in recon else []) + \
        ["std map (normalised)"]
    return {"key": key, "title": spec["title"], "rows": rows, "sweep": curve,
            "auto_t0": t0a, "auto_reason": why, "grid_columns": labels, "n_images": len(x)}


def _plot_sweep(curve, rows, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, pts in curve.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"CCDF, {name} start, N=100")
    for r, c in zip([r for r in rows if r["method"].startswith("initial")], ["gray", "tan"]):
        ax.axhline(r["psnr"], ls=":", c=c, label=r["method"])
    ax.set_xlabel("t0")
    ax.set_ylabel("PSNR (dB)")
    ax.set_xscale("log")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def write_report(results: list[dict], out: Path, skipped: dict, quick: bool) -> Path:
    lines = ["# ccdf demo", "", f"Command: `ccdf demo{' --quick' if quick else ''} --out {out}`", ""]
    for res in results:
        lines += [f"## {res['title']}", "", f"{res['n_images']} images. "
                  f"Auto t0 (classic start): {res['auto_reason']}", "",
                  "| method | NFE | PSNR | SSIM | s/image |", "|---|---:|---:|---:|---:|"]
        for r in res["rows"]:
            lines.append(f"| {r['method']} | {r['nfe']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                         f"{r['seconds_per_image']:.3f} |")
        lines += ["", f"Columns: {', '.join(res['grid_columns'])}.", "",
                  f"![grid]({res['key']}_grid.png)", "", f"![psnr vs t0]({res['key']}_psnr_vs_t0.png)", ""]
    for key, why in skipped.items():
        lines += [f"## {TASKS[key]['title']}", "", f"Skipped: {why}", ""]
    path = out / "report.md"
    with io.atomic_write(path, "w") as f:
        f.write("\n".join(lines))
    return path


def run_demo(out, quick: bool = False, seed: int = 0, tasks=None, log=print) -> Path:
    out = Path(out)
    results, skipped = [], {}
    for key in tasks or TASKS:
        if not (_asset(TASKS[key]["model"]) / "config.json").exists():
            skipped[key] = f"embedded model {TASKS[key]['model']} is not in this build yet"
            log(f"{key}: skipped ({skipped[key]})")
            continue
        log(f"{TASKS[key]['title']}:")
        results.append(run_task(key, out, quick, seed, log))
    io.write_json(out / "results.json", results)
    return write_report(results, out, skipped, quick)
