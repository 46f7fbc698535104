"""The evaluation commands: ``ccdf demo`` (the main job on the embedded models), ``ccdf bench``
(quality against NFE and time), ``ccdf calibrate-t0`` (auto t0's constant) and ``ccdf theory``
(the paper's contraction constants and bounds).

Library modules are imported inside the commands: ``set_threads`` runs before torch is."""

from __future__ import annotations

import json
from dataclasses import replace

from ..assets import CS_KINDS, T0, asset_path, default_prior, parse_t0
from .args import (
    MODELS_SEEN,
    CLIError,
    add_model_args,
    add_phase_arg,
    add_task_args,
    add_threads,
    float_list,
    int_list,
    str_list,
    task_of,
)


def cmd_theory(a) -> int:
    from .. import theory

    tau = a.tau
    t0 = parse_t0(a.t0, auto=False)
    if a.task:
        size = a.image_size
        tau = theory.tau(task_of(a).operator((1, size, size)), (1, size, size))
    r = theory.report(a.schedule, a.steps, t0, a.eps0, a.mu, tau, variance=a.variance)
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


def cmd_demo(a) -> int:
    from ..demo import TASKS, run_demo

    tasks = a.tasks.split(",") if a.tasks else None
    for t in tasks or []:
        if t not in TASKS:
            raise CLIError(f"unknown demo task {t!r}; choose from {', '.join(TASKS)}")
    report = run_demo(a.out, quick=a.quick, seed=a.seed, tasks=tasks)
    print(f"report written to {report}")
    return 0


def cmd_bench(a) -> int:
    from ..bench import run_bench

    task = task_of(a)
    if a.coils:
        if task.name != "mri":
            raise CLIError("--coils is for --task mri")
        task = replace(task, coils=a.coils)
    res = run_bench(task.as_dict(), a.out, model=a.model, data=a.input, restorer=a.restorer,
                    quick=a.quick, peers=a.peers, n_images=a.n_images, seed=a.seed,
                    command="ccdf " + " ".join(a.argv), val=a.val, cs_iters=a.cs_iters,
                    grid=a.grid, sweep_steps=a.sweep_steps, full_steps=a.full_steps,
                    full_images=a.full_images, checks=not a.no_checks,
                    model_config=tuple(a.model_config), class_label=a.class_label,
                    sigma_y=a.sigma_y, consistency=a.consistency, cs_start=not a.no_cs_start,
                    phase=a.phase)
    print(f"{len(res['rows'])} rows written to {a.out}/results.md")
    return 0


def cmd_calibrate_t0(a) -> int:
    """Measure auto t0's constant k on validation images for each start of a task and store it
    in the prior's autot0.json (``autot0.calibrate``)."""
    from .. import autot0, init
    from ..bench import make_setup

    task = task_of(a)
    if a.cs and task.name != "mri":
        raise CLIError("--cs (the compressed-sensing start) is for --task mri")
    if a.model == "default":
        raise CLIError("calibrate-t0 writes autot0.json into the prior's folder, and the "
                       "embedded prior is part of the installed package: copy it (cp -r "
                       f"{asset_path(default_prior(task))} my-prior) and pass --model my-prior")
    data = a.input or ("mri:val256-complex" if task.name == "mri" else "fashion-mnist:val")
    s = make_setup(task.as_dict(), a.model, data, a.n_images, a.restorer, extras=False,
                   model_config=tuple(a.model_config), class_label=a.class_label,
                   sigma_y=a.sigma_y, seed=a.seed)
    print(f"calibrating auto t0 for {s.name} on {len(s.x)} images of {data} (N = {a.steps})")
    extra = {}
    if task.name == "mri" and a.cs:  # the compressed-sensing start, lambda chosen on these images
        from .. import classical

        for kind in a.cs:
            lam, table = classical.choose_lambda(s.op, s.y, s.x, kind)
            print(f"{classical.NAMES[kind]}: lambda {lam:g} ("
                  + ", ".join(f"{lm:g}: {p:.2f}" for lm, p in table) + ")")
            s.starts[f"cs:{kind}"] = init.CompressedSensing(kind, lam)(s.op, s.y, s.sigma_y)
            s.start_keys[f"cs:{kind}"] = f"cs:{kind}"
            extra[f"cs:{kind}"] = {"lambda": lam, "kind": kind}
    for start, x0 in s.starts.items():
        key = s.start_keys[start]
        print(f"{key} start:")
        entry = autot0.calibrate(s.model, s.op, s.x, x0, steps=a.steps, tol=a.tol, seed=a.seed,
                                 log=print, y=s.y, sigma_y=s.sigma_y, phase=a.phase,
                                 **({"grid": a.grid} if a.grid else {}))
        entry.update(data=data, command="ccdf " + " ".join(a.argv), **extra.get(start, {}))
        f = autot0.save_calibration(s.model, task.as_dict(), key, entry)
        print(f"  -> t0* = {entry['t0_best']:g} (PSNR {entry['psnr_best']:.2f}), eps0 = "
              f"{entry['eps0']:.3g}, k = {entry['k']:.3g}; saved in {f}")
    return 0


