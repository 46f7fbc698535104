"""``ccdf solve``: the argparse part.  The work is ``ccdf.solve.solve`` (see the package
docstring for inputs, per-item seeds, batching, the manifest, resuming and torchrun).

Library modules are imported inside the command: ``set_threads`` runs before torch is."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..assets import DEFAULT_IMAGE, DEFAULT_MRI, T0, parse_t0
from .args import (
    MASK_HELP,
    MODELS_SEEN,
    add_consistency_arg,
    add_model_args,
    add_phase_arg,
    add_task_args,
    add_threads,
    task_of,
)


def run(a) -> int:
    """Exit codes: 0 all inputs solved, 1 some inputs failed (listed in the manifest), 2 bad
    settings or input, or outputs that cannot be written."""
    from .. import io, solve

    cfg = solve.SolveConfig(
        task=task_of(a).as_dict(), input=Path(a.input), out=Path(a.out), input_kind=a.input_kind,
        model=a.model, init=a.init, cs_lambda=a.cs_lambda, t0=parse_t0(a.t0), steps=a.steps,
        sampler=a.sampler, samples=a.samples, sigma_y=a.sigma_y, seed=a.seed, batch_size=a.batch_size,
        device=a.device, axis=a.axis, slices=a.slices, overwrite=a.overwrite,
        compile=a.compile, half=a.half, model_config=tuple(a.model_config or ()),
        class_label=a.class_label, consistency=a.consistency, coil_maps=a.coil_maps,
        complex_output=a.complex_output, phase=a.phase)
    res = solve.solve(cfg, progress=not a.no_progress, log=lambda m: print(m, file=sys.stderr))
    s = res.summary
    if s is None:  # a torchrun rank other than 0: rank 0 reports, and its exit code says it
        return 0
    code = 1 if res.n_failed else 0
    if code:
        print(f"ccdf solve: {s['n_failed']} of {s['n_inputs']} input(s) failed (reasons above "
              f"and in {res.out / 'manifest.jsonl'})", file=sys.stderr)
    if a.json:
        print(json.dumps(s))
        return code
    n = s["n_images"]
    t0 = s["t0"] if s["t0"] != "auto" else f"auto (mean {s.get('t0_mean') or 0:.3g})"
    head = f"{n} image(s), t0 {t0}, {s['nfe']} NFE, {s['seconds_per_image'] or 0:.2f} s/image"
    if s["psnr_mean"] is not None:
        ref = "" if s["n_with_reference"] == n else f" on {s['n_with_reference']} with a reference"
        head += (f": PSNR {s['psnr_mean']:.2f} dB (initial estimate {s['init_psnr_mean']:.2f}), "
                 f"SSIM {s['ssim_mean']:.3f}{ref}")
    print(f"{head} -> {io.shown(res.out)}")
    return code


def add_parser(sub) -> None:
    s = sub.add_parser(
        "solve", help="reconstruct images (or MRI k-space) with CCDF",
        description="Reconstruct a file or a folder with CCDF.  Inputs: PNG/JPEG/TIFF (8- or "
        "16-bit gray, RGB for an RGB model, float in [0, 1]), .npy (2-D image, 3-D stack, or "
        "complex k-space), NIfTI volumes (the output keeps their affine and units), "
        "fastMRI-style .h5 k-space.  Each input's outputs are written as it finishes, with a "
        "line in --out/manifest.jsonl; rerunning the same command resumes (also after Ctrl-C, "
        "SIGTERM or a kill).  Bad settings get one line on stderr and exit 2; inputs that fail "
        "are listed in the manifest and give exit 1.  Runs on several processes, GPUs or nodes "
        "under torchrun (torchrun --nproc_per_node=K -m ccdf solve ...).  " + MODELS_SEEN +
        ".  Inpainting masks: " + MASK_HELP.split(": ", 1)[1] + ".")
    s.add_argument("--input", required=True,
                   help="a file or a folder of .png/.jpg/.tif/.npy/.nii[.gz]/.h5 inputs")
    s.add_argument("--out", required=True, help="output folder")
    add_task_args(s, required=True)
    s.set_defaults(mask=None)  # inpainting: box for clean inputs; measurements must say
    s.add_argument("--input-kind", choices=["clean", "measurement"], default=None,
                   help="clean (default): the input is the ground truth and the measurement is "
                   "simulated; measurement: the file IS y (sr: the low-res image; inpaint: the "
                   "image with holes, needs --mask; mri: k-space). .h5 is always k-space")
    s.add_argument("--sigma-y", type=float, default=0.0,
                   help="measurement noise std on images in [0, 1], at most 1 (added to "
                   "simulated measurements; passed to the solver)")
    add_consistency_arg(s)
    add_phase_arg(s)
    s.add_argument("--model", default="default",
                   help=f"default ({DEFAULT_MRI} for mri, {DEFAULT_IMAGE} otherwise) or a model "
                   "PATH")
    add_model_args(s, labels_file=True)
    s.add_argument("--init", default="classic", help="classic | net | PATH of a restorer | "
                   "tv | l1wavelet (MRI: sigpy's compressed-sensing reconstruction, ccdf[mri])")
    s.add_argument("--cs-lambda", type=float, default=None, help="--init tv | l1wavelet: the "
                   "regularisation weight, relative to the image scale (default: the prior's "
                   "calibrated one for the task, else tv 3e-3, l1wavelet 3e-5)")
    s.add_argument("--t0", default=str(T0), help="FLOAT in (0, 1] or auto")
    s.add_argument("--steps", type=int, default=None,
                   help="N of the full schedule (default 100; with --t0 auto, the N that the "
                   "start's t0 was calibrated at, e.g. 1000 for the MRI starts)")
    s.add_argument("--sampler", default="ddpm", choices=["ddpm", "ddim", "smld"],
                   help="reverse step: DDPM ancestral (posterior variance), DDIM "
                   "(deterministic) or SMLD (for VE models)")
    s.add_argument("--coil-maps", default=None,
                   help="multi-coil .h5: coil maps (.npy/.h5 (slices, coils, H, W) or (coils, "
                   "H, W) complex, or a folder of NAME.npy/.h5); default: ESPIRiT")
    s.add_argument("--complex-output", action="store_true",
                   help="fastMRI .h5: also write the complex (SENSE-combined) image")
    s.add_argument("--samples", type=int, default=1,
                   help="posterior samples per input (output: their mean, plus a std map)")
    s.add_argument("--seed", type=int, default=0,
                   help="global seed; each item's generator is seeded from it and its name")
    s.add_argument("--batch-size", type=int, default=1,
                   help="items solved together, one network call per step, at most "
                   "256 (their noise stays per item; 1 is bit-reproducible whatever else is "
                   "in the folder; outputs are written as each batch finishes)")
    s.add_argument("--axis", type=int, default=2, help="NIfTI slice axis (0, 1 or 2)")
    s.add_argument("--slices", default=None,
                   help="slices of volumes (NIfTI, .npy stacks, .h5) to solve: A:B[:STEP] or N")
    again = s.add_mutually_exclusive_group()
    again.add_argument("--resume", dest="overwrite", action="store_false",
                       help="skip the inputs already done in --out (the default)")
    again.add_argument("--overwrite", action="store_true",
                       help="redo every input, even with other settings than --out's run")
    s.set_defaults(overwrite=False)
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    s.add_argument("--compile", action="store_true",
                   help="torch.compile the network (pays off on a GPU for large runs)")
    s.add_argument("--half", action="store_true",
                   help="run the network under autocast: bf16 (fp16 on GPUs without bf16)")
    add_threads(s)
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none without a terminal anyway)")
    s.set_defaults(func=run)
