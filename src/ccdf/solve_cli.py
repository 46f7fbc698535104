"""``ccdf solve``: arguments -> inputs -> reconstruct -> outputs.

Inputs this version reads: PNG/JPEG/TIFF images and 2-D .npy arrays in [0, 1], a file or a
folder of them, as clean images (the measurement is simulated with the pattern's seed, so
PSNR/SSIM against the input are reported).  Each item gets its own generator, seeded from
the global seed and the item's name, so results do not depend on folder order.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import io

SOLVE_SUFFIXES = io.IMAGE_SUFFIXES + (".npy",)


def item_seed(seed: int, name: str) -> int:
    """A per-item seed from the global seed and the item's name (not its position)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


def list_inputs(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if io.suffix_of(p) in SOLVE_SUFFIXES)
        if not files:
            raise io.InputError(f"no images (.png, .jpg, .tif, .npy) in {path}")
        return files
    if io.suffix_of(path) not in SOLVE_SUFFIXES:
        raise io.InputError(f"unsupported input {path.name}: expected an image or a .npy file "
                            "(NIfTI and .h5 k-space inputs are not supported by this version)")
    return [path]


def read_item(path: Path, channels: int) -> torch.Tensor:
    """(C, H, W) float32 in [0, 1]; NaN/Inf or values outside [0, 1] (npy) are refused."""
    if io.suffix_of(path) == ".npy":
        a = io.read_npy(path)
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise io.InputError(f"{path.name}: expected a real 2-D array, got {a.dtype} {a.shape}")
        x = torch.from_numpy(a.astype(np.float32))[None]
    else:
        x = io.read_image(path, channels)
    if not torch.isfinite(x).all():
        raise io.InputError(f"{path.name} contains NaN or Inf")
    if x.min() < 0 or x.max() > 1:
        raise io.InputError(f"{path.name}: values must lie in [0, 1], got [{x.min():.3g}, "
                            f"{x.max():.3g}]")
    return x


def _resolve_model(spec: str, task: str):
    from .datasets import ASSETS
    from .models import load_model

    if spec == "default":
        name = "default-mri" if task == "mri" else "default-image"
        path = ASSETS / "models" / name
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"the embedded model {name} is not in this build yet; "
                                    "pass --model PATH")
        return load_model(path), name
    return load_model(spec), spec


def _resolve_init(spec: str, task: dict):
    """None for the classic estimate, else a Restorer whose task matches."""
    from .datasets import ASSETS
    from .models.restorer import load_restorer

    if spec == "classic":
        return None
    if spec == "net":
        name = {("sr", 4): "restorer-sr4", ("mri", 4.0): "restorer-mri4"}.get(
            (task["task"], task.get("factor", task.get("accel"))))
        if name is None or not (ASSETS / "models" / name / "config.json").exists():
            raise ValueError(f"no embedded restoration network for {task}; use --init classic "
                             "or --init PATH")
        spec = str(ASSETS / "models" / name)
    net = load_restorer(spec)
    wanted = {k: v for k, v in task.items() if k != "seed"}
    have = {k: v for k, v in net.task.items() if k != "seed"}
    if any(have.get(k) != v for k, v in wanted.items() if k in have):
        raise ValueError(f"the restoration network was trained for {net.task}, not {task}")
    return net


