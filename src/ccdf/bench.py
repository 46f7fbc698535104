"""``ccdf bench``: quality against network evaluations (NFE) and time, every method on the same
images with the same network, in one run.

Rows (``results.json``: a list of {"method", "start", "nfe", "t0", "steps", "psnr", "ssim",
"seconds_per_image", "n_images"} plus "fd" for super-resolution):
  * the initial estimate (classic) and the feed-forward network alone;
  * for MRI, the classical rows: zero-filled, and total-variation and L1-wavelet compressed
    sensing (``ccdf.classical``, sigpy) with lambda chosen on the validation slices
    (``datasets.validation_spec`` or ``val``), never on the evaluated ones;
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

Complex images (``mri:...-complex`` data) are measured by a complex MRI operator; PSNR and
SSIM compare magnitudes.  ``model="none"`` runs the rows that need no prior (the initial
estimate, the feed-forward net, the classical rows).

``consistency`` (``--consistency``, a comma list): the data consistency of the CCDF and
full-run rows (the first; default the operator's own: prox for deblurring, projection
otherwise); the t0 sweep runs once per entry.  ``sigma_y``: seeded white noise added to y,
its level given to every method.  With
``coils`` in the task (``--coils N``, MRI): multi-coil k-space with ESPIRiT maps
(``multicoil``): the CG-SENSE start, zero-filled RSS, compressed sensing with the maps, and
CCDF with each consistency (projection, gradient, cg by default).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from . import assets, autot0, classical, datasets, init, metrics, theory
from .bench_report import PHASE_USED
from .models import load_model
from .models.denoiser import data_scale, to_model
from .noise import randn_like
from .operators import make_operator
from .reconstruction import reconstruct
from .samplers import jump
from .schedules import n_prime

T0_GRID = (0.05, 0.1, 0.2, 0.5, 0.75, 1.0)


@dataclass
class Setup:
    """One bench problem: images x (N, C, H, W) (real in [0, 1]; MRI: complex or real, not
    clipped), their measurement y, the starts."""

    name: str
    task: dict
    model: object                     # the prior, None for model="none"
    op: object
    x: Tensor
    y: Tensor
    starts: dict                      # "classic" / "net" -> x0_hat (N, C, H, W)
    sigma_y: float = 0.0              # measurement noise std ([0, 1] scale) added to y
    restorer_meta: dict = field(default_factory=dict)
    start_keys: dict = field(default_factory=lambda: {"classic": "classic"})  # calibration keys
    extras: dict = field(default_factory=dict)   # "sr3", "esrgan", "extractor"
    notes: list = field(default_factory=list)    # what was left out, and why (logged)


def _asset(name: str) -> Path | None:
    return assets.asset_path(name) if assets.has_asset(name) else None


def default_restorer(task: dict) -> Path | None:
    """The embedded restorer for the embedded tasks (SR x4 average pooling; MRI: the unrolled
    start for any Cartesian mask; Gaussian deblurring with sigma 2)."""
    name = assets.default_restorer(task)
    return _asset(name) if name else None


def make_setup(task: dict, model: str = "default", data: str | None = None,
               n_images: int | None = None, restorer: str = "default",
               extras: bool = True, model_config=(), class_label: int | None = None,
               sigma_y: float = 0.0, seed: int = 0) -> Setup:
    """Load the model (``model_config``: a checkpoint's settings; ``class_label``: the class of
    a class-conditional model), the images (a ``datasets.load`` spec; default: the embedded
    sample), the operator, the measurement (with white noise of std ``sigma_y`` drawn from
    ``seed``) and the initial estimates (and, with ``extras``, the SR comparison models and
    the FD classifier)."""
    from .models.denoiser import check_class_label
    from .models.formats import load_restorer

    kind = task["task"]
    mpath = assets.asset_path(assets.default_prior(kind)) if model == "default" else Path(model)
    m = None if model == "none" else load_model(mpath, config=tuple(model_config))
    if m is not None:
        m.class_label = check_class_label(m, class_label, str(mpath))
    if data is None:  # multi-coil with a prior of any size: the 256 x 256 complex held-out set
        data = ("mri:heldout256-complex" if task.get("coils") and m is not None and
                m.image_size is None else "mni152:sample") if kind == "mri" else \
            "fashion-mnist:sample"
    x = datasets.load(data, size=m.image_size if m else None, channels=m.channels if m else 1)
    if n_images and n_images < len(x):  # MRI sets: spread over the set (slices, then OOD kinds)
        x = x[torch.linspace(0, len(x) - 1, n_images).round().long()] \
            if data.startswith("mri:") else x[:n_images]
    extras_ = {}
    if kind == "mri" and task.get("coils"):  # simulated coils, ESPIRiT maps (``multicoil``)
        from . import multicoil

        op, y, extras_["zero_filled"] = multicoil.problem(x, task, sigma_y, seed)
        extras_["multicoil"] = {"data": data}
    else:
        op = _operator(task, x, bool(getattr(m, "complex", False)))
        y = op.A(x)
        if sigma_y > 0:  # (multi-coil: the noise is added per coil by ``multicoil.problem``)
            g = torch.Generator().manual_seed(seed)  # complex y: the noise A z of the consistency
            y = y + sigma_y * (op.A(randn_like(x, g)) if y.is_complex() else
                               randn_like(y, g)).to(y.dtype)
    s = Setup(name=_task_name(task) + (f", sigma_y={sigma_y:g}" if sigma_y else ""), task=task,
              model=m, op=op, x=x, y=y, starts={"classic": init.classic(op, y, sigma_y)},
              sigma_y=float(sigma_y), extras=extras_)
    rpath = default_restorer(task) if restorer == "default" else (
        None if restorer in ("none", "") else Path(restorer))
    net = load_restorer(rpath) if rpath is not None else None
    fits = net.fits(op) if net is not None and hasattr(net, "fits") else True
    if fits is not True and restorer != "default":
        raise ValueError(f"restorer {rpath}: {fits}")
    if fits is not True:
        s.notes.append(f"feed-forward start ({rpath.name}) left out: {fits}")
    elif net is not None:
        s.starts["net"], s.restorer_meta = init.feed_forward(net, op, y, sigma_y), net.meta
        s.start_keys["net"] = autot0.start_key(net)
    if extras and kind == "sr" and model == "default" and m.channels == 1 and m.image_size == 32:
        for key, name in (("sr3", assets.SR3_SR4), ("esrgan", assets.ESRGAN_SR4)):
            if task.get("factor") == 4 and task.get("kernel", "avg") == "avg" and _asset(name):
                s.extras[key] = (load_model if key == "sr3" else load_restorer)(_asset(name))
        from . import fid

        if (fid.DEFAULT / "config.json").exists():
            s.extras["extractor"] = fid.load_classifier()
    return s


def _operator(task: dict, x: Tensor, complex_prior: bool = False):
    """The task's operator for images x (complex x or a complex prior: a complex MRI operator)."""
    params = {k: v for k, v in task.items() if k != "task"}
    if task["task"] == "mri" and (x.is_complex() or complex_prior):
        params["complex_image"] = True
    return make_operator(task["task"], x.shape[1:], **params)


