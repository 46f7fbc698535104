"""A new operator is one class: a test-only operator, defined here and nowhere in the library,
runs through the generic operator checks (one line in ``test_operators.CASES``), CCDF
(``reconstruct``) and the peers (DDRM through its SVD, DiffPIR, DPS with its own step size).

``RowBlur``: each row blurred with the taps (3/4, 1/4) (a two-pixel horizontal motion blur),
only the 'valid' part kept, so the measurement (B, C, H, W - 1) is smaller than the image and A
has a null space (one direction per row).  A x = x D^T with D (W - 1, W) banded (singular values
in [1/2, 1]); its SVD is D's, the same 1-D SVD for every row.
"""

import pytest
import torch

from ccdf import init, peers
from ccdf.models.denoiser import GaussianDenoiser, measurement_to_model
from ccdf.models.unet import UNetDenoiser, build_unet
from ccdf.operators import LinearOperator, Spectral
from ccdf.reconstruction import reconstruct
from ccdf.schedules import VPSchedule

TAPS = (0.75, 0.25)


class RowBlur(LinearOperator):
    """A: (B, C, H, W) -> (B, C, H, W - 1), x -> x D^T (see module)."""

    name = "row blur"
    peer_defaults = {"dps": {"zeta": 0.4}}

    def __init__(self, image_shape):
        self.image_shape = tuple(int(s) for s in image_shape)
        m = self.image_shape[-1] - len(TAPS) + 1
        d = torch.zeros(m, self.image_shape[-1], dtype=torch.float64)
        for j, tap in enumerate(TAPS):
            d[torch.arange(m), torch.arange(m) + j] = tap
        self.D, self.D_pinv = d, torch.linalg.pinv(d)
        self.svd_calls = 0

    def _check_y(self, y):
        want = (*self.image_shape[:2], self.D.shape[0])
        if y.dim() != 4 or tuple(y.shape[1:]) != want:
            raise ValueError(f"measurement shape {tuple(y.shape)} is not (B, {want})")

    @staticmethod
    def _on(m, t):
        return m.to(device=t.device, dtype=t.dtype)

    def A(self, x):
        self.check(x)
        return x @ self._on(self.D, x).T

    def A_adjoint(self, y):
        self._check_y(y)
        return y @ self._on(self.D, y)

    def A_pinv(self, y):
        self._check_y(y)
        return y @ self._on(self.D_pinv, y).T

    def svd(self):
        self.svd_calls += 1
        _, sv, vh = torch.linalg.svd(self.D, full_matrices=True)      # vh (W, W)
        s = torch.zeros(self.D.shape[1], dtype=torch.float64)
        s[: sv.numel()] = sv
        return Spectral(lambda x: x @ self._on(vh, x).T, lambda c: c @ self._on(vh, c), s)


def _unet():
    torch.manual_seed(0)
    return UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()).eval()


def _gaussian():
    """An exact Gaussian prior on 8x8 images (a smooth field plus a little white noise)."""
    d = 64
    idx = torch.arange(8, dtype=torch.float64)
    pos = torch.stack(torch.meshgrid(idx, idx, indexing="ij"), -1).reshape(d, 2)
    eye = torch.eye(d, dtype=torch.float64)
    cov = 0.2 * torch.exp(-torch.cdist(pos, pos) ** 2 / 8) + 1e-2 * eye
    return GaussianDenoiser(0.1 * torch.ones(d, dtype=torch.float64), cov, VPSchedule(),
                            shape=(1, 8, 8))


def _problem(n=2, size=16):
    op = RowBlur((1, size, size))
    x = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(1))
    return op, x, op.A(x)


def _residual(op, x, y):
    return float(torch.linalg.vector_norm((op.A(x) - y).flatten(1), dim=1).max())


