"""The sampling noise: ``randn_like`` and per-item generators for a batch.

Every draw of the samplers, the data-consistency steps and the peers goes through
``randn_like(x, generator)``.  ``generator`` is a ``torch.Generator``, None (torch's global
generator) or a ``StackedGenerator``: one generator per item of a batch, so that a batch of
items draws, item by item, exactly the noise each item draws when solved alone.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class StackedGenerator:
    """One ``torch.Generator`` per batch item (a generator, an int seed, or None: torch's
    global generator).  ``randn_like(x, g)`` on x (B, ...) draws the rows
    [k m, (k + 1) m), m = B / len(g), from generator k, in one call of shape (m, ...): the
    draw item k makes when solved alone with a batch of m rows (its K posterior samples)."""

    def __init__(self, generators: Iterable[torch.Generator | int | None],
                 device: str | torch.device = "cpu"):
        self.generators = [torch.Generator(device=device).manual_seed(int(g))
                           if isinstance(g, int) else g for g in generators]
        if not self.generators:
            raise ValueError("a StackedGenerator needs at least one generator")

    def __len__(self) -> int:
        return len(self.generators)

    def rows(self, x: Tensor) -> int:
        """m: the rows of x (B, ...) that each generator draws."""
        m, r = divmod(x.shape[0], len(self.generators))
        if r or not m:
            raise ValueError(f"a batch of {x.shape[0]} rows does not split into "
                             f"{len(self.generators)} items")
        return m


Generator = torch.Generator | StackedGenerator | None


def _randn(shape: tuple, generator, like: Tensor) -> Tensor:
    """N(0, 1) noise of ``shape`` with x's dtype and device (complex: N(0, 1) real and
    imaginary parts, the real part drawn first)."""
    if like.is_complex():
        re = torch.randn(shape, generator=generator, dtype=like.real.dtype, device=like.device)
        im = torch.randn(shape, generator=generator, dtype=like.real.dtype, device=like.device)
        return torch.complex(re, im)
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


def randn_like(x: Tensor, generator: Generator = None) -> Tensor:
    """Standard normal noise shaped like x (B, ...); complex x gets N(0, 1) real and imaginary
    parts.  A ``StackedGenerator`` draws each item's rows from the item's own generator."""
    if isinstance(generator, StackedGenerator):
        m = generator.rows(x)
        return torch.cat([_randn((m, *x.shape[1:]), g, x) for g in generator.generators])
    return _randn(tuple(x.shape), generator, x)


def per_item(generator: Generator, n: int) -> list:
    """The generators of n items of a batch: a ``StackedGenerator``'s own (it must have n),
    else ``generator`` n times (one generator drawing for the items in turn)."""
    if isinstance(generator, StackedGenerator):
        if len(generator) != n:
            raise ValueError(f"a StackedGenerator of {len(generator)} items for {n} items")
        return list(generator.generators)
    return [generator] * n