def validation_setup(s: Setup, spec: str, n: int | None = None) -> tuple[Tensor, Tensor]:
    """Validation images (spec, ``n`` of them spread over the set) of s's size and kind and
    their measurement by s's operator: (x_val, y_val)."""
    x = datasets.load(spec)
    if tuple(x.shape[1:]) != tuple(s.x.shape[1:]) or x.is_complex() != s.x.is_complex():
        def kind(t):
            return f"{'complex' if t.is_complex() else 'real'} {tuple(t.shape[1:])}"

        raise ValueError(f"validation set {spec} holds {kind(x)} images; the evaluation "
                         f"images are {kind(s.x)}")
    if n and n < len(x):
        x = x[torch.linspace(0, len(x) - 1, n).round().long()]
    return x, s.op.A(x)


def _task_name(task: dict) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in task.items() if k != "task" and v is not None)
    return f"{task['task']} ({rest})"


class Bench:
    """Runs methods on one Setup and collects rows; every run uses the same seed."""

    def __init__(self, setup: Setup, seed: int = 0, log=print, consistency: str | None = None,
                 phase: str = "auto"):
        self.s, self.seed, self.log = setup, seed, log
        # of the CCDF / full-run rows (``consistency.CONSISTENCY``; None: the operator's own)
        self.consistency = consistency
        self.phase = phase  # MRI: ``reconstruction.phase_operator``
        self.rows: list[dict] = []
        self.images: dict[str, Tensor] = {}   # method -> reconstructions (N, C, H, W)
        self.runs: dict = {}   # (start, t0, N, consistency, options) -> (x, nfe, s, std)
        self.stds: dict[str, Tensor] = {}     # method -> pixel-wise std when K > 1 samples

    def add(self, method: str, x_hat: Tensor, nfe: int, seconds: float, *, start=None,
            t0=None, steps=None, samples: int = 1) -> dict:
        s = self.s
        each = metrics.psnr(x_hat.abs(), s.x.abs()).reshape(-1)
        row = {"method": method, "start": start, "nfe": int(nfe), "t0": t0, "steps": steps,
               "samples": int(samples), "psnr": float(each.mean()),
               "psnr_each": [round(float(v), 3) for v in each],
               "ssim": float(metrics.ssim(x_hat.abs(), s.x.abs()).mean()),
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
        """A CCDF row.  Every run has the same seed, so a run already made (an auto t0 that
        falls on a swept t0) is not repeated: its images and time come back under this label."""
        key = (start, float(t0), int(steps), self.consistency, self.phase,
               repr(sorted(kw.items())))
        if key not in self.runs:
            tic = time.perf_counter()
            r = reconstruct(self.s.model, self.s.op, self.s.y, self.s.starts[start], t0=t0,
                            steps=steps, generator=self.gen(), **{**self._solver(), **kw})
            self.runs[key] = (r.x, r.nfe, time.perf_counter() - tic, r.std)
        x, nfe, seconds, std = self.runs[key]
        if std is not None:
            self.stds[method] = std
        return self.add(method, x, nfe, seconds, start=start, t0=t0, steps=steps,
                        samples=kw.get("samples", 1))

    def _solver(self) -> dict:
        """The noise level, consistency step and phase handling of every CCDF run here."""
        return {"sigma_y": self.s.sigma_y, "consistency": self.consistency, "phase": self.phase}

    # ------------------------------------------------------------------ groups of rows
    def initial(self) -> None:
        for name, x0 in self.s.starts.items():
            label = "initial estimate (classic)" if name == "classic" else "feed-forward net alone"
            self.add(label, x0, 0, 0.0, start=name)

    def cs_start(self, chosen: dict) -> None:
        """Add the compressed-sensing start "cs" (MRI): the reconstruction of the CS row whose
        lambda did best on the validation images (``classical_rows``' ``chosen``)."""
        if not chosen:
            return
        kind = max(chosen, key=lambda k: dict(chosen[k]["table"])[chosen[k]["lambda"]])
        row = next(r for r in self.rows if r.get("cs_kind") == kind)
        row["start"] = "cs"
        self.s.starts["cs"] = self.images[row["method"]]
        self.s.start_keys["cs"] = f"cs:{kind}"
        self.log(f"  compressed-sensing start: {classical.NAMES[kind]}, lambda "
                 f"{chosen[kind]['lambda']:g} (the better of the CS rows on validation)")

    def classical_rows(self, val: tuple | None, kinds=classical.KINDS,
                  iters: int = 100) -> dict:
        """MRI: the zero-filled row, then a compressed-sensing row per kind with its lambda
        chosen on the validation images ``val`` = (x_val, y_val[, op_val]) (``classical.
        choose_lambda``; op_val: their own operator, default s.op); without ``val`` or sigpy
        only the zero-filled row (multi-coil: the RSS of the zero-filled coil images).
        Returns {kind: {lambda, table}}."""
        s = self.s
        tic = time.perf_counter()
        zf = s.extras.get("zero_filled")
        zf = s.op.clamp(s.op.A_pinv(s.y)) if zf is None else zf
        self.add("zero-filled" + (" RSS" if "zero_filled" in s.extras else ""), zf, 0,
                 time.perf_counter() - tic)
        if val is None:
            self.log("  compressed sensing skipped: no validation set to choose lambda on "
                     "(give one with --val)")
            return {}
        try:
            classical._sigpy()
        except ImportError as e:
            self.log(f"  compressed sensing skipped: {e}")
            return {}
        chosen = {}
        for kind in kinds:
            tic = time.perf_counter()
            lam, table = classical.choose_lambda(val[2] if len(val) > 2 else s.op, val[1],
                                                 val[0], kind, iters=iters)
            spent = time.perf_counter() - tic
            self.log(f"  {classical.NAMES[kind]}: lambda {lam:g} chosen on {len(val[0])} "
                     f"validation images ({spent:.1f} s): "
                     + ", ".join(f"{lm:g}: {p:.2f}" for lm, p in table))
            tic = time.perf_counter()
            xh = s.op.clamp(classical.cs_reconstruct(s.op, s.y, kind, lam, iters))
            row = self.add(f"CS {classical.NAMES[kind]} (sigpy), lambda={lam:g}", xh, 0,
                           time.perf_counter() - tic, steps=iters)
            row["lambda"], row["cs_kind"] = lam, kind
            chosen[kind] = {"lambda": lam, "table": table, "n_val": len(val[0]),
                            "choice_seconds": spent}
        return chosen

    def full_runs(self, steps=(1000, 20), images: int | None = None) -> None:
        """The full-run baseline (t0 = 1) from the classic start at each N; with ``images``,
        runs of N > 100 use only the first ``images`` images (their row says how many)."""
        for n in steps:
            if images and n > 100 and images < len(self.s.x):
                k = images
                sub = Bench(dataclasses.replace(
                    self.s, x=self.s.x[:k], y=self.s.y[:k], op=self.s.op.first(k),
                    starts={key: v[:k] for key, v in self.s.starts.items()}), self.seed, self.log,
                    self.consistency, self.phase)
                row = sub.ccdf(f"full run (t0=1), N={n}, first {k} image(s)", "classic", 1.0, n)
                self.rows.append(row)
            else:
                self.ccdf(f"full run (t0=1), N={n}", "classic", 1.0, n)

    def sweep(self, grid=T0_GRID, steps=(100, 1000)) -> dict:
        """PSNR against t0 for each start and N.  t0 = 1 reuses the full-run row, or else the
        classic start's t0 = 1 run: there x_N = a_N x0_hat + b_N z with a_N ~ 0.006 (VP), so
        the start hardly matters."""
        curves = {}
        own = getattr(self.s.op, "consistency", "projection")  # the operator's: no tag
        tag = "" if (self.consistency or own) == own else f", {self.consistency}"
        for n in steps:
            for start in self.s.starts:
                pts = []
                for t0 in grid:
                    row = None
                    if t0 == 1.0:
                        row = (None if tag else self._find(f"full run (t0=1), N={n}") or
                               self._find(f"full run (t0=1), N={n}, first")) or \
                            self._find(f"CCDF classic start, N={n}, t0=1.0{tag}")
                    row = row or self.ccdf(f"CCDF {start} start, N={n}, t0={t0}{tag}", start,
                                           t0, n)
                    pts.append((t0, row["psnr"], row["ssim"], row.get("fd")))
                curves[f"{start}{tag.replace(', ', '+')} start, N={n}"] = pts
        return curves

    def auto(self, steps: int = 100) -> dict:
        """Each start at its auto t0, on the grid (N) its calibration was made on, else N =
        ``steps``, as ``ccdf solve --t0 auto`` runs it."""
        reasons, cache = {}, {}
        for start, x0 in self.s.starts.items():
            meta = self.s.restorer_meta if start == "net" else None
            cal = autot0.find_calibration(self.s.model, self.s.task, self.s.start_keys[start])
            n = autot0.calibrated_steps(cal, steps)
            t0, why = autot0.choose_t0(self.s.model, self.s.op, self.s.y, x0, n,
                                       sigma_y=self.s.sigma_y, init_meta=meta, cache=cache,
                                       calibration=cal)
            self.log(f"  auto t0 ({start} start): {why}")
            row = self.ccdf(f"CCDF {start} start, N={n}, auto t0={t0:.2f}", start, t0, n)
            reasons[start] = {"t0": t0, "steps": n, "reason": why, "psnr": row["psnr"]}
            b = best_fixed(self.rows, start, n)
            if b is not None:  # the best fixed t0 so far, to judge auto t0 against
                reasons[start].update(best_fixed_t0=b["t0"], best_fixed_psnr=b["psnr"])
        return reasons

    def posterior_mean(self, auto: dict, budget: int = 20, k_max: int = 8) -> None:
        """For each start: the mean of K posterior samples at its auto t0 (and N), with K the
        most samples that fit ``budget`` network evaluations per image (K N' <= budget)."""
        for start, a in auto.items():
            steps = a["steps"]
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
                                             generator=self.gen(), sigma_y=self.s.sigma_y)
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
        """Measured ||x_CCDF - x_full||^2 (per pixel, the model's data space) against the Theorem 1
        bound with the measured eps_{N'} = ||x_{N'}^CCDF - x_{N'}^full||^2 (DDPM, projection)."""
        s = self.s
        n_p = n_prime(t0, steps)
        seen = {}

        def at_nprime(info):
            if info["i"] == n_p + 1:
                seen["x"] = info["x"].clone()

        full = reconstruct(s.model, s.op, s.y, s.starts["classic"], t0=1.0, steps=steps,
                           generator=self.gen(), callback=at_nprime, **self._solver())
        ccdf = reconstruct(s.model, s.op, s.y, s.starts["classic"], t0=t0, steps=steps,
                           generator=self.gen(), **self._solver())
        grid = s.model.schedule.grid(steps)
        x_m = to_model(s.model, s.starts["classic"])
        start = jump(grid, n_p, x_m, self.gen())
        eps_np = float((start - seen["x"]).abs().pow(2).mean())
        measured = float((data_scale(s.model) * (ccdf.x - full.x)).abs().pow(2).mean())
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
                reconstruct(s.model, s.op, y, x0, t0=t0, steps=steps, generator=self.gen(),
                            **self._solver())
                run.append(time.perf_counter() - tic)
        f, r = statistics.median(fwd), statistics.median(run)
        out = {"batch": batch, "n_prime": n_p, "network_seconds": f, "ccdf_seconds": r,
               "ratio": r / f, "reps": reps}
        self.log(f"  overhead at batch {batch}: CCDF {r:.3f} s vs {n_p} forwards {f:.3f} s "
                 f"-> ratio {r / f:.3f}")
        return out


