"""``ccdf demo``: the main job on the embedded models, no arguments, no download.

For SR x4 and box inpainting (default-image, Fashion-MNIST test images) and MRI x4 uniform 1D
(default-mri, held-out MNI152 slices): the initial estimates, the full-run baseline (t0 = 1)
at the same NFE as CCDF and at N = 1000, CCDF from the classic and from the feed-forward start
(and with auto t0), a PSNR-vs-t0 sweep; writes report.md, results.json, an image grid and a
plot per task.  The multi-coil MRI row (``mri4-8coils``): the held-out slices with a smooth
phase seen by 8 simulated coils, ESPIRiT maps, the CG-SENSE start, zero-filled RSS and
compressed sensing (``multicoil``), and CCDF with the projection and the DDS (cg) consistency.
"""

from __future__ import annotations

from pathlib import Path

from . import bench, bench_report, datasets, io
from .assets import DEFAULT_IMAGE, DEFAULT_MRI, RESTORER_MRI, RESTORER_SR4, asset_path

TASKS = {
    "sr4": {"title": "Super-resolution x4 (average pooling)", "model": DEFAULT_IMAGE,
            "data": "fashion-mnist", "task": "sr", "params": {"factor": 4},
            "restorer": RESTORER_SR4},
    "inpaint-box": {"title": "Inpainting, centred box", "model": DEFAULT_IMAGE,
                    "data": "fashion-mnist", "task": "inpaint", "params": {"mask": "box"},
                    "restorer": None},
    "mri4": {"title": "MRI x4, uniform 1D, real magnitude (64x64 held-out slices)",
             "model": DEFAULT_MRI, "data": "mni152", "task": "mri",
             "params": {"pattern": "uniform1d", "accel": 4}, "restorer": RESTORER_MRI},
    "mri4-8coils": {"title": "MRI x4, uniform 1D, 8 coils (ESPIRiT maps, complex)",
                    "model": DEFAULT_MRI, "data": "heldout", "task": "mri",
                    "params": {"pattern": "uniform1d", "accel": 4, "coils": 8},
                    "restorer": None},
}


def _asset(name: str) -> Path:
    return asset_path(name)


def _multicoil_data(model: Path) -> str:
    """The multi-coil row's images: the 256 x 256 complex held-out set for a prior of any
    size, else the held-out sample at the prior's size (64 x 64, real)."""
    import json

    try:
        any_size = bool(json.loads((model / "config.json").read_text()).get("any_size"))
    except (OSError, ValueError):
        any_size = False
    return "mri:heldout256-complex" if any_size else "mni152:sample"


def run_task(key: str, out: Path, quick: bool, seed: int, log=print) -> dict:
    """One demo task on the bench's machinery (``bench.Bench``): rows, sweep, grid, plot."""
    spec = TASKS[key]
    rpath = _asset(spec["restorer"]) if spec["restorer"] else None
    restorer = str(rpath) if rpath and (rpath / "config.json").exists() else "none"
    task = {"task": spec["task"], **spec["params"]}
    n = (2 if key.startswith("mri") else 4) if quick else 16
    multi = "coils" in spec["params"]
    data = _multicoil_data(_asset(spec["model"])) if multi else f"{spec['data']}:sample"
    if multi and data == "mni152:sample":
        task["acs"] = 8  # ESPIRiT needs 8 centre lines; fastMRI's 8% of 64 columns is 5
    s = bench.make_setup(task, str(_asset(spec["model"])), data, n, restorer)
    b = bench.Bench(s, seed, log)
    b.initial()
    extra = {}
    if multi:  # zero-filled RSS and compressed sensing, lambda on validation slices
        from . import multicoil

        val = datasets.validation_spec(data)
        cs = b.classical_rows(multicoil.validation(val, task, 2 if quick else 4) if val else None)
        extra = {"multicoil": {"data": data, "cs": cs}}
    b.full_runs((20, 1000))
    ccdf = "CCDF classic start, N=100 t0=0.2, mean of 4"
    b.ccdf(ccdf, "classic", 0.2, 100, samples=4)
    grid = [0.05, 0.1, 0.2, 0.5, 1.0] if quick else [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]
    curves = b.sweep(grid, (100,))
    if multi:  # DDS's conjugate-gradient consistency: multi-coil's fast one
        b.consistency = "cg"
        curves.update(b.sweep(grid, (100,)))
        b.consistency = None   # the operator's own again
    try:
        auto = b.auto()
    except (ValueError, RuntimeError) as e:
        log(f"  auto t0: skipped ({e})")
        auto = {}
    res = {"name": spec["title"], "rows": b.rows, "curves": curves, "task": s.task,
           "auto_t0": auto, **extra}
    best = best_row(b.rows)["method"]
    cols = (["zero-filled RSS"] if multi else []) + \
        ["initial estimate (classic)", "full run (t0=1), N=20", ccdf] + \
        ([m for m in b.images if m.startswith("CS ")] +
         ["CCDF classic start, N=100, t0=0.2, cg"] if multi else []) + \
        [m for m in b.images if "auto" in m]                   # every auto t0 row
    cols += [best] if best not in cols else []                 # and the best, where it is not
    labels = bench_report.write_grid(res, b, out / f"{key}_grid.png", cols=cols)
    bench_report.plot_psnr_vs_t0(res, out / f"{key}_psnr_vs_t0.png")
    return {"key": key, "title": spec["title"], "rows": b.rows,
            "sweep": {k.split(" start")[0]: [(p[0], p[1]) for p in v] for k, v in curves.items()},
            "auto_t0": auto["classic"]["t0"] if auto else None,
            "auto_reason": auto["classic"]["reason"] if auto else "skipped",
            "grid_columns": labels, "n_images": len(s.x),
            "targets": [{"target": t, "met": ok, "numbers": n}
                        for t, ok, n in bench_report.targets(res)]}