def run(a) -> int:
    from . import autot0, init, metrics
    from .operators import make_operator
    from .reconstruct import check_model_input, reconstruct
    from .samplers import SAMPLERS

    if a.task is None:
        raise ValueError("--task is required (sr, inpaint or mri)")
    if a.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {a.samples}")
    if a.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {a.sampler}")
    auto = a.t0 == "auto"
    if not auto:
        try:
            t0 = float(a.t0)
        except ValueError:
            raise ValueError(f"--t0 must be a number in (0, 1] or 'auto', got {a.t0!r}") from None
        if not (math.isfinite(t0) and 0 < t0 <= 1):
            raise ValueError(f"t0 must be in (0, 1], got {a.t0}")
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    from .cli import _task_params

    task = {"task": a.task, **_task_params(a)}
    if a.task != "mri":
        task.pop("seed", None)
    files = list_inputs(Path(a.input))
    model, model_name = _resolve_model(a.model, a.task)
    model = model.to(a.device)
    net = _resolve_init(a.init, task)
    size = model.image_size
    params = {k: v for k, v in task.items() if k != "task"}
    op = make_operator(a.task, (model.channels, size, size), **params)  # validates the task
    out = Path(a.out)
    images, cache = [], {}
    bar = None
    if not a.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=len(files), desc="solve", unit="img", dynamic_ncols=True,
                   file=sys.stderr, disable=None, leave=False)  # no bar when not a TTY
    for path in files:
        x = read_item(path, model.channels)[None]
        check_model_input(model, x)
        g = torch.Generator().manual_seed(item_seed(a.seed, path.name))
        y = op.A(x)
        if a.sigma_y > 0:
            noise = torch.randn(y.shape, generator=g, dtype=y.real.dtype)
            y = y + a.sigma_y * (op.A(noise) if y.is_complex() else noise)
        x0_hat = init.classic(op, y) if net is None else init.feed_forward(net, op, y)
        if auto:
            t0_i, reason = autot0.choose_t0(model, op, y, x0_hat, a.steps, a.sigma_y,
                                            None if net is None else net.meta, cache=cache)
        else:
            t0_i, reason = t0, "given"
        tic = time.perf_counter()
        r = reconstruct(model, op, y, x0_hat, t0=t0_i, steps=a.steps, sampler=a.sampler,
                        samples=a.samples, sigma_y=a.sigma_y, generator=g)
        sec = time.perf_counter() - tic
        stem = path.name[: -len(io.suffix_of(path))]
        if io.suffix_of(path) == ".npy":
            io.write_npy(out / f"{stem}.npy", r.x[0, 0].numpy())
        io.write_image(out / f"{stem}.png", r.x[0])
        io.write_image(out / f"{stem}_init.png", x0_hat[0])
        if r.std is not None:
            io.write_npy(out / f"{stem}_std.npy", r.std[0, 0].numpy())
            io.write_image(out / f"{stem}_std.png", r.std[0] / r.std.max().clamp_min(1e-8))
        images.append({"name": path.name, "psnr": float(metrics.psnr(r.x, x)),
                       "ssim": float(metrics.ssim(r.x, x)), "nfe": r.nfe, "seconds": sec,
                       "t0": t0_i, "t0_reason": reason,
                       "init_psnr": float(metrics.psnr(x0_hat, x))})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(psnr=f"{images[-1]['psnr']:.2f}")
    if bar is not None:
        bar.close()
    mean = lambda k: float(np.mean([i[k] for i in images]))  # noqa: E731
    summary = {"psnr_mean": mean("psnr"), "ssim_mean": mean("ssim"), "nfe": images[0]["nfe"],
               "t0": "auto" if auto else t0, "steps": a.steps,
               "seconds_per_image": mean("seconds"), "init_psnr_mean": mean("init_psnr"),
               "n_images": len(images), "sampler": a.sampler, "model": model_name,
               "init": a.init, "task": task, "samples": a.samples, "seed": a.seed}
    if auto:
        summary["t0_reason"] = images[0]["t0_reason"]
        print(f"auto t0: {images[0]['t0_reason']}", file=sys.stderr)
    io.write_json(out / "metrics.json", {"images": images, "summary": summary})
    if a.json:
        print(json.dumps(summary))
    else:
        print(f"{len(images)} image(s): PSNR {summary['psnr_mean']:.2f} dB (initial estimate "
              f"{summary['init_psnr_mean']:.2f}), SSIM {summary['ssim_mean']:.3f}, "
              f"{summary['nfe']} NFE, {summary['seconds_per_image']:.2f} s/image -> {out}")
    return 0


def add_solve_parser(sub) -> None:
    from .cli import _add_task_args

    s = sub.add_parser("solve", help="reconstruct images from simulated measurements with CCDF")
    s.add_argument("--input", required=True, help="an image/.npy file or a folder of them")
    s.add_argument("--out", required=True, help="output folder")
    _add_task_args(s)
    s.add_argument("--sigma-y", type=float, default=0.0, help="measurement noise std")
    s.add_argument("--model", default="default", help="default or a model PATH")
    s.add_argument("--init", default="classic", help="classic | net | PATH of a restorer")
    s.add_argument("--t0", default="0.2", help="FLOAT in (0, 1] or auto")
    s.add_argument("--steps", type=int, default=100, help="N of the full schedule")
    s.add_argument("--sampler", default="ddpm", choices=["ddpm", "ddim", "smld"])
    s.add_argument("--samples", type=int, default=1, help="posterior samples per input")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=run)