def add_parsers(sub) -> None:
    de = sub.add_parser("demo", help="the main job on the embedded models: report.md + figures",
                        description="SR x4, box inpainting and MRI x4 on the embedded models: "
                        "initial estimates, full runs, CCDF from the classic and feed-forward "
                        "starts and with auto t0, a PSNR-vs-t0 sweep; writes report.md, "
                        "results.json, image grids and plots.  " + MODELS_SEEN + ".")
    de.add_argument("--out", default="out/demo", help="output folder")
    de.add_argument("--quick", action="store_true", help="4 images per task (2 MRI slices), short sweeps")
    de.add_argument("--tasks", default="", help="comma list of sr4, inpaint-box, mri4 (default: all)")
    de.add_argument("--seed", type=int, default=0, help="seed of every run")
    add_threads(de)
    de.set_defaults(func=cmd_demo)

    be = sub.add_parser("bench", help="quality against NFE and time: CCDF, full runs, the "
                        "feed-forward net and (--peers) DDRM, DiffPIR, DPS on the same network")
    add_task_args(be, required=True)
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
    be.add_argument("--grid", type=float_list, default=None,
                    help="t0 grid of the sweeps (default: the paper's 0.05,0.1,0.2,0.5,0.75,1)")
    be.add_argument("--sweep-steps", type=int_list, default=None,
                    help="N of the sweeps (default 100,1000; --quick: 100)")
    be.add_argument("--full-steps", type=int_list, default=None,
                    help="N of the full-run baselines (t0 = 1); default 1000,20 (--quick "
                    "--coils: 100,20)")
    be.add_argument("--full-images", type=int, default=None,
                    help="run full runs with N > 100 on only the first K images (slow sizes)")
    be.add_argument("--no-checks", action="store_true",
                    help="skip the theory check and the overhead measurement")
    be.add_argument("--restorer", default="default", help="default | none | PATH")
    be.add_argument("--no-cs-start", action="store_true", help="MRI: no CCDF rows from the "
                    "compressed-sensing start (the better CS row on validation; default: with)")
    be.add_argument("--n-images", type=int, default=None, help="use the first N images (default: all)")
    be.add_argument("--quick", action="store_true", help="4 images, N=100 sweep only")
    be.add_argument("--peers", action="store_true", help="add DDRM, DiffPIR and DPS rows")
    be.add_argument("--sigma-y", type=float, default=0.0,
                    help="measurement noise std ([0, 1] scale), added to y and given to all")
    be.add_argument("--consistency", default=None,
                    help="comma list of projection, gradient, prox, cg: the CCDF rows' data "
                    "consistency (the first) and one t0 sweep each (default: the task's, prox "
                    "for deblur, projection otherwise; with --coils projection,gradient,cg)")
    add_phase_arg(be)
    be.add_argument("--coils", type=int, default=None,
                    help="MRI: simulated multi-coil k-space with this many birdcage coils, "
                    "ESPIRiT maps, CG-SENSE start, zero-filled RSS and compressed-sensing rows; "
                    "--input heldout (default), val, ood or a data spec")
    be.add_argument("--seed", type=int, default=0, help="seed of every run")
    add_threads(be)
    add_model_args(be)
    be.set_defaults(func=cmd_bench)

    ca = sub.add_parser("calibrate-t0", help="measure auto t0's constant on validation images "
                        "(stored in the prior's autot0.json)")
    add_task_args(ca, required=True)
    ca.add_argument("--model", default="default", help="a model folder, written to (the "
                    "embedded priors are part of the package: calibrate a copy)")
    ca.add_argument("--input", default=None, help="validation images (a data spec); default: "
                    "fashion-mnist:val or mri:val256-complex, never the evaluation images")
    ca.add_argument("--restorer", default="default", help="default | none | PATH")
    ca.add_argument("--n-images", type=int, default=16, help="validation images used")
    ca.add_argument("--cs", type=str_list(CS_KINDS), default=(),
                    help="MRI: also calibrate the compressed-sensing start of these kinds "
                    "(comma list of tv, l1wavelet; its lambda is chosen on the same images and "
                    "stored for `solve --init tv`)")
    ca.add_argument("--grid", type=float_list, default=None,
                    help="t0 values of the sweep (default 0.02,0.03,0.05,0.1,0.2,0.3,0.5,0.75,1)")
    ca.add_argument("--sigma-y", type=float, default=0.0,
                    help="measurement noise std ([0, 1] scale) of the calibration")
    ca.add_argument("--steps", type=int, default=100, help="N of the sweep")
    add_phase_arg(ca)
    ca.add_argument("--tol", type=float, default=0.1, help="t0* = smallest t0 within TOL dB "
                    "of the best PSNR")
    ca.add_argument("--seed", type=int, default=0, help="seed of every run")
    add_threads(ca)
    add_model_args(ca)
    ca.set_defaults(func=cmd_calibrate_t0)


def add_theory_parser(sub) -> None:
    th = sub.add_parser("theory", help="contraction constants, Theorem 1 bound, Theorem 2 N'")
    th.add_argument("--schedule", choices=["ddpm", "smld", "ddim"], default="ddpm",
                    help="ddpm: VP with ancestral steps; smld: VE; ddim: VP, deterministic")
    th.add_argument("--variance", choices=["large", "small"], default="large",
                    help="ddpm/smld step noise: large (beta_i, the paper's C = n (1 - alpha_N)) "
                    "or small (the posterior variance: what `ccdf solve --sampler ddpm` runs; "
                    "same lambda, smaller C)")
    th.add_argument("--steps", type=int, default=1000, help="N, steps of the full schedule")
    th.add_argument("--t0", type=float, default=T0, help="the jump: N' = round(t0 N)")
    th.add_argument("--eps0", type=float, default=1.0, help="initial error (per-pixel MSE)")
    th.add_argument("--mu", type=float, default=0.5, help="Theorem 2 target: bound <= mu eps0")
    th.add_argument("--tau", type=float, default=1.0, help="Tr(A^T A)/n (or give --task)")
    th.add_argument("--image-size", type=int, default=32, help="image size for --task's tau")
    add_task_args(th)
    th.add_argument("--json", action="store_true", help="print one JSON object")
    th.set_defaults(func=cmd_theory)
