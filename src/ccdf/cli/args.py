"""The arguments that several commands share: the task and its operator's parameters (-> a
``Task``), threads, model settings, number lists and t0; and ``CLIError``.

Imports no torch at module level: ``set_threads`` must run before torch is imported.
"""

from __future__ import annotations

import argparse
import os

from ..assets import DEFAULT_IMAGE, DEFAULT_MRI, TASK_DEFAULTS, TASKS, Task, parse_t0

__all__ = ["CLIError", "MODELS_SEEN", "MASK_HELP", "CONSISTENCY_HELP", "int_list", "float_list",
           "parse_t0", "acs", "add_task_args", "task_of", "add_consistency_arg", "add_phase_arg",
           "add_threads",
           "set_threads", "add_model_args", "open_model"]


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


#: what the embedded models have seen (said in --help and the README)
MODELS_SEEN = (f"embedded priors: {DEFAULT_IMAGE} knows only Fashion-MNIST garments (32x32 gray); "
               f"{DEFAULT_MRI} only T1 brain MRI (MNI152 axial and Colin27 slices, native "
               "resolution, smooth random phase; any size). "
               "Other images (photos, other anatomy) get the prior's textures: a warning says so")

MASK_HELP = ("inpainting holes: box (a centred square), random:FRACTION (that fraction of "
             "the pixels missing) or PATH of a mask image/.npy of the image size, white "
             "(>= 0.5) = observed, black = missing")

CONSISTENCY_HELP = ("data consistency: projection (POCS / k-space replacement), gradient (a "
                    "gradient step), prox (the proximal step, for deblurring), cg (DDS: conjugate "
                    "gradients on the denoised estimate; the fast choice for multi-coil MRI); "
                    "default: the task's, prox for deblur, projection otherwise")


def int_list(s: str) -> tuple:
    """'100,1000' -> (100, 1000)."""
    try:
        return tuple(int(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def float_list(s: str) -> tuple:
    """'0.05,0.1' -> (0.05, 0.1)."""
    try:
        return tuple(float(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def str_list(choices: tuple):
    """An argparse type: 'a,b' -> ('a', 'b'), each one of ``choices``."""
    def parse(s: str) -> tuple:
        vals = tuple(v for v in s.split(",") if v)
        bad = [v for v in vals if v not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; choose from "
                                             f"{', '.join(choices)}")
        return vals
    return parse


def acs(s: str):
    """--acs: an integer number of centre lines or a centre fraction in (0, 1)."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--acs takes a number of lines or a fraction, got {s!r}") from None
    return int(v) if v.is_integer() else v


def add_task_args(p, required: bool = False) -> None:
    """--task and its operator's parameters (read back by ``task_of``)."""
    p.add_argument("--task", choices=list(TASKS), required=required,
                   help="the inverse problem: sr (super-resolution), inpaint, mri "
                   "(compressed-sensing MRI), deblur")
    p.add_argument("--factor", type=int, default=TASK_DEFAULTS["sr"]["factor"],
                   help="sr: downsampling factor (2, 4, 8, 16)")
    p.add_argument("--kernel", default=None, help="sr: the downsampling, avg (average pooling; "
                   "default) or bicubic; deblur: gaussian (default) | uniform | motion | PATH "
                   "(.npy or image)")
    p.add_argument("--kernel-sigma", type=float, default=TASK_DEFAULTS["deblur"]["kernel_sigma"],
                   help="deblur: Gaussian std (px)")
    p.add_argument("--kernel-size", type=int, default=None, help="deblur: kernel side (px; "
                   "default gaussian 2 ceil(3 sigma) + 1, uniform 5, motion 9)")
    p.add_argument("--mask", default=TASK_DEFAULTS["inpaint"]["mask"], help=MASK_HELP)
    p.add_argument("--pattern", choices=["uniform1d", "random1d", "gaussian1d", "vd2d"],
                   default=TASK_DEFAULTS["mri"]["pattern"], help="mri: k-space sampling, "
                   "fastMRI's equispaced (uniform1d) or random 1-D lines, Gaussian random 1-D "
                   "lines, or 2-D variable density")
    p.add_argument("--accel", type=float, default=TASK_DEFAULTS["mri"]["accel"],
                   help="mri: acceleration (1 / the sampled fraction of k-space)")
    p.add_argument("--acs", type=acs, default=None, help="mri: fully sampled centre lines (an "
                   "integer) or centre fraction (in (0, 1)); default fastMRI's: 0.08 at x4, "
                   "0.04 at x8")


def task_of(a) -> Task:
    """--task and its parameters (the pattern's seed --seed, for MRI and deblurring); raises
    CLIError without --task."""
    if a.task is None:
        raise CLIError("--task is required (sr, inpaint, mri or deblur)")
    seed = getattr(a, "seed", 0)
    if a.task == "sr":
        return Task("sr", factor=a.factor, kernel=a.kernel or TASK_DEFAULTS["sr"]["kernel"])
    if a.task == "inpaint":
        return Task("inpaint", mask=a.mask)
    if a.task == "deblur":
        return Task("deblur", kernel=a.kernel or TASK_DEFAULTS["deblur"]["kernel"],
                    kernel_sigma=a.kernel_sigma, kernel_size=a.kernel_size, seed=seed)
    return Task("mri", pattern=a.pattern, accel=a.accel, acs=a.acs, seed=seed)


PHASE_HELP = ("single-coil complex MRI with a complex prior: start takes the smooth phase of "
              "the start (its low-passed image), absorbs it in the operator and reconstructs "
              "a real image (the output is it times that phase: the magnitude is the result, "
              "and k-space fits up to the phase estimate); none reconstructs the complex "
              "image as it is (an exact k-space fit); auto (default): start where it applies "
              "(one coil)")


def add_phase_arg(p) -> None:
    p.add_argument("--phase", choices=["auto", "start", "none"], default="auto",
                   help=PHASE_HELP)


def add_consistency_arg(p) -> None:
    p.add_argument("--consistency", choices=["projection", "gradient", "prox", "cg"],
                   default=None, help=CONSISTENCY_HELP)


def add_threads(p) -> None:
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
    import torch  # after the waiting policy is set

    torch.set_num_threads(n)
    return n


def add_model_args(p, labels_file: bool = False) -> None:
    """--model-config and --class-label: what a checkpoint's weights do not say."""
    p.add_argument("--model-config", action="append", default=[], metavar="FILE|FLAGS",
                   help="settings of a checkpoint that its weights do not hold (repeatable, "
                   "later ones win): guided-diffusion flags ('--image_size 256 ...' or a file "
                   "of them) or a YAML/JSON (DPS, DDRM); score_sde's config .py or a JSON of "
                   "its fields. Default: a sidecar beside the checkpoint (same stem)")
    p.add_argument("--class-label", default=None,
                   help="the class of a class-conditional model (ImageNet ADM): N" +
                   (", or a JSON/CSV file of name -> N per input" if labels_file else ""))


def open_model(a, path, need_label: bool = True):
    """The model at path with --model-config and --class-label applied."""
    from ..models import load_model  # torch: after set_threads
    from ..models.denoiser import check_class_label

    model = load_model(path, config=tuple(a.model_config))
    if need_label or a.class_label is not None:
        model.class_label = check_class_label(model, a.class_label, str(path))
    return model
