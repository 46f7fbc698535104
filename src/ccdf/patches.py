"""Random training patches of MRI slices at their native resolution, real or with smooth phase.

The size-independent MRI prior (a fully convolutional UNet) is trained on P x P patches drawn
from whole slices of several brains, orientations and resolutions, then applied to whole
images of any size (patch-based diffusion priors for MRI, e.g. PaDIS-MRI, arXiv 2509.21531).
Each patch is flipped, rotated by a multiple of 90 degrees and scaled in intensity at random,
and multiplied by a smooth random phase map, so that the prior sees complex images as real
acquisitions give them (magnitude times a slowly varying phase), real images included.

A batch is (B, 2, P, P) float32: the real and imaginary parts as two channels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class PatchSampler:
    """Draws augmented complex patches from a list of 2-D magnitude slices.

    slices: 2-D float arrays (H_i, W_i), magnitudes scaled to about [0, 1] (any sizes);
    patch: P; p_real: probability of a real image (phase 0); p_const: of a constant phase;
    otherwise the phase is phi0 + a linear ramp + a smooth random field (see ``phase``).
    ``scale``: the range of the random intensity factor.  Deterministic for a given
    generator (training resumes exactly).
    """

    def __init__(self, slices: list, patch: int = 64, p_real: float = 0.1,
                 p_const: float = 0.15, scale=(0.6, 1.2), margin: int = 16):
        if not slices:
            raise ValueError("no slices to draw patches from")
        self.patch, self.p_real, self.p_const, self.scale = patch, p_real, p_const, scale
        self.slices = []
        for s in slices:  # pad with background so patches also see the object's edges
            s = np.asarray(s, dtype=np.float32)
            ph, pw = max(margin, (patch - s.shape[0] + 1) // 2), max(margin, (patch - s.shape[1] + 1) // 2)
            self.slices.append(torch.from_numpy(np.pad(s, ((ph, ph), (pw, pw)))))

    def phase(self, b: int, g: torch.Generator, p: int | None = None) -> Tensor:
        """(B, P, P) smooth random phase maps in radians."""
        p = p or self.patch
        u = torch.linspace(-0.5, 0.5, p)
        phi0 = 2 * math.pi * torch.rand(b, 1, 1, generator=g)
        grad = torch.randn(b, 2, 1, 1, generator=g) * 1.5  # radians across a patch
        ramp = grad[:, 0] * u.view(1, p, 1) + grad[:, 1] * u.view(1, 1, p)
        amp = torch.rand(b, 1, 1, 1, generator=g)
        field = F.interpolate(torch.randn(b, 1, 4, 4, generator=g) * amp, size=(p, p),
                              mode="bicubic", align_corners=True)[:, 0]
        phi = phi0 + ramp + field
        kind = torch.rand(b, generator=g)
        phi = torch.where((kind < self.p_const + self.p_real).view(-1, 1, 1), phi0.expand(b, p, p), phi)
        return torch.where((kind < self.p_real).view(-1, 1, 1), torch.zeros_like(phi), phi)

    def __call__(self, b: int, g: torch.Generator, size: int | None = None) -> Tensor:
        """A batch (B, 2, P, P): real and imaginary parts of augmented patches (P = size)."""
        p = size or self.patch
        out = torch.empty(b, p, p)
        idx = torch.randint(len(self.slices), (b,), generator=g)
        for n, i in enumerate(idx.tolist()):
            s = self.slices[i]
            if min(s.shape) < p:
                s = F.pad(s, (0, max(0, p - s.shape[1]), 0, max(0, p - s.shape[0])))
            r = int(torch.randint(s.shape[0] - p + 1, (1,), generator=g))
            c = int(torch.randint(s.shape[1] - p + 1, (1,), generator=g))
            q = s[r:r + p, c:c + p]
            k = int(torch.randint(4, (1,), generator=g))
            if bool(torch.rand(1, generator=g) < 0.5):
                q = q.flip(1)
            out[n] = torch.rot90(q, k, (0, 1))
        lo, hi = self.scale
        out = out * (lo + (hi - lo) * torch.rand(b, 1, 1, generator=g))
        z = torch.polar(out, self.phase(b, g, p))
        return torch.stack([z.real, z.imag], 1).contiguous()
