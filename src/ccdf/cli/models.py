"""The model commands: ``ccdf sample`` (unconditional samples of a prior, the model quality
report) and ``ccdf inspect`` (what ccdf loaded from a model path, and what it assumed).

Library modules are imported inside the commands: ``set_threads`` runs before torch is."""

from __future__ import annotations

import json

from ..assets import DEFAULT_IMAGE, PRIORS, asset_path
from .args import add_model_args, add_threads, open_model


def cmd_inspect(a) -> int:
    """What ccdf loaded from a model path, and what it assumed (``models.describe``)."""
    from ..models.formats import describe

    d = describe(open_model(a, a.model, need_label=False))
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

    from .. import io
    from ..models.denoiser import from_model
    from ..samplers import solve

    path = asset_path(a.model) if a.model in PRIORS else a.model
    model = open_model(a, path)
    s, c = model.image_size or a.size, model.channels
    g = torch.Generator().manual_seed(a.seed)
    cplx = bool(getattr(model, "complex", False))
    z = torch.zeros(a.n, 1, s, s, dtype=torch.complex64) if cplx else torch.zeros(a.n, c, s, s)
    res = solve(model, z, steps=a.steps, t0=1.0, sampler=a.sampler, generator=g)
    x = res.x.abs().clamp(0, 1) if cplx else from_model(model, res.x).clamp(0, 1)
    io.write_image(a.out, io.tile(x, a.cols or int(a.n**0.5)))
    print(f"{a.n} samples ({a.sampler}, {res.nfe} NFE) written to {a.out}")
    return 0


def add_parsers(sub) -> None:
    sa = sub.add_parser("sample", help="unconditional samples of a prior as a PNG grid")
    sa.add_argument("--model", default=DEFAULT_IMAGE, help=f"{', '.join(PRIORS)} or PATH")
    sa.add_argument("--n", type=int, default=64, help="number of samples")
    sa.add_argument("--size", type=int, default=64,
                    help="image size for a prior of any size (the MRI prior); magnitudes shown")
    sa.add_argument("--cols", type=int, default=0, help="grid columns (0: sqrt(n))")
    sa.add_argument("--steps", type=int, default=100, help="N, reverse steps from pure noise")
    sa.add_argument("--sampler", choices=["ddpm", "ddim", "smld"], default="ddpm",
                    help="reverse step: DDPM ancestral, DDIM (deterministic) or SMLD (VE models)")
    sa.add_argument("--seed", type=int, default=0, help="seed of the noise")
    add_threads(sa)
    sa.add_argument("--out", required=True, help="output PNG")
    add_model_args(sa)
    sa.set_defaults(func=cmd_sample)

    ins = sub.add_parser("inspect", help="what a model path holds: family, architecture, "
                         "parameters, size, schedule, prediction, data range, conditioning, "
                         "and what was assumed")
    ins.add_argument("model", help="a ccdf or diffusers folder, an ADM .pt, a score_sde .pth")
    add_model_args(ins)
    ins.add_argument("--json", action="store_true", help="print one JSON object")
    ins.set_defaults(func=cmd_inspect)
