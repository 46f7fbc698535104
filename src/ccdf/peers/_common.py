"""Argument checks shared by the peers."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def real_dtype(x: Tensor) -> torch.dtype:
    return x.real.dtype if x.is_complex() else x.dtype


def grid_of(model, steps: int):
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    schedule = getattr(model, "schedule", None)
    if schedule is None or not hasattr(schedule, "grid"):
        raise ValueError("the model has no noise schedule (model.schedule.grid)")
    grid = schedule.grid(int(steps))
    ends_clean = abs(float(grid.a[0]) - 1) < 1e-9 and float(grid.b[0]) == 0
    if not ends_clean or not bool((grid.b[1:] > 0).all()):
        kind = getattr(schedule, "kind", schedule)
        raise ValueError(f"the peers need a schedule with x_t = a x0 + b z, a(0) = 1, b(0) = 0 and "
                         f"b(t) > 0 for t > 0 (VP or VE); got {kind!r}")
    return grid


def check_sigma(sigma_y) -> float:
    sigma_y = float(sigma_y)
    if not math.isfinite(sigma_y) or sigma_y < 0:
        raise ValueError(f"sigma_y must be a finite number >= 0, got {sigma_y}")
    return sigma_y


def check_y(y: Tensor) -> None:
    if not bool(torch.isfinite(torch.view_as_real(y) if y.is_complex() else y).all()):
        raise ValueError("the measurement y contains NaN or Inf")


def times(grid, i: int, n: int) -> Tensor:
    return grid.t[i].expand(n)
