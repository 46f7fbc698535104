"""Kept for imports written before ``ccdf.solve``: the library behind ``ccdf solve`` now lives
in the package ``ccdf.solve`` (see its docstring)."""

from .solve import *  # noqa: F401,F403
from .solve import __all__  # noqa: F401
