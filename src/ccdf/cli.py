"""The ``ccdf`` command line: arguments -> config -> library call.  Errors are one line."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import signal
import sys

#: what the embedded models have seen (said in --help and the README)
MODELS_SEEN = ("embedded priors: default-image knows only Fashion-MNIST garments (32x32 gray); "
               "default-mri only T1 brain MRI (MNI152 axial and Colin27 slices, native "
               "resolution, smooth random phase; any size). "
               "Other images (photos, other anatomy) get the prior's textures: a warning says so")


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM preemption and torchrun send), handled exactly like Ctrl-C: the
    temporary files and the lock are removed on the way out, finished outputs stay."""


class _Formatter(argparse.HelpFormatter):
    """Shows each flag's default (when it has one worth showing)."""

    def _get_help_string(self, action):
        h = action.help or ""
        shown = action.default is not None and action.default is not False and \
            action.default not in ("", argparse.SUPPRESS)
        if "%(default)" not in h and shown and action.option_strings and action.nargs != 0:
            h += " (default: %(default)s)"
        return h


class _Parser(argparse.ArgumentParser):
    """argparse with suggestions: a misspelt flag or choice gets the (sub)command's usage and
    the closest valid spelling (difflib)."""

    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kw)

    def error(self, message):
        if "invalid choice:" in message:
            try:
                bad = message.split("invalid choice: ")[1].split("'")[1]
                opts = message.split("(choose from ")[1].rstrip(")").replace("'", "").split(", ")
                near = difflib.get_close_matches(bad, opts, n=1, cutoff=0.5)
                if near:
                    message += f"; did you mean {near[0]!r}?"
            except IndexError:
                pass
        super().error(message)

    def suggest(self, unknown: list) -> None:
        """Exit 2 naming the unrecognised arguments, with the nearest flag of this parser."""
        flags = [o for a in self._actions for o in a.option_strings]
        msg = f"unrecognized argument{'s' if len(unknown) > 1 else ''}: {' '.join(unknown)}"
        for u in unknown:
            near = difflib.get_close_matches(u.split("=")[0], flags, n=1, cutoff=0.6) \
                if u.startswith("-") else []
            if near:
                msg += f"; did you mean {near[0]}?"
                break
        self.error(msg)


def _floats(s: str) -> tuple:
    return tuple(int(v) for v in s.split(","))


