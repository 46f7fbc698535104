"""Noise schedules on continuous time t in [0, 1], computed in float64.

Every schedule writes the forward marginal as ``x_t = a(t) x_0 + b(t) z``, ``z ~ N(0, I)``:

* VP / DDPM:  ``a = sqrt(alpha_bar(t))``, ``b = sqrt(1 - alpha_bar(t))``
  (linear beta, cosine, or a discrete ``alphas_cumprod`` table from a loaded checkpoint);
* VE / SMLD:  ``a = 1``, ``b = sqrt(sigma(t)^2 - sigma_min^2)``,
  ``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` (geometric), so ``b(0) = 0``.

A sampling grid of N steps is ``t_i = i / N`` (i = 0..N); CCDF runs only the last
``N' = round(t0 N)`` of them, starting from ``samplers.jump`` (the "come closer" jump).
A discrete K-step model (a ``table`` VP schedule) may instead put its grid on training steps
k_1 < ... < k_N chosen by a ``spacing`` rule, t_i = (k_i + 1) / K (``discrete_timesteps``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

__all__ = ["VPSchedule", "VESchedule", "Grid", "schedule_from_dict", "n_prime",
           "discrete_timesteps", "SPACINGS"]

#: timestep spacings of a discrete schedule (diffusers' ``timestep_spacing`` values)
SPACINGS = ("trailing", "leading", "linspace")


def discrete_timesteps(k: int, steps: int, spacing: str = "trailing", offset: int = 0) -> list:
    """The N training steps (ascending, in 0..K-1) that a discrete K-step model is sampled at.

    As diffusers' ``DDPMScheduler.set_timesteps`` chooses them (``timestep_spacing``):
    trailing: round(i K / N) - 1 for i = 1..N (ccdf's t_i = i/N snapped to training steps:
    exactly i K/N - 1 when N divides K); leading: i (K // N) + offset for i = 0..N-1;
    linspace: round(i (K - 1) / (N - 1)), i = 0..N-1 (guided-diffusion's respacing "N").
    """
    import numpy as np

    k, n = int(k), int(steps)
    if not 1 <= n <= k:
        raise ValueError(f"steps must be in 1..{k} for this {k}-step model, got {steps}")
    if spacing == "trailing":
        ts = np.round(np.arange(k, 0, -k / n)).astype(np.int64) - 1
    elif spacing == "leading":
        ts = (np.arange(0, n) * (k // n)).round().astype(np.int64) + int(offset)
    elif spacing == "linspace":
        ts = np.linspace(0, k - 1, n).round().astype(np.int64)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r} ({', '.join(SPACINGS)})")
    ts = sorted(int(v) for v in ts)
    if len(set(ts)) != n or ts[0] < 0 or ts[-1] > k - 1:
        raise ValueError(f"{spacing} spacing with offset {offset} gives no {n} distinct steps "
                         f"in 0..{k - 1}")
    return ts


def _t64(t) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


@dataclass(frozen=True)
class Grid:
    """Schedule values on the grid t_i = i/N, each a float64 tensor of shape (N+1,)."""

    t: Tensor
    a: Tensor
    b: Tensor

    @property
    def steps(self) -> int:
        return len(self.t) - 1

    def alpha(self, i: int) -> float:
        """alpha_i = (a_i / a_{i-1})^2: the one-step signal decay (DDPM's alpha_i)."""
        return float((self.a[i] / self.a[i - 1]) ** 2)

    def beta(self, i: int) -> float:
        """Variance added by the forward step i-1 -> i: b_i^2 - alpha_i b_{i-1}^2.

        DDPM: beta_i = 1 - alpha_i.  SMLD: sigma_i^2 - sigma_{i-1}^2.
        """
        return float(self.b[i] ** 2 - self.alpha(i) * self.b[i - 1] ** 2)


class _Schedule:
    kind: str

    def a(self, t) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def b(self, t) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def grid(self, steps: int) -> Grid:
        """The sampling grid of ``steps`` reverse steps (t_i = i/steps)."""
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        t = torch.linspace(0.0, 1.0, int(steps) + 1, dtype=torch.float64)
        return Grid(t=t, a=self.a(t), b=self.b(t))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = self.kind
        return d


@dataclass(frozen=True)
class VPSchedule(_Schedule):
    """Variance preserving (DDPM).  ``beta`` is 'linear', 'cosine' or 'table'.

    linear: alpha_bar(t) = exp(-(beta_min t + (beta_max - beta_min) t^2 / 2)) -- the continuous
      limit of DDPM's betas 1e-4..0.02 over 1000 steps (beta_min = 0.1, beta_max = 20).
    cosine: Nichol & Dhariwal's cos^2 schedule with offset s, time rescaled so that
      alpha_bar(1) = alpha_bar_min (keeps every reverse step well conditioned).
    table: ``alphas_cumprod`` of a discrete K-step model, entry k at t = (k+1)/K,
      log-linearly interpolated, alpha_bar(0) = 1.  ``spacing`` ('' or one of ``SPACINGS``,
      with ``steps_offset`` for 'leading') puts the grid of N steps on training steps
      (``discrete_timesteps``), so that the network only sees the steps it was trained at;
      '' keeps t_i = i/N.
    """

    beta: str = "linear"
    beta_min: float = 0.1
    beta_max: float = 20.0
    cosine_s: float = 0.008
    alpha_bar_min: float = 1e-4
    table: tuple = field(default=())
    spacing: str = ""
    steps_offset: int = 0
    kind: str = field(default="vp", init=False)

    def __post_init__(self):
        if self.beta not in ("linear", "cosine", "table"):
            raise ValueError(f"unknown VP beta schedule {self.beta!r} (linear, cosine, table)")
        if self.beta == "table" and len(self.table) < 2:
            raise ValueError("a 'table' VP schedule needs alphas_cumprod with at least 2 entries")
        if self.spacing and (self.spacing not in SPACINGS or self.beta != "table"):
            raise ValueError(f"spacing {self.spacing!r} needs a 'table' schedule and one of "
                             f"{', '.join(SPACINGS)}")

    def grid(self, steps: int) -> Grid:
        if not self.spacing:
            return super().grid(steps)
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        k = len(self.table)
        ts = discrete_timesteps(k, int(steps), self.spacing, self.steps_offset)
        t = torch.tensor([0.0] + [(v + 1) / k for v in ts], dtype=torch.float64)
        ab = torch.tensor((1.0,) + tuple(self.table[v] for v in ts), dtype=torch.float64)
        return Grid(t=t, a=ab.sqrt(), b=(1 - ab).clamp_min(0).sqrt())

    def alpha_bar(self, t) -> Tensor:
        t = _t64(t)
        if self.beta == "linear":
            return torch.exp(-(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2))
        if self.beta == "cosine":
            s = self.cosine_s
            f = lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
            # u_max solves f(u)/f(0) = alpha_bar_min
            f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
            u_max = (1 + s) * 2 / math.pi * math.acos(math.sqrt(self.alpha_bar_min * f0)) - s
            return f(t * u_max) / f0
        tab = torch.tensor((1.0,) + tuple(self.table), dtype=torch.float64)
        k = len(tab) - 1
        pos = (t * k).clamp(0, k)
        lo = pos.floor().long().clamp(max=k - 1)
        w = pos - lo
        la = torch.log(tab)
        return torch.exp(la[lo] * (1 - w) + la[lo + 1] * w)

    def a(self, t) -> Tensor:
        return self.alpha_bar(t).sqrt()

    def b(self, t) -> Tensor:
        return (1 - self.alpha_bar(t)).clamp_min(0).sqrt()


@dataclass(frozen=True)
class VESchedule(_Schedule):
    """Variance exploding (SMLD / NCSN): sigma(t) = sigma_min (sigma_max/sigma_min)^t."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    kind: str = field(default="ve", init=False)

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError("VE schedule needs 0 < sigma_min < sigma_max")

    def sigma(self, t) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** _t64(t)

    def a(self, t) -> Tensor:
        return torch.ones_like(_t64(t))

    def b(self, t) -> Tensor:
        return (self.sigma(t) ** 2 - self.sigma_min**2).clamp_min(0).sqrt()


def schedule_from_dict(d: dict):
    """Inverse of ``to_dict`` (used by saved model configs)."""
    d = dict(d)
    kind = d.pop("kind", "vp")
    if kind == "vp":
        if "table" in d:
            d["table"] = tuple(d["table"])
        return VPSchedule(**d)
    if kind == "ve":
        return VESchedule(**d)
    raise ValueError(f"unknown schedule kind {kind!r} (vp, ve)")


def n_prime(t0: float, steps: int) -> int:
    """N' = round(t0 N), the number of reverse steps CCDF runs; at least 1."""
    t0 = float(t0)
    if not math.isfinite(t0) or not 0.0 < t0 <= 1.0:
        raise ValueError(f"t0 must be in (0, 1], got {t0}")
    return max(1, min(int(steps), round(t0 * steps)))
