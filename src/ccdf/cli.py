"""The ``ccdf`` command line: arguments -> config -> library call.  Errors are one line."""

from __future__ import annotations

import argparse
import json
import sys


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def _floats(s: str) -> tuple:
    return tuple(int(v) for v in s.split(","))


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


def _add_task_args(p) -> None:
    p.add_argument("--task", choices=["sr", "inpaint", "mri"])
    p.add_argument("--factor", type=int, default=4, help="SR factor (2, 4, 8, 16)")
    p.add_argument("--kernel", choices=["avg", "bicubic"], default="avg")
    p.add_argument("--mask", default="box", help="box | random:FRACTION | PATH (inpainting)")
    p.add_argument("--pattern", choices=["uniform1d", "gaussian1d", "vd2d"], default="uniform1d")
    p.add_argument("--accel", type=float, default=4)
    p.add_argument("--acs", type=int, default=None, help="fully sampled centre lines")


def cmd_sample(a) -> int:
    """Unconditional samples of a prior as a PNG grid (the model quality report)."""
    import torch

    from . import datasets, io
    from .models import load_model
    from .samplers import solve

    torch.set_num_threads(a.threads) if a.threads else None
    path = datasets.ASSETS / "models" / a.model if a.model in ("default-image", "default-mri") \
        else a.model
    model = load_model(path)
    s, c = model.image_size, model.channels
    g = torch.Generator().manual_seed(a.seed)
    res = solve(model, torch.zeros(a.n, c, s, s), steps=a.steps, t0=1.0, sampler=a.sampler,
                generator=g)
    x = ((res.x + 1) / 2).clamp(0, 1)
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
                    command="ccdf " + " ".join(a.argv), consistency=a.consistency)
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
    data = a.input or ("mni152:val" if task["task"] == "mri" else "fashion-mnist:val")
    s = make_setup(task, a.model, data, a.n_images, a.restorer, extras=False)
    print(f"calibrating auto t0 for {s.name} on {len(s.x)} images of {data} (N = {a.steps})")
    for start, x0 in s.starts.items():
        key = s.start_keys[start]
        print(f"{key} start:")
        entry = autot0.calibrate(s.model, s.op, s.x, x0, steps=a.steps, tol=a.tol, seed=a.seed,
                                 log=print)
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
    sa.add_argument("--cols", type=int, default=0)
    sa.add_argument("--steps", type=int, default=100)
    sa.add_argument("--sampler", choices=["ddpm", "ddim", "smld"], default="ddpm")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--threads", type=int, default=0)
    sa.add_argument("--out", required=True, help="output PNG")
    sa.set_defaults(func=cmd_sample)

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
    be.add_argument("--model", default="default", help="default or a model PATH")
    be.add_argument("--input", default=None, help="images: a data spec (folder, .npy, NIfTI, "
                    "fashion-mnist:val ...); default: the embedded evaluation sample")
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
    be.set_defaults(func=cmd_bench)

    ca = sub.add_parser("calibrate-t0", help="measure auto t0's constant on validation images "
                        "(stored in the prior's autot0.json)")
    _add_task_args(ca)
    ca.add_argument("--model", default="default", help="default or a model folder (written to)")
    ca.add_argument("--input", default=None, help="validation images (a data spec); default: "
                    "fashion-mnist:val or mni152:val, never the evaluation sample")
    ca.add_argument("--restorer", default="default", help="default | none | PATH")
    ca.add_argument("--n-images", type=int, default=16)
    ca.add_argument("--steps", type=int, default=100, help="N of the sweep")
    ca.add_argument("--tol", type=float, default=0.1, help="t0* = smallest t0 within TOL dB "
                    "of the best PSNR")
    ca.add_argument("--seed", type=int, default=0)
    ca.add_argument("--threads", type=int, default=0)
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