def _float_list(s: str) -> tuple:
    try:
        return tuple(float(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def cmd_theory(a) -> int:
    from . import theory

    tau = a.tau
    if a.task:
        from .operators import make_operator

        size = a.image_size
        op = make_operator(a.task, (1, size, size), **_task_params(a))
        tau = theory.tau(op, (1, size, size))
    r = theory.report(a.schedule, a.steps, a.t0, a.eps0, a.mu, tau, variance=a.variance)
    if a.json:
        print(json.dumps(r))
        return 0
    step = f" (ancestral steps, {r['variance']} variance)" if r["variance"] else ""
    print(f"schedule {r['schedule']}{step}: N = {r['steps']}, t0 = {a.t0} -> "
          f"N' = {r['n_prime_run']}")
    print(f"  lambda = {r['lambda']:.6f}   C (per pixel) = {r['C']:.6g}   tau = {r['tau']:.4f}")
    print(f"  eps_N' = a_N'^2 eps0 = {r['eps_nprime']:.6g}")
    print(f"  Theorem 1 bound: 2 C tau/(1-lambda^2) + lambda^(2N') eps_N' = "
          f"{r['noise_term']:.6g} + {r['bound'] - r['noise_term']:.6g} = {r['bound']:.6g}")
    if r["n_prime"] is None:
        print(f"  Theorem 2: no N' <= {r['steps']} brings the bound under mu eps0 = {a.mu * a.eps0:.6g}")
    else:
        print(f"  Theorem 2: minimum N' = {r['n_prime']} (t0 = {r['t0_min']:.4f}) for bound <= "
              f"mu eps0 = {a.mu * a.eps0:.6g}")
    return 0


def _task(a) -> dict:
    """--task and its parameters as the task dict of ``operators.make_operator`` (the pattern's
    seed only for MRI); raises CLIError without --task."""
    if a.task is None:
        raise CLIError("--task is required (sr, inpaint, mri or deblur)")
    task = {"task": a.task, **_task_params(a)}
    if a.task not in ("mri", "deblur"):
        task.pop("seed", None)
    return task


def _task_params(a) -> dict:
    if a.task == "sr":
        return {"factor": a.factor, "kernel": a.kernel or "avg"}
    if a.task == "inpaint":
        return {"mask": a.mask}
    if a.task == "deblur":
        return {"kernel": a.kernel or "gaussian", "kernel_sigma": a.kernel_sigma,
                "kernel_size": a.kernel_size, "seed": getattr(a, "seed", 0)}
    return {"pattern": a.pattern, "accel": a.accel, "acs": a.acs, "seed": getattr(a, "seed", 0)}


MASK_HELP = ("inpainting holes: box (a centred square), random:FRACTION (that fraction of "
             "the pixels missing) or PATH of a mask image/.npy of the image size, white "
             "(>= 0.5) = observed, black = missing")


def _acs(s: str):
    """--acs: an integer number of centre lines or a centre fraction in (0, 1)."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--acs takes a number of lines or a fraction, got {s!r}")
    return int(v) if v.is_integer() else v


def _add_task_args(p, required: bool = False) -> None:
    p.add_argument("--task", choices=["sr", "inpaint", "mri", "deblur"], required=required,
                   help="the inverse problem: sr (super-resolution), inpaint, mri "
                   "(compressed-sensing MRI), deblur")
    p.add_argument("--factor", type=int, default=4, help="sr: downsampling factor (2, 4, 8, 16)")
    p.add_argument("--kernel", default=None, help="sr: the downsampling, avg (average pooling; "
                   "default) or bicubic; deblur: gaussian (default) | uniform | motion | PATH "
                   "(.npy or image)")
    p.add_argument("--kernel-sigma", type=float, default=2.0, help="deblur: Gaussian std (px)")
    p.add_argument("--kernel-size", type=int, default=None, help="deblur: kernel side (px; "
                   "default gaussian 2 ceil(3 sigma) + 1, uniform 5, motion 9)")
    p.add_argument("--mask", default="box", help=MASK_HELP)
    p.add_argument("--pattern", choices=["uniform1d", "random1d", "gaussian1d", "vd2d"],
                   default="uniform1d", help="mri: k-space sampling, fastMRI's equispaced "
                   "(uniform1d) or random 1-D lines, Gaussian random 1-D lines, or 2-D "
                   "variable density")
    p.add_argument("--accel", type=float, default=4, help="mri: acceleration (1 / the sampled "
                   "fraction of k-space)")
    p.add_argument("--acs", type=_acs, default=None, help="mri: fully sampled centre lines (an "
                   "integer) or centre fraction (in (0, 1)); default fastMRI's: 0.08 at x4, "
                   "0.04 at x8")


def _add_threads(p) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: $OMP_NUM_THREADS if set, else 1; 0: all "
                   "cores of this process); extra threads wait passively. One thread never "
                   "collapses when other jobs share the CPU (README, Threads); give more on a "
                   "machine of your own")


def set_threads(n: int | None) -> int:
    """torch's CPU threads: n; None: $OMP_NUM_THREADS if set (torchrun sets 1), else 1; 0: the
    cores this process may use.  Extra threads wait passively (OMP_WAIT_POLICY=PASSIVE unless
    set): spinning OpenMP threads collapse on a shared CPU (measured in the README).  Must run
    before torch is imported for the waiting policy to take effect.  Returns the count."""
    if n is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        n = int(env) if env.isdigit() and int(env) > 0 else 1
    if n < 0:
        raise CLIError(f"--threads must be >= 0, got {n}")
    n = n or len(os.sched_getaffinity(0))
    if n > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(n)
    return n


def _add_model_args(p, labels_file: bool = False) -> None:
    """--model-config and --class-label: what a checkpoint's weights do not say."""
    p.add_argument("--model-config", action="append", default=[], metavar="FILE|FLAGS",
                   help="settings of a checkpoint that its weights do not hold (repeatable, "
                   "later ones win): guided-diffusion flags ('--image_size 256 ...' or a file "
                   "of them) or a YAML/JSON (DPS, DDRM); score_sde's config .py or a JSON of "
                   "its fields. Default: a sidecar beside the checkpoint (same stem)")
    p.add_argument("--class-label", default=None,
                   help="the class of a class-conditional model (ImageNet ADM): N" +
                   (", or a JSON/CSV file of name -> N per input" if labels_file else ""))


def _open_model(a, path, need_label: bool = True):
    """The model at path with --model-config and --class-label applied."""
    from .models import load_model
    from .models.denoiser import check_class_label

    model = load_model(path, config=tuple(a.model_config))
    if need_label or a.class_label is not None:
        model.class_label = check_class_label(model, a.class_label, str(path))
    return model


def cmd_inspect(a) -> int:
    """What ccdf loaded from a model path, and what it assumed (``models.describe``)."""
    from .models.formats import describe

    d = describe(_open_model(a, a.model, need_label=False))
    if a.json:
        print(json.dumps(d))
        return 0
    width = max(len(k) for k in d)
    for k, v in d.items():
        if k == "assumed":
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{kk} {vv}" for kk, vv in v.items())
        elif isinstance(v, list):
            v = ", ".join(map(str, v))
        print(f"{k:<{width}}  {v}")
    print("assumed:" if d["assumed"] else "assumed: nothing")
    for s in d["assumed"]:
        print(f"  - {s}")
    return 0


def cmd_sample(a) -> int:
    """Unconditional samples of a prior as a PNG grid (the model quality report)."""
    import torch

    from . import datasets, io
    from .models.denoiser import from_model
    from .samplers import solve

    path = datasets.ASSETS / "models" / a.model if a.model in ("default-image", "default-mri") \
        else a.model
    model = _open_model(a, path)
    s, c = model.image_size or a.size, model.channels
    g = torch.Generator().manual_seed(a.seed)
    cplx = bool(getattr(model, "complex", False))
    z = torch.zeros(a.n, 1, s, s, dtype=torch.complex64) if cplx else torch.zeros(a.n, c, s, s)
    res = solve(model, z, steps=a.steps, t0=1.0, sampler=a.sampler, generator=g)
    x = res.x.abs().clamp(0, 1) if cplx else from_model(model, res.x).clamp(0, 1)
    io.write_image(a.out, io.tile(x, a.cols or int(a.n**0.5)))
    print(f"{a.n} samples ({a.sampler}, {res.nfe} NFE) written to {a.out}")
    return 0


def cmd_demo(a) -> int:
    from .demo import TASKS, run_demo

    tasks = a.tasks.split(",") if a.tasks else None
    for t in tasks or []:
        if t not in TASKS:
            raise CLIError(f"unknown demo task {t!r}; choose from {', '.join(TASKS)}")
    report = run_demo(a.out, quick=a.quick, seed=a.seed, tasks=tasks)
    print(f"report written to {report}")
    return 0


def cmd_bench(a) -> int:
    from .bench import run_bench

    task = _task(a)
    if a.coils:
        if task["task"] != "mri":
            raise CLIError("--coils is for --task mri")
        task["coils"] = a.coils
    res = run_bench(task, a.out, model=a.model, data=a.input, restorer=a.restorer,
                    quick=a.quick, peers=a.peers, n_images=a.n_images, seed=a.seed,
                    command="ccdf " + " ".join(a.argv), val=a.val, cs_iters=a.cs_iters,
                    grid=a.grid, sweep_steps=a.sweep_steps, full_steps=a.full_steps,
                    full_images=a.full_images, checks=not a.no_checks,
                    model_config=tuple(a.model_config), class_label=a.class_label,
                    sigma_y=a.sigma_y, consistency=a.consistency)
    print(f"{len(res['rows'])} rows written to {a.out}/results.md")
    return 0


def _embedded_prior(task: dict):
    from .datasets import ASSETS

    return ASSETS / "models" / ("default-mri" if task["task"] == "mri" else "default-image")


def cmd_calibrate_t0(a) -> int:
    """Measure auto t0's constant k on validation images for each start of a task and store it
    in the prior's autot0.json (``autot0.calibrate``)."""
    from . import autot0
    from .bench import make_setup

    task = _task(a)
    if a.model == "default":
        raise CLIError("calibrate-t0 writes autot0.json into the prior's folder, and the "
                       "embedded prior is part of the installed package: copy it (cp -r "
                       f"{_embedded_prior(task)} my-prior) and pass --model my-prior")
    data = a.input or ("mri:val256-complex" if task["task"] == "mri" else "fashion-mnist:val")
    s = make_setup(task, a.model, data, a.n_images, a.restorer, extras=False,
                   model_config=tuple(a.model_config), class_label=a.class_label,
                   sigma_y=a.sigma_y, seed=a.seed)
    print(f"calibrating auto t0 for {s.name} on {len(s.x)} images of {data} (N = {a.steps})")
    for start, x0 in s.starts.items():
        key = s.start_keys[start]
        print(f"{key} start:")
        entry = autot0.calibrate(s.model, s.op, s.x, x0, steps=a.steps, tol=a.tol, seed=a.seed,
                                 log=print, y=s.y, sigma_y=s.sigma_y,
                                 **({"grid": a.grid} if a.grid else {}))
        entry.update(data=data, command="ccdf " + " ".join(a.argv))
        f = autot0.save_calibration(s.model, task, key, entry)
        print(f"  -> t0* = {entry['t0_best']:g} (PSNR {entry['psnr_best']:.2f}), eps0 = "
              f"{entry['eps0']:.3g}, k = {entry['k']:.3g}; saved in {f}")
    return 0


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ccdf")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ccdf", description=__doc__ + "  " + MODELS_SEEN + ".")
    p.add_argument("--version", action="version", version=f"ccdf {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sa = sub.add_parser("sample", help="unconditional samples of a prior as a PNG grid")
    sa.add_argument("--model", default="default-image", help="default-image, default-mri or PATH")
    sa.add_argument("--n", type=int, default=64, help="number of samples")
    sa.add_argument("--size", type=int, default=64,
                    help="image size for a prior of any size (the MRI prior); magnitudes shown")
    sa.add_argument("--cols", type=int, default=0, help="grid columns (0: sqrt(n))")
    sa.add_argument("--steps", type=int, default=100, help="N, reverse steps from pure noise")
    sa.add_argument("--sampler", choices=["ddpm", "ddim", "smld"], default="ddpm",
                    help="reverse step: DDPM ancestral, DDIM (deterministic) or SMLD (VE models)")
    sa.add_argument("--seed", type=int, default=0, help="seed of the noise")
    _add_threads(sa)
    sa.add_argument("--out", required=True, help="output PNG")
    _add_model_args(sa)
    sa.set_defaults(func=cmd_sample)

    ins = sub.add_parser("inspect", help="what a model path holds: family, architecture, "
                         "parameters, size, schedule, prediction, data range, conditioning, "
                         "and what was assumed")
    ins.add_argument("model", help="a ccdf or diffusers folder, an ADM .pt, a score_sde .pth")
    _add_model_args(ins)
    ins.add_argument("--json", action="store_true", help="print one JSON object")
    ins.set_defaults(func=cmd_inspect)

    de = sub.add_parser("demo", help="the main job on the embedded models: report.md + figures",
                        description="SR x4, box inpainting and MRI x4 on the embedded models: "
                        "initial estimates, full runs, CCDF from the classic and feed-forward "
                        "starts and with auto t0, a PSNR-vs-t0 sweep; writes report.md, "
                        "results.json, image grids and plots.  " + MODELS_SEEN + ".")
    de.add_argument("--out", default="out/demo", help="output folder")
    de.add_argument("--quick", action="store_true", help="4 images per task (2 MRI slices), short sweeps")
    de.add_argument("--tasks", default="", help="comma list of sr4, inpaint-box, mri4 (default: all)")
    de.add_argument("--seed", type=int, default=0, help="seed of every run")
    _add_threads(de)
    de.set_defaults(func=cmd_demo)

    be = sub.add_parser("bench", help="quality against NFE and time: CCDF, full runs, the "
                        "feed-forward net and (--peers) DDRM, DiffPIR, DPS on the same network")
    _add_task_args(be, required=True)
    be.add_argument("--out", required=True, help="output folder (results.md, results.json, plots)")
    be.add_argument("--model", default="default", help="default, a model PATH, or none (only "
                    "the rows without a prior: initial estimates, feed-forward net, classical)")
    be.add_argument("--input", "--data", dest="input", default=None, help="images: a data spec "
                    "(folder, .npy, NIfTI, fashion-mnist:val, mri:heldout256-complex, "
                    "mri:ood64 ...); default: the embedded evaluation sample")
    be.add_argument("--val", default=None, help="MRI: validation images (a data spec) on which "
                    "the compressed-sensing lambda is chosen; default: the set's own (mri:valN, "
                    "mni152:val)")
    be.add_argument("--cs-iters", type=int, default=100, help="iterations of the compressed-"
                    "sensing solvers (sigpy)")
    be.add_argument("--grid", type=_float_list, default=None,
                    help="t0 grid of the sweeps (default: the paper's 0.05,0.1,0.2,0.5,0.75,1)")
    be.add_argument("--sweep-steps", type=_floats, default=None,
                    help="N of the sweeps (default 100,1000; --quick: 100)")
    be.add_argument("--full-steps", type=_floats, default=None,
                    help="N of the full-run baselines (t0 = 1); default 1000,20 (--quick "
                    "--coils: 100,20)")
    be.add_argument("--full-images", type=int, default=None,
                    help="run full runs with N > 100 on only the first K images (slow sizes)")
    be.add_argument("--no-checks", action="store_true",
                    help="skip the theory check and the overhead measurement")
    be.add_argument("--restorer", default="default", help="default | none | PATH")
    be.add_argument("--n-images", type=int, default=None, help="use the first N images (default: all)")
    be.add_argument("--quick", action="store_true", help="4 images, N=100 sweep only")
    be.add_argument("--peers", action="store_true", help="add DDRM, DiffPIR and DPS rows")
    be.add_argument("--sigma-y", type=float, default=0.0,
                    help="measurement noise std ([0, 1] scale), added to y and given to all")
    be.add_argument("--consistency", default=None,
                    help="comma list of projection, gradient, prox, cg: the CCDF rows' data "
                    "consistency (the first) and one t0 sweep each (default: the task's, prox "
                    "for deblur, projection otherwise; with --coils projection,gradient,cg)")
    be.add_argument("--coils", type=int, default=None,
                    help="MRI: simulated multi-coil k-space with this many birdcage coils, "
                    "ESPIRiT maps, CG-SENSE start, zero-filled RSS and compressed-sensing rows; "
                    "--input heldout (default), val, ood or a data spec")
    be.add_argument("--seed", type=int, default=0, help="seed of every run")
    _add_threads(be)
    _add_model_args(be)
    be.set_defaults(func=cmd_bench)

    ca = sub.add_parser("calibrate-t0", help="measure auto t0's constant on validation images "
                        "(stored in the prior's autot0.json)")
    _add_task_args(ca, required=True)
    ca.add_argument("--model", default="default", help="a model folder, written to (the "
                    "embedded priors are part of the package: calibrate a copy)")
    ca.add_argument("--input", default=None, help="validation images (a data spec); default: "
                    "fashion-mnist:val or mri:val256-complex, never the evaluation images")
    ca.add_argument("--restorer", default="default", help="default | none | PATH")
    ca.add_argument("--n-images", type=int, default=16, help="validation images used")
    ca.add_argument("--grid", type=_float_list, default=None,
                    help="t0 values of the sweep (default 0.02,0.03,0.05,0.1,0.2,0.3,0.5,0.75,1)")
    ca.add_argument("--sigma-y", type=float, default=0.0,
                    help="measurement noise std ([0, 1] scale) of the calibration")
    ca.add_argument("--steps", type=int, default=100, help="N of the sweep")
    ca.add_argument("--tol", type=float, default=0.1, help="t0* = smallest t0 within TOL dB "
                    "of the best PSNR")
    ca.add_argument("--seed", type=int, default=0, help="seed of every run")
    _add_threads(ca)
    _add_model_args(ca)
    ca.set_defaults(func=cmd_calibrate_t0)

    from .solve_cli import add_solve_parser
    from .train_cli import add_train_parsers

    add_solve_parser(sub)
    add_train_parsers(sub)

    th = sub.add_parser("theory", help="contraction constants, Theorem 1 bound, Theorem 2 N'")
    th.add_argument("--schedule", choices=["ddpm", "smld", "ddim"], default="ddpm",
                    help="ddpm: VP with ancestral steps; smld: VE; ddim: VP, deterministic")
    th.add_argument("--variance", choices=["large", "small"], default="large",
                    help="ddpm/smld step noise: large (beta_i, the paper's C = n (1 - alpha_N)) "
                    "or small (the posterior variance: what `ccdf solve --sampler ddpm` runs; "
                    "same lambda, smaller C)")
    th.add_argument("--steps", type=int, default=1000, help="N, steps of the full schedule")
    th.add_argument("--t0", type=float, default=0.2, help="the jump: N' = round(t0 N)")
    th.add_argument("--eps0", type=float, default=1.0, help="initial error (per-pixel MSE)")
    th.add_argument("--mu", type=float, default=0.5, help="Theorem 2 target: bound <= mu eps0")
    th.add_argument("--tau", type=float, default=1.0, help="Tr(A^T A)/n (or give --task)")
    th.add_argument("--image-size", type=int, default=32, help="image size for --task's tau")
    _add_task_args(th)
    th.add_argument("--json", action="store_true", help="print one JSON object")
    th.set_defaults(func=cmd_theory)
    return p


def _parse(parser, argv):
    """parse_args, but an unknown flag is answered by its subcommand's usage and the closest
    flag (difflib) rather than by the top-level usage."""
    a, unknown = parser.parse_known_args(argv)
    if unknown:
        subs = parser._subparsers._group_actions[0].choices
        subs.get(a.command, parser).suggest(unknown)
    return a


def main(argv=None) -> int:
    parser = build_parser()
    a = _parse(parser, argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in trained models
    old = None
    try:
        if hasattr(a, "threads"):
            set_threads(a.threads)
        old = _on_sigterm()
        return a.func(a)
    except KeyboardInterrupt as e:
        term = isinstance(e, Terminated)
        what = "terminated (SIGTERM)" if term else "interrupted"
        more = "; finished outputs are kept: rerun the same command to resume" \
            if a.command == "solve" else ""
        print(f"ccdf {a.command}{_rank()}: {what}{more}", file=sys.stderr)
        code = 143 if term else 130
        import threading

        if argv is None and threading.active_count() > 1:
            # batch worker threads may still sit inside torch; a normal interpreter exit would
            # destroy their C++ threads and abort: the clean-up is done, so leave at once
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except (CLIError, ValueError, OSError, RuntimeError, ArithmeticError) as e:
        from .io import one_line

        print(f"ccdf {a.command}{_rank()}: error: {one_line(e)}", file=sys.stderr)
        return 2
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _on_sigterm():
    """Turn SIGTERM into ``Terminated`` (once: a second one during the clean-up is ignored).
    Returns the previous handler (None off the main thread, where signals cannot be set)."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _rank() -> str:
    """' (rank R of W)' under torchrun, so that each rank's line says whose it is."""
    w = os.environ.get("WORLD_SIZE", "1")
    return f" (rank {os.environ.get('RANK', '?')} of {w})" if w not in ("", "1") else ""


if __name__ == "__main__":
    sys.exit(main())
