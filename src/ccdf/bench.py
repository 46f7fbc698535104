"""``ccdf bench``: quality against network evaluations (NFE) and time, every method on the same
images with the same network, in one run.

Rows (``results.json``: a list of {"method", "start", "nfe", "t0", "steps", "psnr", "ssim",
"seconds_per_image", "n_images"} plus "fd" for super-resolution):
  * the initial estimate (classic) and the feed-forward network alone;
  * the full-run baseline (t0 = 1: ILVR / score-SDE / score-MRI) at N = 1000 and N = 20;
  * CCDF at the paper's t0 grid with N = 100 and N = 1000, classic and feed-forward start,
    with auto t0 (calibrated: ``ccdf calibrate-t0``), and the mean of as many posterior
    samples at auto t0 as fit in 20 NFE;
  * with ``peers``: DDRM, DiffPIR and DPS (``ccdf.peers``) with the same network, at their
    default NFE and at 20;
  * for super-resolution with the embedded models: SR3-style and ESRGAN-style baselines and a
    Frechet distance (``ccdf.fid``) for every method.
Also: the theory check (measured ||x_CCDF - x_full||^2 against the Theorem 1 bound) and the
solver overhead (wall time of CCDF against N' bare network calls at batch 8).

``consistency`` (``--consistency``, a comma list): the data consistency of the CCDF and
full-run rows (the first; projection by default); the t0 sweep runs once per entry.  With
``coils`` (``--coils N``, MRI): multi-coil k-space of complex slices with ESPIRiT maps
(``multicoil``), the CG-SENSE start, zero-filled RSS and compressed-sensing rows, and CCDF
with each consistency (projection, gradient, cg by default).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from . import autot0, datasets, init, io, metrics, theory
from .consistency import randn_like
from .models import load_model
from .operators import make_operator
from .reconstruct import reconstruct
from .schedules import n_prime

T0_GRID = (0.05, 0.1, 0.2, 0.5, 0.75, 1.0)
ASSET_MODELS = datasets.ASSETS / "models"


@dataclass
class Setup:
    """One bench problem: images x (N, C, H, W) in [0, 1], their measurement y, the starts."""

    name: str
    task: dict
    model: object
    op: object
    x: Tensor
    y: Tensor
    starts: dict                      # "classic" / "net" -> x0_hat (N, C, H, W)
    restorer_meta: dict = field(default_factory=dict)
    start_keys: dict = field(default_factory=lambda: {"classic": "classic"})  # calibration keys
    extras: dict = field(default_factory=dict)   # "sr3", "esrgan", "extractor"


def _asset(name: str) -> Path | None:
    p = ASSET_MODELS / name
    return p if (p / "config.json").exists() else None


def default_restorer(task: dict) -> Path | None:
    """The embedded restorer for the embedded tasks (SR x4 average pooling, MRI x4 uniform 1D)."""
    if task["task"] == "sr" and task.get("factor") == 4 and task.get("kernel", "avg") == "avg":
        return _asset("restorer-sr4")
    if task["task"] == "mri" and task.get("pattern") == "uniform1d" and task.get("accel") == 4 \
            and task.get("acs") is None:
        return _asset("restorer-mri4")
    return None


def make_setup(task: dict, model: str = "default", data: str | None = None,
               n_images: int | None = None, restorer: str = "default",
               extras: bool = True) -> Setup:
    """Load the model, the images (a ``datasets.load`` spec; default: the embedded sample),
    the operator, the measurement and the initial estimates (and, with ``extras``, the SR
    comparison models and the FD classifier)."""
    from .models.restorer import load_restorer

    kind = task["task"]
    mpath = (ASSET_MODELS / ("default-mri" if kind == "mri" else "default-image")
             if model == "default" else Path(model))
    m = load_model(mpath)
    if data is None:
        data = "mni152:sample" if kind == "mri" else "fashion-mnist:sample"
    x = datasets.load(data, size=m.image_size, channels=m.channels)
    x = x[:n_images] if n_images else x
    op = make_operator(kind, x.shape[1:], **{k: v for k, v in task.items() if k != "task"})
    y = op.A(x)
    s = Setup(name=_task_name(task), task=task, model=m, op=op, x=x, y=y,
              starts={"classic": init.classic(op, y)})
    rpath = default_restorer(task) if restorer == "default" else (
        None if restorer in ("none", "") else Path(restorer))
    if rpath is not None:
        net = load_restorer(rpath)
        s.starts["net"], s.restorer_meta = init.feed_forward(net, op, y), net.meta
        s.start_keys["net"] = autot0.start_key(net)
    if extras and kind == "sr" and model == "default" and m.channels == 1 and m.image_size == 32:
        for key, name in (("sr3", "sr3-sr4"), ("esrgan", "esrgan-sr4")):
            if task.get("factor") == 4 and task.get("kernel", "avg") == "avg" and _asset(name):
                s.extras[key] = (load_model if key == "sr3" else load_restorer)(_asset(name))
        from . import fid

        if (fid.DEFAULT / "config.json").exists():
            s.extras["extractor"] = fid.load_classifier()
    return s


def _task_name(task: dict) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in task.items() if k != "task" and v is not None)
    return f"{task['task']} ({rest})"


class Bench:
    """Runs methods on one Setup and collects rows; every run uses the same seed."""

    def __init__(self, setup: Setup, seed: int = 0, log=print, consistency: str = "projection"):
        self.s, self.seed, self.log = setup, seed, log
        self.consistency = consistency  # of the CCDF / full-run rows (``consistency.CONSISTENCY``)
        self.rows: list[dict] = []
        self.images: dict[str, Tensor] = {}   # method -> reconstructions (N, C, H, W)
        self.stds: dict[str, Tensor] = {}     # method -> pixel-wise std when K > 1 samples

    def add(self, method: str, x_hat: Tensor, nfe: int, seconds: float, *, start=None,
            t0=None, steps=None) -> dict:
        s = self.s
        row = {"method": method, "start": start, "nfe": int(nfe), "t0": t0, "steps": steps,
               "psnr": float(metrics.psnr(x_hat.abs(), s.x).mean()),
               "ssim": float(metrics.ssim(x_hat.abs(), s.x).mean()),
               "seconds_per_image": seconds / len(s.x), "n_images": len(s.x)}
        if "extractor" in s.extras:
            from .fid import frechet

            row["fd"] = frechet(s.extras["extractor"], x_hat.abs().clamp(0, 1), s.x)
        self.rows.append(row)
        self.images[method] = x_hat
        fd = f"  FD {row['fd']:7.2f}" if "fd" in row else ""
        self.log(f"  {method:40s} NFE {row['nfe']:5d}  PSNR {row['psnr']:6.2f}  "
                 f"SSIM {row['ssim']:.3f}{fd}  {row['seconds_per_image']:.3f} s/img")
        return row

    def gen(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def ccdf(self, method: str, start: str, t0: float, steps: int, **kw) -> dict:
        x0 = self.s.starts[start]
        tic = time.perf_counter()
        r = reconstruct(self.s.model, self.s.op, self.s.y, x0, t0=t0, steps=steps,
                        generator=self.gen(), **{"consistency": self.consistency, **kw})
        if r.std is not None:
            self.stds[method] = r.std
        return self.add(method, r.x, r.nfe, time.perf_counter() - tic, start=start, t0=t0,
                        steps=steps)

    # ------------------------------------------------------------------ groups of rows
    def initial(self) -> None:
        for name, x0 in self.s.starts.items():
            label = "initial estimate (classic)" if name == "classic" else "feed-forward net alone"
            self.add(label, x0, 0, 0.0, start=name)

    def full_runs(self, steps=(1000, 20)) -> None:
        """The full-run baseline (t0 = 1) from the classic start at each N."""
        for n in steps:
            self.ccdf(f"full run (t0=1), N={n}", "classic", 1.0, n)

    def sweep(self, grid=T0_GRID, steps=(100, 1000)) -> dict:
        """PSNR against t0 for each start and N.  t0 = 1 reuses the full-run row, or else the
        classic start's t0 = 1 run: there x_N = a_N x0_hat + b_N z with a_N ~ 0.006 (VP), so
        the start hardly matters."""
        curves = {}
        tag = "" if self.consistency == "projection" else f", {self.consistency}"
        for n in steps:
            for start in self.s.starts:
                pts = []
                for t0 in grid:
                    row = None
                    if t0 == 1.0:
                        row = (None if tag else self._find(f"full run (t0=1), N={n}")) or \
                            self._find(f"CCDF classic start, N={n}, t0=1.0{tag}")
                    row = row or self.ccdf(f"CCDF {start} start, N={n}, t0={t0}{tag}", start,
                                           t0, n)
                    pts.append((t0, row["psnr"], row["ssim"], row.get("fd")))
                curves[f"{start}{tag.replace(', ', '+')} start, N={n}"] = pts
        return curves

    def auto(self, steps: int = 100) -> dict:
        reasons, cache = {}, {}
        for start, x0 in self.s.starts.items():
            meta = self.s.restorer_meta if start == "net" else None
            cal = autot0.find_calibration(self.s.model, self.s.task, self.s.start_keys[start])
            t0, why = autot0.choose_t0(self.s.model, self.s.op, self.s.y, x0, steps,
                                       init_meta=meta, cache=cache, calibration=cal)
            self.log(f"  auto t0 ({start} start): {why}")
            row = self.ccdf(f"CCDF {start} start, N={steps}, auto t0={t0:.2f}", start, t0, steps)
            reasons[start] = {"t0": t0, "reason": why, "psnr": row["psnr"]}
            sweep = [r for r in self.rows if r["start"] == start and r["steps"] == steps
                     and r["t0"] is not None and "auto" not in r["method"]]
            if sweep:  # the best fixed t0 of the sweep so far, to judge auto t0 against
                b = max(sweep, key=lambda r: r["psnr"])
                reasons[start].update(best_fixed_t0=b["t0"], best_fixed_psnr=b["psnr"])
        return reasons

    def posterior_mean(self, auto: dict, steps: int = 100, budget: int = 20,
                       k_max: int = 8) -> None:
        """For each start: the mean of K posterior samples at its auto t0, with K the most
        samples that fit ``budget`` network evaluations per image (K N' <= budget)."""
        for start, a in auto.items():
            k = min(k_max, budget // max(n_prime(a["t0"], steps), 1))
            if k >= 2:
                self.ccdf(f"CCDF {start} start, N={steps}, auto t0={a['t0']:.2f}, mean of {k}",
                          start, a["t0"], steps, samples=k)

    def peers(self, quick: bool) -> None:
        """DDRM, DiffPIR and DPS (``ccdf.peers``) at their default steps and at 20 NFE."""
        from . import peers

        labels = {"ddrm": "DDRM", "diffpir": "DiffPIR", "dps": "DPS"}
        for name in ("ddrm", "diffpir", "dps"):
            default = peers.PEERS[name].steps
            if quick and name == "dps":
                default = min(default, 100)  # DPS at 1000 NFE + gradients: the slowest row
            for n in sorted({default, 20}, reverse=True):
                tic = time.perf_counter()
                try:
                    xh, nfe = peers.run_peer(name, self.s.model, self.s.op, self.s.y, steps=n,
                                             generator=self.gen())
                except ValueError as e:  # the peer does not support this operator/schedule
                    self.log(f"  {labels[name]}: skipped ({e})")
                    break
                self.add(f"{labels[name]}, N={n}", xh, nfe, time.perf_counter() - tic, steps=n)

    def sr_baselines(self, steps=(1000, 20)) -> None:
        from .models.sr3 import Conditioned, condition
        from .samplers import solve

        s = self.s
        if "esrgan" in s.extras:
            tic = time.perf_counter()
            xh = init.feed_forward(s.extras["esrgan"], s.op, s.y)
            self.add("ESRGAN-style net alone", xh, 0, time.perf_counter() - tic)
        if "sr3" in s.extras:
            m = s.extras["sr3"]
            cond = condition(m, s.y, s.x.shape[1:])
            for n in steps:
                tic = time.perf_counter()
                r = solve(Conditioned(m, cond), torch.zeros_like(cond), steps=n, t0=1.0,
                          generator=self.gen())
                xh = ((r.x + 1) / 2).clamp(0, 1)
                self.add(f"SR3-style, N={n}", xh, r.nfe, time.perf_counter() - tic, steps=n)

    def _find(self, method: str) -> dict | None:
        return next((r for r in self.rows if r["method"] == method), None)

    # ------------------------------------------------------------------ checks
    def theory_check(self, t0: float = 0.2, steps: int = 100) -> dict:
        """Measured ||x_CCDF - x_full||^2 (per pixel, model space [-1, 1]) against the Theorem 1
        bound with the measured eps_{N'} = ||x_{N'}^CCDF - x_{N'}^full||^2 (DDPM, projection)."""
        s = self.s
        n_p = n_prime(t0, steps)
        seen = {}

        def at_nprime(info):
            if info["i"] == n_p + 1:
                seen["x"] = info["x"].clone()

        full = reconstruct(s.model, s.op, s.y, s.starts["classic"], t0=1.0, steps=steps,
                           generator=self.gen(), callback=at_nprime)
        ccdf = reconstruct(s.model, s.op, s.y, s.starts["classic"], t0=t0, steps=steps,
                           generator=self.gen())
        grid = s.model.schedule.grid(steps)
        x_m = 2 * s.starts["classic"] - 1
        start = float(grid.a[n_p]) * x_m + float(grid.b[n_p]) * randn_like(x_m, self.gen())
        eps_np = float((start - seen["x"]).abs().pow(2).mean())
        measured = float((2 * ccdf.x - 2 * full.x).abs().pow(2).mean())
        tau_ = theory.tau(s.op, tuple(s.x.shape[1:]))
        from .samplers.steps import make_sampler

        a2 = float(grid.a[n_p]) ** 2  # theorem1 takes eps0 with eps_N' = a_N'^2 eps0
        b = theory.theorem1(s.model.schedule, steps, t0, make_sampler("ddpm"), eps_np / a2, tau_)
        out = {"t0": t0, "steps": steps, "n_prime": n_p, "lambda": b["lambda"], "C": b["C"],
               "tau": tau_, "eps_nprime_measured": eps_np, "noise_term": b["noise_term"],
               "bound": b["bound"], "measured": measured, "holds": measured <= b["bound"]}
        bound = b["bound"]
        self.log(f"  theory check (t0={t0}, N={steps}): measured {measured:.4g} vs Theorem 1 "
                 f"bound {bound:.4g} ({'holds' if out['holds'] else 'VIOLATED'})")
        return out

    def overhead(self, t0: float = 0.2, steps: int = 100, batch: int = 8, reps: int = 3) -> dict:
        """Wall time of CCDF at batch ``batch`` against N' bare network forward passes."""
        s = self.s
        idx = torch.arange(batch) % len(s.x)
        x0, y = s.starts["classic"][idx], s.y[idx]
        n_p = n_prime(t0, steps)
        xm = torch.randn(batch, *s.x.shape[1:])
        t = torch.full((batch,), 0.5, dtype=torch.float64)
        fwd, run = [], []
        with torch.no_grad():
            s.model(xm, t)  # warm-up
            for _ in range(reps):
                tic = time.perf_counter()
                for _ in range(n_p):
                    s.model(xm, t)
                fwd.append(time.perf_counter() - tic)
                tic = time.perf_counter()
                reconstruct(s.model, s.op, y, x0, t0=t0, steps=steps, generator=self.gen())
                run.append(time.perf_counter() - tic)
        f, r = statistics.median(fwd), statistics.median(run)
        out = {"batch": batch, "n_prime": n_p, "network_seconds": f, "ccdf_seconds": r,
               "ratio": r / f, "reps": reps}
        self.log(f"  overhead at batch {batch}: CCDF {r:.3f} s vs {n_p} forwards {f:.3f} s "
                 f"-> ratio {r / f:.3f}")
        return out


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or "unknown",
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version()}


def run_bench(task: dict, out, *, model: str = "default", data: str | None = None,
              restorer: str = "default", quick: bool = False, peers: bool = False,
              n_images: int | None = None, seed: int = 0, command: str = "", log=print,
              consistency: str | None = None) -> dict:
    """Run the bench for ``task`` and write results.json, results.md and the plots to ``out``."""
    from .consistency import CONSISTENCY

    out = Path(out)
    n = n_images or (4 if quick else None)
    multi = task["task"] == "mri" and task.get("coils")
    conses = (consistency or ("projection,gradient,cg" if multi else "projection")).split(",")
    for c in conses:
        if c not in CONSISTENCY:
            raise ValueError(f"unknown consistency {c!r}; choose from {', '.join(CONSISTENCY)}")
    if multi:
        from . import multicoil

        s = multicoil.make_setup(task, model, data, n, seed)
    else:
        s = make_setup(task, model, data, n, restorer)
    log(f"bench {s.name}: {len(s.x)} images, model {model}")
    b = Bench(s, seed, log, conses[0])
    b.initial()
    extra = {"multicoil": {**s.extras["multicoil"], "cs": multicoil.rows(b, log, quick)}} \
        if multi else {}
    b.full_runs((100, 20) if multi and quick else (1000, 20))  # quick multi-coil: no N = 1000
    curves = {}
    for c in conses:
        b.consistency = c
        curves.update(b.sweep((0.05, 0.1, 0.2, 0.5, 1.0) if quick else T0_GRID,
                              (100,) if quick else (100, 1000)))
    b.consistency = conses[0]
    try:
        auto = b.auto()
    except (ValueError, RuntimeError) as e:  # e.g. no prior-sample estimate for this operator
        log(f"  auto t0: skipped ({e})")
        auto = {}
    b.posterior_mean(auto)
    if task["task"] == "sr":
        b.sr_baselines()
    if peers:
        b.peers(quick)
    th = b.theory_check()
    oh = b.overhead(reps=1 if quick else 3, batch=len(s.x) if multi else 8)  # maps per image
    res = {"task": s.task, "name": s.name, "rows": b.rows, "curves": curves, "auto_t0": auto,
           "theory": th, "overhead": oh, "machine": machine(), "command": command,
           "n_images": len(s.x), "quick": quick, "consistency": conses, **extra}
    from .bench_report import write_outputs

    write_outputs(res, b, out)
    return res
