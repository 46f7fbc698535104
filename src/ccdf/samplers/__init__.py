"""The CCDF reverse loop (one loop for every task) and its update rules."""

from .loop import Result, jump, solve
from .steps import DDIM, SAMPLERS, Ancestral, LangevinCorrector, make_sampler

__all__ = ["solve", "jump", "Result", "Ancestral", "DDIM", "LangevinCorrector", "SAMPLERS", "make_sampler"]