def test_defaults_serve_the_library():
    op, x, y = _problem()
    assert y.shape == (2, 1, 16, 15)
    start = init.classic(op, y)                       # the base's clamp(A^+ y)
    assert start.shape == x.shape and torch.equal(start, op.clamp(op.A_pinv(y)))
    assert _residual(op, op.A_pinv(y), y) < 1e-5
    view = op.show(y)                                 # smaller than the image: |A^+ y|
    assert view.shape == x.shape and view.min() >= 0 and view.max() <= 1
    assert op.name == "row blur" and peers.spectral(op).s.shape == (16,)
    with pytest.raises(ValueError, match="shape"):
        op.A(torch.zeros(1, 1, 16, 14))


def test_ccdf_on_a_unet():
    op, x, y = _problem()
    res = reconstruct(_unet(), op, y, init.classic(op, y), t0=0.5, steps=10,
                      generator=torch.Generator().manual_seed(2))
    assert res.x.shape == x.shape and res.x.dtype == torch.float32 and res.nfe == 5
    assert bool(torch.isfinite(res.x).all()) and res.x.min() >= 0 and res.x.max() <= 1


def test_ccdf_comes_closer_from_a_poor_start():
    """On an exact prior, from a constant start, CCDF's projection steps meet the measurement
    and land much nearer the image than the start."""
    model = _gaussian()
    op = RowBlur((1, 8, 8))
    x = ((model.sample(2, torch.Generator().manual_seed(1)) + 1) / 2).clamp(0, 1)
    y = op.A(x)
    start = torch.full_like(x, 0.5)
    res = reconstruct(model, op, y, start, t0=0.5, steps=10,
                      generator=torch.Generator().manual_seed(2))
    assert _residual(op, res.x, y) < 0.1 * _residual(op, start, y)
    assert (res.x - x).pow(2).mean() < 0.2 * (start - x).pow(2).mean()


@pytest.mark.parametrize("name", ["ddrm", "diffpir", "dps"])
def test_peers_run_on_the_new_operator(name):
    op, x, y = _problem()
    out, nfe = peers.run_peer(name, _unet(), op, y, steps=3,
                              generator=torch.Generator().manual_seed(3))
    assert nfe == 3 and out.shape == x.shape and bool(torch.isfinite(out).all())
    assert out.min() >= 0 and out.max() <= 1
    assert (op.svd_calls > 0) == (name in ("ddrm", "diffpir"))   # the SVD where one is used


def test_noiseless_ddrm_and_diffpir_meet_the_measurement_through_the_svd():
    """In model space, DDRM's last update sets every measured SVD coefficient to ybar and
    DiffPIR's data step without a noise floor is a projection: A x = y_m to rounding."""
    op, x, y = _problem()
    model = _unet()
    y_m = measurement_to_model(model, op, y, x)
    start = _residual(op, torch.zeros_like(x), y_m)
    xd, _ = peers.ddrm(model, op, y_m, steps=3, generator=torch.Generator().manual_seed(4))
    assert op.svd_calls == 1 and _residual(op, xd, y_m) < 1e-4 * start
    xp, _ = peers.diffpir(model, op, y_m, steps=3, sigma_floor=0.0,
                          generator=torch.Generator().manual_seed(4))
    assert _residual(op, xp, y_m) < 1e-4 * start


def test_dps_takes_the_operators_step_size_and_reduces_the_residual():
    """DPS's default zeta is the operator's ``peer_defaults``; on an exact Gaussian prior its
    gradient steps bring A x much closer to y than the unconditional chain (zeta = 0)."""
    model = _gaussian()
    op = RowBlur((1, 8, 8))
    y = op.A(model.sample(1, torch.Generator().manual_seed(1))).expand(8, 1, 8, 7)

    def run(**kw):
        return peers.dps(model, op, y, steps=100, generator=torch.Generator().manual_seed(2),
                         **kw)[0]

    xd = run()
    assert torch.equal(xd, run(zeta=0.4))
    assert _residual(op, xd, y) < 0.3 * _residual(op, run(zeta=0.0), y)
