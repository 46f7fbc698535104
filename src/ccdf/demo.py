"""``ccdf demo``: the main job on the embedded models, no arguments, no download.

For SR x4 and box inpainting (default-image, Fashion-MNIST test images) and MRI x4 uniform 1D
(default-mri, held-out MNI152 slices): the initial estimates, the full-run baseline (t0 = 1)
at the same NFE as CCDF and at N = 1000, CCDF from the classic and from the feed-forward start
(and with auto t0), a PSNR-vs-t0 sweep; writes report.md, results.json, an image grid and a
plot per task.
"""

from __future__ import annotations

from pathlib import Path

from . import bench, bench_report, datasets, io

TASKS = {
    "sr4": {"title": "Super-resolution x4 (average pooling)", "model": "default-image",
            "data": "fashion-mnist", "task": "sr", "params": {"factor": 4},
            "restorer": "restorer-sr4"},
    "inpaint-box": {"title": "Inpainting, centred box", "model": "default-image",
                    "data": "fashion-mnist", "task": "inpaint", "params": {"mask": "box"},
                    "restorer": None},
    "mri4": {"title": "MRI x4, uniform 1D, real magnitude (64x64 held-out slices)",
             "model": "default-mri", "data": "mni152", "task": "mri",
             "params": {"pattern": "uniform1d", "accel": 4}, "restorer": "restorer-mri"},
}


def _asset(name: str) -> Path:
    return datasets.ASSETS / "models" / name


def run_task(key: str, out: Path, quick: bool, seed: int, log=print) -> dict:
    """One demo task on the bench's machinery (``bench.Bench``): rows, sweep, grid, plot."""
    spec = TASKS[key]
    rpath = _asset(spec["restorer"]) if spec["restorer"] else None
    restorer = str(rpath) if rpath and (rpath / "config.json").exists() else "none"
    s = bench.make_setup({"task": spec["task"], **spec["params"]}, str(_asset(spec["model"])),
                         f"{spec['data']}:sample", (2 if key == "mri4" else 4) if quick else 16,
                         restorer)
    b = bench.Bench(s, seed, log)
    b.initial()
    b.full_runs((20, 1000))
    ccdf = "CCDF classic start, N=100 t0=0.2, mean of 4"
    b.ccdf(ccdf, "classic", 0.2, 100, samples=4)
    curves = b.sweep([0.05, 0.1, 0.2, 0.5, 1.0] if quick else [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0],
                     (100,))
    auto = b.auto()
    res = {"name": spec["title"], "rows": b.rows, "curves": curves, "task": s.task,
           "auto_t0": auto}
    cols = ["initial estimate (classic)", "full run (t0=1), N=20", ccdf] + \
        [m for m in b.images if "auto" in m and "net start" in m]
    labels = bench_report.write_grid(res, b, out / f"{key}_grid.png", cols=cols)
    bench_report.plot_psnr_vs_t0(res, out / f"{key}_psnr_vs_t0.png")
    return {"key": key, "title": spec["title"], "rows": b.rows,
            "sweep": {k.split(" start")[0]: [(p[0], p[1]) for p in v] for k, v in curves.items()},
            "auto_t0": auto["classic"]["t0"], "auto_reason": auto["classic"]["reason"],
            "grid_columns": labels, "n_images": len(s.x),
            "targets": [{"target": t, "met": ok, "numbers": n}
                        for t, ok, n in bench_report.targets(res)]}


def write_report(results: list[dict], out: Path, skipped: dict, quick: bool) -> Path:
    lines = ["# ccdf demo", "", f"Command: `ccdf demo{' --quick' if quick else ''} --out {out}`", ""]
    for res in results:
        lines += [f"## {res['title']}", "", f"{res['n_images']} images. "
                  f"Auto t0 (classic start): {res['auto_reason']}", "",
                  "| method | NFE | PSNR | SSIM | s/image |", "|---|---:|---:|---:|---:|"]
        for r in res["rows"]:
            lines.append(f"| {r['method']} | {r['nfe']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                         f"{r['seconds_per_image']:.3f} |")
        lines += ["", "| target | met | numbers |", "|---|---|---|"]
        lines += [f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['numbers']} |"
                  for t in res["targets"]]
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
