"""The CCDF reverse loop (one loop for every task) and its update rules."""

from .loop import Result, solve
from .steps import DDIM, SAMPLERS, Ancestral, LangevinCorrector, make_sampler

__all__ = ["solve", "Result", "Ancestral", "DDIM", "LangevinCorrector", "SAMPLERS", "make_sampler"]