def best_fixed(rows: list, start: str, steps: int) -> dict | None:
    """The best single-sample CCDF row at a fixed t0 for ``start`` and N = ``steps`` (auto t0
    rows and means of K posterior samples, which cost K times the NFE, are not fixed t0 runs)."""
    fixed = [r for r in rows if r["start"] == start and r["steps"] == steps
             and r["t0"] is not None and "auto" not in r["method"] and r.get("samples", 1) == 1]
    return max(fixed, key=lambda r: r["psnr"]) if fixed else None


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or "unknown",
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version()}


def run_bench(task: dict, out, *, model: str = "default", data: str | None = None,
              restorer: str = "default", quick: bool = False, peers: bool = False,
              n_images: int | None = None, seed: int = 0, command: str = "", log=print,
              val: str | None = None, cs_iters: int = 100, grid=None, sweep_steps=None,
              full_steps=None, full_images: int | None = None, checks: bool = True,
              model_config=(), class_label: int | None = None, sigma_y: float = 0.0,
              consistency: str | None = None, cs_start: bool = True,
              phase: str = "auto") -> dict:
    """Run the bench for ``task`` and write results.json, results.md and the plots to ``out``.

    ``val``: the validation data spec for the compressed-sensing lambda (MRI; default
    ``datasets.validation_spec(data)``; quick: 2 of its images); ``cs_iters``: iterations
    of the compressed-sensing solvers; ``grid``/``sweep_steps``: the t0 grid and N of the
    sweeps; ``full_steps``/``full_images``: the full runs' N and (for N > 100) how many images
    they use (default N = 1000 and 20; quick multi-coil: 100 and 20); ``checks``: the theory
    check and the overhead measurement; ``sigma_y``: measurement noise added to y and given to
    every method; ``consistency``: a comma list (see the module docstring; default: the
    operator's own, prox for deblurring, projection otherwise); ``cs_start``: MRI with
    compressed-sensing rows: CCDF also starts from the better of them (start "cs");
    ``phase``: MRI, the CCDF and full-run rows' phase handling (``reconstruction.
    resolve_phase``: auto, start or none)."""
    from .consistency import CONSISTENCY
    out = Path(out)
    n = n_images or (4 if quick else None)
    multi = task["task"] == "mri" and bool(task.get("coils"))
    conses = (consistency or ("projection,gradient,cg" if multi else "")).split(",")
    for c in conses:
        if c and c not in CONSISTENCY:
            raise ValueError(f"unknown consistency {c!r}; choose from {', '.join(CONSISTENCY)}")
    full_steps = full_steps or ((100, 20) if multi and quick else (1000, 20))
    s = make_setup(task, model, data, n, restorer, model_config=model_config,
                   class_label=class_label, sigma_y=sigma_y, seed=seed)
    conses = [c or getattr(s.op, "consistency", "projection") for c in conses]
    log(f"bench {s.name}: {len(s.x)} images {tuple(s.x.shape[1:])}"
        f"{' complex' if s.x.is_complex() else ''}, model {model}, consistency "
        f"{', '.join(conses)}")
    for note in s.notes:
        log(f"  {note}")
    from .reconstruction import resolve_phase

    phase_used = None  # MRI: what --phase does here ("start" or "none"), said once
    if s.model is not None and task["task"] == "mri":
        phase_used = resolve_phase(s.model, s.op, phase)
        log(f"  phase {phase}: {PHASE_USED[phase_used]}")
    b = Bench(s, seed, log, conses[0], phase)
    b.initial()
    cs = {}
    if task["task"] == "mri":
        used = s.extras.get("multicoil", {}).get("data") or data or "mni152:sample"
        val = val or datasets.validation_spec(used)
        n_val = 2 if quick else None
        if multi:
            from . import multicoil

            vs = multicoil.validation(val, task, n_val, s.sigma_y, seed) if val else None
        else:
            vs = validation_setup(s, val, n_val) if val else None
        cs = b.classical_rows(vs, iters=cs_iters)
    if s.model is None:
        res = {"task": s.task, "name": s.name, "rows": b.rows, "curves": {}, "auto_t0": {},
               "classical": cs, "theory": None, "overhead": None, "machine": machine(),
               "command": command, "n_images": len(s.x), "quick": quick}
        from .bench_report import write_outputs

        write_outputs(res, b, out)
        return res
    if cs_start:
        b.cs_start(cs)
    b.full_runs(full_steps, full_images)
    curves = {}
    for c in conses:  # one sweep per consistency; the other rows use the first
        b.consistency = c
        curves.update(b.sweep(grid or ((0.05, 0.1, 0.2, 0.5, 1.0) if quick else T0_GRID),
                              sweep_steps or ((100,) if quick else (100, 1000))))
    b.consistency = conses[0]
    auto = b.auto()
    b.posterior_mean(auto)
    if task["task"] == "sr":
        b.sr_baselines()
    if peers:
        b.peers(quick)
    th = b.theory_check() if checks else None
    oh = b.overhead(reps=1 if quick else 3, batch=len(s.x) if multi else 8) \
        if checks else None  # multi-coil: the maps are per image
    res = {"task": s.task, "name": s.name, "rows": b.rows, "curves": curves, "auto_t0": auto,
           "classical": cs, "theory": th, "overhead": oh, "machine": machine(),
           "command": command, "n_images": len(s.x), "quick": quick, "sigma_y": s.sigma_y,
           "consistency": conses, "phase": phase, "phase_used": phase_used,
           **({"multicoil": s.extras["multicoil"]} if multi else {})}
    from .bench_report import write_outputs

    write_outputs(res, b, out)
    return res
