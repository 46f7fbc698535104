"""Solving items together: one run of the reverse loop for a batch of items.

With ``batch_size`` B > 1, B items (same t0) run as one batch (``reconstruct_batch``): one
network call per reverse step on the stacked items, each item's own operator and measurement
on its rows, and each item's noise from its own generator (``noise.StackedGenerator``).  Their
noise is therefore identical to a ``batch_size`` 1 run; only the floating-point rounding of
the batched network convolutions differs (about 1e-6, which can flip an 8-bit PNG value by
one step).  ``batch_size`` 1 is exactly reproducible whatever else is in the folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..reconstruction import Problem, reconstruct_batch


@dataclass(frozen=True)
class Sampling:
    """What a batch needs of the run's settings (``SolveConfig``'s sampling part)."""

    steps: int = 100
    sampler: str = "ddpm"
    samples: int = 1
    sigma_y: float = 0.0
    consistency: str | None = None   # None: the operator's default
    phase: str = "auto"              # MRI (``reconstruction.phase_operator``)


def solve_batch(model, items: list, sampling: Sampling, callback=None) -> list:
    """Solve ``items`` (same t0) together, filling each item's ``result`` and ``seconds``.

    Returns one entry per item: None when solved, else the exception it raised.  When a
    batch fails, its items are retried one by one (from fresh copies of their generators), so
    only the culprit fails and the others give exactly what a batch 1 run gives."""
    try:
        _run_batch(model, items, sampling, callback)
        return [None] * len(items)
    except Exception as e:  # noqa: BLE001 -- a per-item failure, reported by the caller
        if len(items) == 1:
            return [e]
    errors = []
    for it in items:
        try:
            _run_batch(model, [it], sampling, callback)
            errors.append(None)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    return errors


def _run_batch(model, items: list, sampling: Sampling, callback) -> None:
    """Solve ``items`` (same t0) in one reverse loop; fills each item's ``result``; raises on
    failure."""
    tic = time.perf_counter()
    problems = [Problem(it.op, it.y, it.x0_hat, it.rng(), getattr(it, "class_label", None))
                for it in items]
    results = reconstruct_batch(model, problems, t0=items[0].t0, steps=sampling.steps,
                                sampler=sampling.sampler, samples=sampling.samples,
                                sigma_y=sampling.sigma_y, consistency=sampling.consistency,
                                callback=callback, phase=sampling.phase)
    sec = (time.perf_counter() - tic) / len(items)
    for it, res in zip(items, results):
        it.result, it.seconds = res, sec
