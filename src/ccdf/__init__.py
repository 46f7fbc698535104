"""ccdf: Come Closer, Diffuse Faster -- diffusion-prior solvers for imaging inverse problems
(Chung, Sim & Ye, CVPR 2022, arXiv 2112.05146).

The public API (see the README's "Library" section)::

    import ccdf
    model = ccdf.load_model(path)                        # any supported checkpoint family
    op = ccdf.make_operator("sr", (1, 32, 32), factor=4)  # or ccdf.Task("sr", factor=4).operator(...)
    r = ccdf.reconstruct(model, op, y, op.classic_start(y), t0=0.2, steps=100)

The names below are imported on first use, so ``import ccdf`` (and the command line, which
sets torch's threading before torch loads) imports no torch.
"""

from __future__ import annotations

import importlib
from importlib import metadata

try:
    __version__ = metadata.version("ccdf")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.1.0"

#: public name -> the module that defines it
_API = {
    "load_model": "ccdf.models.formats",
    "make_operator": "ccdf.operators",
    "reconstruct": "ccdf.reconstruction",
    "reconstruct_batch": "ccdf.reconstruction",
    "Reconstruction": "ccdf.reconstruction",
    "Task": "ccdf.assets",
}

__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ccdf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
