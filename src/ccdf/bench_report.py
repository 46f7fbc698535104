"""What ``ccdf bench`` writes: results.json, results.md, psnr_vs_nfe.png, psnr_vs_t0.png and
grid.png (ground truth, measurement view, initial estimates, full run, CCDF, peers)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from . import io

#: MRI's --phase as a bench ran it (``reconstruction.resolve_phase``)
PHASE_USED = {"start": "the start's smooth phase absorbed in the operator, a real image",
              "none": "the complex image as it is"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 120) -> None:
    with io.atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi)


def plot_psnr_vs_nfe(res: dict, path: Path) -> None:
    """Every method: PSNR against NFE (log axis); CCDF sweeps as lines, the rest as points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = res["rows"]
    for key, pts in res["curves"].items():
        start, n = key.split(" start, N=")
        nfes = [max(1, round(p[0] * int(n))) for p in pts]
        ax.plot(nfes, [p[1] for p in pts], "o-", ms=3, label=f"CCDF {start}, N={n} (t0 sweep)")
    markers = iter("s^vD<>phX*P8" * 3)
    for r in rows:
        if r["method"].startswith("CCDF") and "auto" not in r["method"]:
            continue
        x = max(r["nfe"], 0.7)  # NFE 0 (feed-forward) drawn at the left edge
        ax.plot([x], [r["psnr"]], next(markers), ls="", label=f"{r['method']}")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations (NFE; 0 drawn at 0.7)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{res['name']}: {res['n_images']} images", fontsize=9)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_psnr_vs_t0(res: dict, path: Path) -> None:
    """CCDF's PSNR (and, where measured, FD: the paper's Table 1 metric) against t0 for each
    start and N (res: "curves" of (t0, psnr, ssim, fd) points, "rows", "name")."""
    plt = _plt()
    has_fd = any(p[3] is not None for pts in res["curves"].values() for p in pts)
    fig, axes = plt.subplots(1, 2 if has_fd else 1, figsize=(9.6 if has_fd else 5.2, 3.6),
                             squeeze=False)
    panels = [(1, "PSNR (dB)", "psnr")] + ([(3, "FD (classifier features; lower is better)",
                                             "fd")] if has_fd else [])
    for ax, (i, label, key) in zip(axes[0], panels):
        for name, pts in res["curves"].items():
            line, = ax.plot([p[0] for p in pts], [p[i] for p in pts], "o-", label=f"CCDF, {name}")
            start, n = name.split(" start, N=")
            auto = [r for r in res["rows"] if "auto" in r["method"] and r["start"] == start
                    and r["steps"] == int(n) and r.get("samples", 1) == 1 and key in r]
            for r in auto:   # the auto t0 run on its curve, where it falls
                ax.plot([r["t0"]], [r[key]], "*", ms=12, c=line.get_color(), mec="k",
                        label=f"auto t0 = {r['t0']:.2f}, {start} start")
        for r, c in zip([r for r in res["rows"] if r["nfe"] == 0 and r["start"]], ["gray", "tan"]):
            if key in r:
                ax.axhline(r[key], ls=":", c=c, label=r["method"])
        ax.set_xscale("log")
        ts = sorted({p[0] for pts in res["curves"].values() for p in pts})
        ax.set_xticks(ts, [f"{t:g}" for t in ts], fontsize=7)   # ticks at the swept t0
        ax.minorticks_off()
        ax.set_xlabel("t0")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle(res["name"], fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _view(s) -> torch.Tensor:
    """The measurement column: the operator's drawing of y (``LinearOperator.show``)."""
    return s.op.show(s.y)


def grid_columns(res: dict, bench) -> list[str]:
    rows = {r["method"]: r for r in res["rows"]}
    want = ["initial estimate (classic)", "feed-forward net alone", "full run (t0=1), N=20",
            "full run (t0=1), N=1000"]
    want[1:1] = [m for m in rows if m.startswith("CS ")]
    ccdf = [m for m in rows if m.startswith("CCDF") and "auto" in m]
    peers = [m for m in rows if m.startswith(("DDRM", "DiffPIR", "DPS")) and m.endswith("N=20")]
    sr = [m for m in rows if m.startswith(("SR3", "ESRGAN"))]
    return [m for m in want if m in rows] + ccdf + peers + sr


def write_grid(res: dict, bench, path: Path, n_show: int = 4, cols=None) -> list[str]:
    """Rows: images; columns: ground truth, measurement, ``cols`` (methods), then the std map
    (normalised per image) of every method that drew K > 1 samples.  Each column is labelled
    with its method, PSNR and NFE over its first row; tiles are drawn at about 140 pixels."""
    import textwrap

    s = bench.s
    cols = cols or grid_columns(res, bench)
    stds = [m for m in cols if m in bench.stds]
    imgs = [s.x.abs().clamp(0, 1), _view(s).real] + [bench.images[m].abs().clamp(0, 1)
                                                     for m in cols]
    imgs += [bench.stds[m] / bench.stds[m].amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
             for m in stds]
    labels = ["ground truth", "measurement"] + cols + [f"std map of {m} (normalised)" for m in stds]
    rows = {r["method"]: r for r in res["rows"]}
    n = min(n_show, len(s.x))
    plt = _plt()
    fig, axes = plt.subplots(n, len(imgs), figsize=(1.45 * len(imgs), 1.45 * n + 0.75),
                             squeeze=False)
    for j, (label, im) in enumerate(zip(labels, imgs)):
        r = rows.get(label)
        title = label + (f" ({r['psnr']:.2f} dB, {r['nfe']} NFE)" if r else "")
        axes[0][j].set_title(textwrap.fill(title, 20), fontsize=7)
        for i in range(n):
            a = im[i].detach().float().cpu().clamp(0, 1)
            a = a[0] if a.shape[0] == 1 else a.permute(1, 2, 0)
            axes[i][j].imshow(a.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[i][j].set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.75 / (1.45 * n + 0.75),
                        wspace=0.05, hspace=0.05)
    _save(fig, path, dpi=100)
    plt.close(fig)
    return labels


def _names(v) -> str:
    """A consistency name or a list of them, as written in the report."""
    return ", ".join(v) if isinstance(v, (list, tuple)) else (v or "")


def full_run_1000(rows: list) -> tuple[dict | None, int | None]:
    """The 1000-step full-run row and, when it ran on the first k images only, k."""
    for r in rows:
        m = re.fullmatch(r"full run \(t0=1\), N=1000(?:, first (\d+) image\(s\))?", r["method"])
        if m:
            return r, (int(m.group(1)) if m.group(1) else None)
    return None, None


def psnr_on(row: dict, k: int | None) -> float | None:
    """A row's mean PSNR, over its first k images when k is given (None: not recorded)."""
    if k is None:
        return row["psnr"]
    each = row.get("psnr_each")
    return sum(each[:k]) / len(each[:k]) if each else None


def against_full_run(c: dict, rows: list) -> tuple[str, bool, str] | None:
    """The target CCDF row c >= the 1000-step full run - 0.3 dB, on the images both ran on."""
    full, k = full_run_1000(rows)
    p = psnr_on(c, k) if full else None
    if p is None:
        return None
    on = f" (on the first {k} image(s))" if k else ""
    return ("CCDF (<= 20 NFE) >= full run N=1000 - 0.3 dB", p >= full["psnr"] - 0.3,
            f"{p:.2f} ({c['method']}) vs {full['psnr']:.2f}{on}; "
            f"{full['nfe'] / max(c['nfe'], 1):.0f}x fewer NFE")


def targets(res: dict) -> list[tuple[str, bool, str]]:
    """The README's quality targets (the paper's claims: CCDF at <= 20 NFE against the full
    run, the starts and the peers), checked on this run's rows: (target, met, the numbers)."""
    rows = res["rows"]
    by = {r["method"]: r for r in rows}
    ccdf20 = [r for r in rows if r["method"].startswith("CCDF") and 0 < r["nfe"] <= 20]
    out = []

    def best(rs):
        return max(rs, key=lambda r: r["psnr"]) if rs else None

    full20 = by.get("full run (t0=1), N=20")
    if res["task"]["task"] == "mri" and ccdf20:
        t = against_full_run(best(ccdf20), rows)
        if t:
            out.append(t)
    if full20 and res["task"]["task"] == "sr":
        for start in ("classic", "net"):
            r = by.get(f"CCDF {start} start, N=100, t0=0.2")
            if r:
                ok = r["psnr"] > full20["psnr"] and r["ssim"] > full20["ssim"]
                out.append((f"CCDF ({start} start, 20 NFE) > full run N=20 in PSNR and SSIM", ok,
                            f"{r['psnr']:.2f}/{r['ssim']:.3f} vs {full20['psnr']:.2f}/"
                            f"{full20['ssim']:.3f}"))
    classic = by.get("initial estimate (classic)")
    c20 = best(ccdf20)
    if res["task"]["task"] == "deblur" and c20:
        if classic:
            out.append(("CCDF (<= 20 NFE) >= the Wiener start + 1 dB", c20["psnr"] >=
                        classic["psnr"] + 1, f"{c20['psnr']:.2f} ({c20['method']}) vs "
                        f"{classic['psnr']:.2f}"))
        if full20:
            out.append(("CCDF (<= 20 NFE) >= full run N=20", c20["psnr"] >= full20["psnr"],
                        f"{c20['psnr']:.2f} vs {full20['psnr']:.2f}"))
    for name, pts in res.get("curves", {}).items():
        out += _interior(name, pts, 1, "PSNR", max)
        if all(p[3] is not None for p in pts):
            out += _interior(name, pts, 3, "FD", min)
    for start, a in res.get("auto_t0", {}).items():
        if "best_fixed_psnr" in a:
            ok = a["psnr"] >= a["best_fixed_psnr"] - 0.5
            out.append((f"auto t0 ({start} start) within 0.5 dB of the best fixed t0", ok,
                        f"auto t0={a['t0']:.2f}: {a['psnr']:.2f} vs best t0="
                        f"{a['best_fixed_t0']}: {a['best_fixed_psnr']:.2f}"))
    if res.get("multicoil"):
        from .multicoil import targets as multicoil_targets

        out += multicoil_targets(res)
    c = best(ccdf20)
    tv = next((r for r in rows if r["method"].startswith("CS total variation")), None)
    if c and tv:
        d = c["psnr"] - tv["psnr"]
        out.append(("CCDF (<= 20 NFE) >= CS total variation", d >= 0,
                    f"{c['psnr']:.2f} ({c['method']}) vs {tv['psnr']:.2f}: {d:+.2f} dB"))
    for peer in ("DiffPIR", "DDRM"):
        p = by.get(f"{peer}, N=20")
        if c and p:
            out.append((f"CCDF (<= 20 NFE) >= {peer} at 20 NFE", c["psnr"] >= p["psnr"],
                        f"{c['psnr']:.2f} vs {p['psnr']:.2f}"))
    dps = by.get("DPS, N=1000")
    if c and dps and c["seconds_per_image"] > 0:
        speed = dps["seconds_per_image"] / c["seconds_per_image"]
        out.append(("CCDF (<= 20 NFE) >= 30x faster than DPS (1000 NFE), no lower PSNR",
                    speed >= 30 and c["psnr"] >= dps["psnr"],
                    f"{speed:.0f}x; {c['psnr']:.2f} vs {dps['psnr']:.2f}"))
    return out


def _interior(name: str, pts, i: int, metric: str, pick) -> list[tuple[str, bool, str]]:
    """Does the t0 curve ``pts`` have its best ``metric`` (column i) strictly inside the grid?"""
    if len(pts) < 3:
        return []
    b = pick(range(len(pts)), key=lambda j: pts[j][i])
    ok = 0 < b < len(pts) - 1
    return [(f"{metric} vs t0 ({name}) has an interior optimum", ok,
             f"best t0 = {pts[b][0]:g}: {pts[b][i]:.2f} (t0 = {pts[0][0]:g}: {pts[0][i]:.2f}, "
             f"t0 = {pts[-1][0]:g}: {pts[-1][i]:.2f})")]


def results_md(res: dict, labels: list[str]) -> str:
    has_fd = any("fd" in r for r in res["rows"])
    head = "| method | NFE | t0 | N | PSNR | SSIM |" + (" FD |" if has_fd else "") + " s/image |"
    lines = [f"# ccdf bench: {res['name']}", "",
             f"Command: `{res['command']}`", "",
             f"{res['n_images']} images; machine: {res['machine']['platform']}, "
             f"{res['machine']['cpu_count']} CPUs, {res['machine']['torch_threads']} torch "
             f"thread(s), torch {res['machine']['torch']}. Measurement noise sigma_y = "
             f"{res.get('sigma_y', 0):g}; CCDF consistency step: "
             f"{_names(res.get('consistency')) or 'projection'}."
             + (f" MRI phase ({res.get('phase', 'auto')}): {PHASE_USED[res['phase_used']]}."
                if res.get("phase_used") else ""), "",
             head, "|---|---:|---:|---:|---:|---:|" + ("---:|" if has_fd else "") + "---:|"]
    for r in res["rows"]:
        t0 = "" if r["t0"] is None else f"{r['t0']:g}"
        n = "" if r["steps"] is None else str(r["steps"])
        fd = f" {r['fd']:.2f} |" if has_fd else ""
        lines.append(f"| {r['method']} | {r['nfe']} | {t0} | {n} | {r['psnr']:.2f} | "
                     f"{r['ssim']:.3f} |{fd} {r['seconds_per_image']:.3f} |")
    if has_fd:
        lines += ["", "FD: Frechet distance on the features of the Fashion-MNIST classifier "
                  "(`ccdf.fid`), reconstructions against the ground-truth images. It is NOT "
                  "Inception FID; lower is better, and with few images it is noisy."]
    th, oh = res["theory"], res["overhead"]
    if res.get("classical"):
        lines += ["", "## Compressed sensing (sigpy)", ""]
        lines += [f"- {k}: lambda = {v['lambda']:g}, chosen on {v['n_val']} validation images "
                  f"(never the evaluated ones) in {v['choice_seconds']:.1f} s; mean PSNR per "
                  f"lambda: " + ", ".join(f"{lm:g}: {p:.2f}" for lm, p in v["table"])
                  for k, v in res["classical"].items()]
    lines += ["", "## Targets", "", "| target | met | numbers |", "|---|---|---|"]
    lines += [f"| {t} | {'yes' if ok else '**no**'} | {n} |" for t, ok, n in targets(res)]
    if th is None:  # no prior: the rows above are all there is
        lines += ["", "## Figures", "", f"Grid columns: {', '.join(labels)}.", "",
                  "![grid](grid.png)", "", "![PSNR vs NFE](psnr_vs_nfe.png)", ""]
        return "\n".join(lines)
    lines += ["", "## Auto t0", ""]
    lines += [f"- {k} start: t0 = {v['t0']:.3f}. {v['reason']}" for k, v in res["auto_t0"].items()]
    lines += ["", "## Theory check (Theorem 1)", "",
              f"CCDF (classic start, t0 = {th['t0']}, N = {th['steps']}, N' = {th['n_prime']}) "
              f"against the full run (t0 = 1, N = {th['steps']}), same seed, per pixel in the "
              f"model's [-1, 1] space: measured ||x_CCDF - x_full||^2 = {th['measured']:.4g}; "
              f"bound 2 C tau/(1 - lambda^2) + lambda^(2N') eps_N' = {th['noise_term']:.4g} + "
              f"{th['bound'] - th['noise_term']:.4g} = {th['bound']:.4g} with lambda = "
              f"{th['lambda']:.4f}, C = {th['C']:.3g}, tau = {th['tau']:.3f}, measured eps_N' = "
              f"{th['eps_nprime_measured']:.4g}: the bound "
              f"{'holds' if th['holds'] else 'does NOT hold'}. (The constants assume the "
              f"theorem's idealised score; a trained network is not bound by them.)",
              "", "## Solver overhead", "",
              f"Batch {oh['batch']}, N' = {oh['n_prime']}: CCDF {oh['ccdf_seconds']:.3f} s against "
              f"{oh['n_prime']} bare network calls {oh['network_seconds']:.3f} s: ratio "
              f"{oh['ratio']:.3f} (median of {oh['reps']}).",
              "", "## Figures", "", f"Grid columns: {', '.join(labels)}.", "",
              "![grid](grid.png)", "", "![PSNR vs NFE](psnr_vs_nfe.png)", "",
              "![PSNR vs t0](psnr_vs_t0.png)", ""]
    return "\n".join(lines)


def write_outputs(res: dict, bench, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    labels = write_grid(res, bench, out / "grid.png")
    plot_psnr_vs_nfe(res, out / "psnr_vs_nfe.png")
    if res["curves"]:
        plot_psnr_vs_t0(res, out / "psnr_vs_t0.png")
    io.write_json(out / "results.json", res["rows"])
    io.write_json(out / "bench.json", {k: v for k, v in res.items() if k != "rows"})
    with io.atomic_write(out / "results.md", "w") as f:
        f.write(results_md(res, labels))