def best_row(rows: list) -> dict:
    """The row with the best PSNR (the first of equals)."""
    return max(rows, key=lambda r: r["psnr"])


SHORT = {"sr4": "SR x4", "inpaint-box": "box inpainting", "mri4": "MRI x4"}


def summary(results: list[dict], skipped: dict) -> list[str]:
    """Three plain lines: what was run, what won, what did not."""
    if not results:
        return ["Nothing was run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ".",
                "", ""]
    ran = ", ".join(f"{SHORT.get(r['key'], r['key'])} ({r['n_images']} images)" for r in results)
    won = []
    for r in results:
        b = best_row(r["rows"])
        full = next((x for x in r["rows"] if x["method"] == "full run (t0=1), N=1000"), None)
        vs = f" vs {full['psnr']:.2f} dB for the 1000-step full run" if full else ""
        won.append(f"{SHORT.get(r['key'], r['key'])}: {b['method']}, {b['psnr']:.2f} dB at "
                   f"{b['nfe']} NFE{vs}")
    missed = [f"{SHORT.get(r['key'], r['key'])}: {t['target']}"
              for r in results for t in r["targets"] if not t["met"]]
    missed += [f"{SHORT.get(k, k)} skipped ({v})" for k, v in skipped.items()]
    return [(f"**What was run:** {ran} on the embedded models: the initial estimates, full "
             "runs (t0 = 1) at 20 and 1000 NFE, and CCDF at fixed and automatic t0 from the "
             "classic start and, where a restoration net exists, from its output."),
            "**What won (best PSNR):** " + "; ".join(won) + ".",
            "**What did not:** " + ("; ".join(missed) if missed else "every target below was met")
            + "."]


def write_report(results: list[dict], out: Path, skipped: dict, quick: bool) -> Path:
    lines = ["# ccdf demo", "", *[line + "  " for line in summary(results, skipped)], "",
             f"Command: `ccdf demo{' --quick' if quick else ''} --out {out}`", ""]
    for res in results:
        best = best_row(res["rows"])["method"]
        lines += [f"## {res['title']}", "",
                  f"{res['n_images']} images. Auto t0 (classic start): {res['auto_reason']}", "",
                  "| method | NFE | PSNR | SSIM | s/image |", "|---|---:|---:|---:|---:|"]
        for r in res["rows"]:
            b = "**" if r["method"] == best else ""
            lines.append(f"| {b}{r['method']}{' (best)' if b else ''}{b} | {r['nfe']} | "
                         f"{b}{r['psnr']:.2f}{b} | {r['ssim']:.3f} | {r['seconds_per_image']:.3f} |")
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
    # --quick leaves out the 256x256 multi-coil row (minutes of CPU): ask for it with --tasks
    for key in tasks or [k for k in TASKS if not (quick and "coils" in TASKS[k]["params"])]:
        if not (_asset(TASKS[key]["model"]) / "config.json").exists():
            skipped[key] = f"embedded model {TASKS[key]['model']} is not in this build yet"
            log(f"{key}: skipped ({skipped[key]})")
            continue
        log(f"{TASKS[key]['title']}:")
        results.append(run_task(key, out, quick, seed, log))
    io.write_json(out / "results.json", results)
    return write_report(results, out, skipped, quick)
