"""The ``ccdf`` command line: arguments -> config -> library call.  Errors are one line."""

from __future__ import annotations

import argparse
import json
import sys


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


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
    r = theory.report(a.schedule, a.steps, a.t0, a.eps0, a.mu, tau)
    if a.json:
        print(json.dumps(r))
        return 0
    print(f"schedule {r['schedule']}: N = {r['steps']}, t0 = {a.t0} -> N' = {r['n_prime_run']}")
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
        raise CLIError("--task is required (sr, inpaint or mri)")
    task = {"task": a.task, **_task_params(a)}
    if a.task != "mri":
        task.pop("seed", None)
    return task


def _task_params(a) -> dict:
    if a.task == "sr":
        return {"factor": a.factor, "kernel": a.kernel}
    if a.task == "inpaint":
        return {"mask": a.mask}
    return {"pattern": a.pattern, "accel": a.accel, "acs": a.acs, "seed": getattr(a, "seed", 0)}


def _acs(s: str):
    """--acs: an integer number of centre lines or a centre fraction in (0, 1)."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--acs takes a number of lines or a fraction, got {s!r}")
    return int(v) if v.is_integer() else v


def _add_task_args(p) -> None:
    p.add_argument("--task", choices=["sr", "inpaint", "mri"])
    p.add_argument("--factor", type=int, default=4, help="SR factor (2, 4, 8, 16)")
    p.add_argument("--kernel", choices=["avg", "bicubic"], default="avg")
    p.add_argument("--mask", default="box", help="box | random:FRACTION | PATH (inpainting)")
    p.add_argument("--pattern", choices=["uniform1d", "random1d", "gaussian1d", "vd2d"],
                   default="uniform1d", help="MRI mask: fastMRI's equispaced (uniform1d) and "
                   "random 1-D masks, Gaussian 1-D, 2-D variable density")
    p.add_argument("--accel", type=float, default=4)
    p.add_argument("--acs", type=_acs, default=None, help="fully sampled centre lines (an "
                   "integer) or centre fraction (in (0, 1)); default fastMRI's: 0.08 at x4, "
                   "0.04 at x8")


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
    from .models.unet import describe

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

    torch.set_num_threads(a.threads) if a.threads else None
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
    import torch

    from .demo import TASKS, run_demo

    torch.set_num_threads(a.threads) if a.threads else None
    tasks = a.tasks.split(",") if a.tasks else None
    for t in tasks or []:
        if t not in TASKS:
            raise CLIError(f"unknown demo task {t!r}; choose from {', '.join(TASKS)}")
    report = run_demo(a.out, quick=a.quick, seed=a.seed, tasks=tasks)
    print(f"report written to {report}")
    return 0


def cmd_bench(a) -> int:
    import torch

    from .bench import run_bench

    torch.set_num_threads(a.threads) if a.threads else None
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
                    consistency=a.consistency)
    print(f"{len(res['rows'])} rows written to {a.out}/results.md")
    return 0


def cmd_calibrate_t0(a) -> int:
    """Measure auto t0's constant k on validation images for each start of a task and store it
    in the prior's autot0.json (``autot0.calibrate``)."""
    import torch

    from . import autot0
    from .bench import make_setup

    torch.set_num_threads(a.threads) if a.threads else None
    task = _task(a)
    data = a.input or ("mri:val256-complex" if task["task"] == "mri" else "fashion-mnist:val")
    s = make_setup(task, a.model, data, a.n_images, a.restorer, extras=False,
                   model_config=tuple(a.model_config), class_label=a.class_label)
    print(f"calibrating auto t0 for {s.name} on {len(s.x)} images of {data} (N = {a.steps})")
    for start, x0 in s.starts.items():
        key = s.start_keys[start]
        print(f"{key} start:")
        entry = autot0.calibrate(s.model, s.op, s.x, x0, steps=a.steps, tol=a.tol, seed=a.seed,
                                 log=print, **({"grid": a.grid} if a.grid else {}))
        entry.update(data=data, command="ccdf " + " ".join(a.argv))
        f = autot0.save_calibration(s.model, task, key, entry)
        print(f"  -> t0* = {entry['t0_best']:g} (PSNR {entry['psnr_best']:.2f}), eps0 = "
              f"{entry['eps0']:.3g}, k = {entry['k']:.3g}; saved in {f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccdf", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sa = sub.add_parser("sample", help="unconditional samples of a prior as a PNG grid")
    sa.add_argument("--model", default="default-image", help="default-image, default-mri or PATH")
    sa.add_argument("--n", type=int, default=64)
    sa.add_argument("--size", type=int, default=64,
                    help="image size for a prior of any size (the MRI prior); magnitudes shown")
    sa.add_argument("--cols", type=int, default=0)
    sa.add_argument("--steps", type=int, default=100)
    sa.add_argument("--sampler", choices=["ddpm", "ddim", "smld"], default="ddpm")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--threads", type=int, default=0)
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

    de = sub.add_parser("demo", help="the main job on the embedded models: report.md + figures")
    de.add_argument("--out", default="out/demo")
    de.add_argument("--quick", action="store_true", help="4 images per task (2 MRI slices), short sweeps")
    de.add_argument("--tasks", default="", help="comma list of sr4, inpaint-box, mri4")
    de.add_argument("--seed", type=int, default=0)
    de.add_argument("--threads", type=int, default=0)
    de.set_defaults(func=cmd_demo)

    be = sub.add_parser("bench", help="quality against NFE and time: CCDF, full runs, the "
                        "feed-forward net and (--peers) DDRM, DiffPIR, DPS on the same network")
    _add_task_args(be)
    be.add_argument("--out", required=True)
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
    be.add_argument("--n-images", type=int, default=None)
    be.add_argument("--quick", action="store_true", help="4 images, N=100 sweep only")
    be.add_argument("--peers", action="store_true", help="add DDRM, DiffPIR and DPS rows")
    be.add_argument("--consistency", default=None,
                    help="comma list of projection, gradient, cg: the CCDF rows' data "
                    "consistency (the first) and one t0 sweep each (default projection; "
                    "with --coils all three)")
    be.add_argument("--coils", type=int, default=None,
                    help="MRI: simulated multi-coil k-space with this many birdcage coils, "
                    "ESPIRiT maps, CG-SENSE start, zero-filled RSS and compressed-sensing rows; "
                    "--input heldout (default), val, ood or a data spec")
    be.add_argument("--seed", type=int, default=0)
    be.add_argument("--threads", type=int, default=0)
    _add_model_args(be)
    be.set_defaults(func=cmd_bench)

    ca = sub.add_parser("calibrate-t0", help="measure auto t0's constant on validation images "
                        "(stored in the prior's autot0.json)")
    _add_task_args(ca)
    ca.add_argument("--model", default="default", help="default or a model folder (written to)")
    ca.add_argument("--input", default=None, help="validation images (a data spec); default: "
                    "fashion-mnist:val or mri:val256-complex, never the evaluation images")
    ca.add_argument("--restorer", default="default", help="default | none | PATH")
    ca.add_argument("--n-images", type=int, default=16)
    ca.add_argument("--grid", type=_float_list, default=None,
                    help="t0 values of the sweep (default 0.02,0.03,0.05,0.1,0.2,0.3,0.5,0.75,1)")
    ca.add_argument("--steps", type=int, default=100, help="N of the sweep")
    ca.add_argument("--tol", type=float, default=0.1, help="t0* = smallest t0 within TOL dB "
                    "of the best PSNR")
    ca.add_argument("--seed", type=int, default=0)
    ca.add_argument("--threads", type=int, default=0)
    _add_model_args(ca)
    ca.set_defaults(func=cmd_calibrate_t0)

    from .solve_cli import add_solve_parser
    from .train_cli import add_train_parsers

    add_solve_parser(sub)
    add_train_parsers(sub)

    th = sub.add_parser("theory", help="contraction constants, Theorem 1 bound, Theorem 2 N'")
    th.add_argument("--schedule", choices=["ddpm", "smld", "ddim"], default="ddpm")
    th.add_argument("--steps", type=int, default=1000, help="N, steps of the full schedule")
    th.add_argument("--t0", type=float, default=0.2)
    th.add_argument("--eps0", type=float, default=1.0, help="initial error (per-pixel MSE)")
    th.add_argument("--mu", type=float, default=0.5)
    th.add_argument("--tau", type=float, default=1.0, help="Tr(A^T A)/n (or give --task)")
    th.add_argument("--image-size", type=int, default=32)
    _add_task_args(th)
    th.add_argument("--json", action="store_true", help="print one JSON object")
    th.set_defaults(func=cmd_theory)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in trained models
    try:
        return a.func(a)
    except KeyboardInterrupt:
        print("ccdf: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, OSError, RuntimeError, ArithmeticError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"ccdf {a.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
