"""The size-independent complex MRI prior and its any-mask start (tiny random models).

Shape in = shape out on 48x48, 64x64, 96x80 and 128x128, real and complex; the complex prior
sees (real, imaginary) as two channels; the unrolled start is exactly the projection when its
UNet is zero; warm starts keep channels untied; patches are deterministic; the phase estimate
recovers a smooth phase; real-image POCS is non-expansive; a mismatched start is refused;
with the start's smooth phase absorbed (``phase="start"``, per image; closer to a smooth
phase than the centre's estimate) the result is a real image times that phase, batched items
and posterior samples each keep their own phase, and the mode is refused where it does not
apply.
"""

import pytest
import torch

from ccdf import datasets, init
from ccdf.consistency import Chain, Projection, RealImage
from ccdf.models.denoiser import evaluate
from ccdf.models.formats import save_model
from ccdf.models.mri_restorer import new_mri_restorer, random_masks
from ccdf.models.restorer import new_restorer
from ccdf.models.train import TrainConfig, make_model, warm_start
from ccdf.operators import MRI, make_operator, uniform1d
from ccdf.operators.mri import centre_block, centre_phase, fft2c, smooth_phase
from ccdf.patches import PatchSampler
from ccdf.reconstruction import Problem, phase_operator, reconstruct, reconstruct_batch

SIZES = [(48, 48), (64, 64), (96, 80), (128, 128)]


def _prior(complex_=True):
    cfg = TrainConfig(image_size=16, channels=2 if complex_ else 1, block_out_channels=(8, 8, 16),
                      patch=16, complex=complex_)
    return make_model(cfg).eval()


def _image(h, w, g, complex_=True):
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    mag = ((yy / 0.8) ** 2 + (xx / 0.6) ** 2 < 1).double() * (0.5 + 0.3 * torch.rand(h, w, generator=g))
    phase = 0.7 * yy + 0.4 * xx if complex_ else torch.zeros(h, w)
    return torch.polar(mag, phase.double())[None, None].to(torch.complex64)


@pytest.mark.parametrize("h,w", SIZES)
def test_complex_prior_any_size(h, w):
    model = _prior()
    assert model.complex and model.any_size and model.image_size is None
    x = torch.randn(2, 1, h, w, dtype=torch.complex64)
    p = evaluate(model, x, torch.full((2,), 0.5, dtype=torch.float64))
    assert p.eps.shape == x.shape and p.eps.is_complex()
    # the two channels are the real and imaginary parts of one call
    raw = model(torch.cat([x.real, x.imag], 1), torch.full((2,), 0.5, dtype=torch.float64))
    assert torch.allclose(p.eps.real, raw[:, :1]) and torch.allclose(p.eps.imag, raw[:, 1:])


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("complex_", [True, False])
def test_reconstruct_any_size_keeps_units(h, w, complex_):
    g = torch.Generator().manual_seed(0)
    x = 250.0 * _image(h, w, g, complex_)       # scanner units, far from [0, 1]
    op = make_operator("mri", (1, h, w), pattern="uniform1d", accel=4, complex_image=True)
    y = op.A(x)
    for phase in ("none", "start"):
        r = reconstruct(_prior(), op, y, init.classic(op, y), t0=0.1, steps=20, phase=phase,
                        generator=torch.Generator().manual_seed(1))
        assert r.x.shape == x.shape and r.x.is_complex()
        assert 50 < float(r.x.abs().max()) < 1000      # not clipped to [0, 1], not rescaled
        if phase == "none":  # data consistency holds in the input's units (hard projection)
            assert torch.allclose(op.A(r.x), y, atol=1e-3 * float(y.abs().max()))


def test_complex_prior_needs_complex_operator():
    op = make_operator("mri", (1, 32, 32), pattern="uniform1d", accel=4)
    x = torch.rand(1, 1, 32, 32)
    with pytest.raises(ValueError, match="complex"):
        reconstruct(_prior(), op, op.A(x), x, t0=0.1, steps=10)


@pytest.mark.parametrize("h,w", SIZES)
def test_unrolled_start_shapes_and_identity(h, w):
    net = new_mri_restorer(TrainConfig(image_size=16, block_out_channels=(8, 8, 16)), iters=2)
    g = torch.Generator().manual_seed(2)
    for complex_ in (True, False):
        x = _image(h, w, g, complex_)
        op = make_operator("mri", (1, h, w), pattern="gaussian1d", accel=6, seed=3,
                           complex_image=complex_)
        y = op.A(x if complex_ else x.real)
        out = init.feed_forward(net, op, y)
        assert out.shape == (1, 1, h, w) and out.is_complex() == complex_
        # a zero UNet leaves the projection: the zero-filled image, exactly consistent
        assert torch.allclose(out, op.A_pinv(y), atol=1e-5)


def test_random_masks_vary_and_keep_centre():
    g = torch.Generator().manual_seed(0)
    m = random_masks(12, 64, 48, g)
    assert m.shape == (12, 64, 48) and m.dtype == torch.bool
    frac = m.float().mean((1, 2))
    assert float(frac.min()) >= 1 / 12 - 0.03 and float(frac.max()) <= 0.5 + 0.03
    assert all(bool(mi[0, 0]) for mi in m)                   # DC always sampled
    assert len({tuple(mi.flatten().tolist()) for mi in m}) == 12


def test_warm_start_keeps_channels_untied(tmp_path):
    old = _prior(complex_=False)
    save_model(old, tmp_path / "old")
    new = _prior(complex_=True)
    warm_start(new.unet, tmp_path / "old")
    w_new, w_old = new.unet.conv_in.weight, old.unet.conv_in.weight
    assert torch.equal(w_new[:, :1], w_old) and not torch.equal(w_new[:, 1:], w_old)
    assert torch.equal(new.unet.conv_out.weight[:1], old.unet.conv_out.weight)


def test_patch_sampler_deterministic_and_complex():
    slices = [torch.rand(40, 70).numpy(), torch.rand(90, 50).numpy()]
    ps = PatchSampler(slices, patch=32)
    a = ps(6, torch.Generator().manual_seed(4))
    b = ps(6, torch.Generator().manual_seed(4))
    assert a.shape == (6, 2, 32, 32) and torch.equal(a, b)
    assert float(a[:, 1].abs().max()) > 0                   # phase present
    assert ps(3, torch.Generator().manual_seed(1), size=48).shape == (3, 2, 48, 48)


def test_native_slices_keep_resolution():
    vol = torch.zeros(30, 40, 50)
    vol[5:25, 8:30, 10:45] = 1.0
    sl = datasets.native_slices(vol.numpy(), axis=2)
    assert sl and sl[0].shape == (22, 20)                   # rot90 of the (20, 22) box, not resized


def test_centre_phase_recovers_smooth_phase():
    h, w = 64, 64
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    mag = torch.exp(-(yy**2 + xx**2) / 0.3).double()
    phase = (0.8 * yy - 0.5 * xx).double()
    x = torch.polar(mag, phase)[None, None]
    mask = uniform1d(h, w, 4, acs=8)
    assert int(centre_block(mask).sum()) == 8 * h
    est = centre_phase(mask, fft2c(x) * mask)
    err = torch.angle(torch.exp(1j * (est[0] - phase)))[mag > 0.2]
    assert float(err.abs().max()) < 0.15 and float(err.abs().mean()) < 0.06


def test_phase_operator_absorbs_phase():
    g = torch.Generator().manual_seed(0)
    phase = torch.randn(16, 16, generator=g)
    op = MRI(uniform1d(16, 16, 4), complex_image=True, phase=phase)
    m = torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)
    plain = MRI(uniform1d(16, 16, 4), complex_image=True)
    e = torch.polar(torch.ones_like(phase), phase).to(torch.complex128)
    assert torch.allclose(op.A(m), plain.A(m * e))


def test_real_image_pocs_is_non_expansive():
    op = MRI(uniform1d(16, 16, 4), complex_image=True, phase=torch.rand(16, 16))
    x = torch.randn(1, 1, 16, 16, dtype=torch.complex128)
    step = Chain(Projection(op, op.A(x.real.to(torch.complex128))), RealImage())
    u = torch.randn(3, 1, 16, 16, dtype=torch.complex128)
    v = torch.randn(3, 1, 16, 16, dtype=torch.complex128)
    su = step(u, 0.8, 0.6, torch.Generator().manual_seed(7))
    sv = step(v, 0.8, 0.6, torch.Generator().manual_seed(7))
    assert float((su - sv).abs().norm()) <= float((u - v).abs().norm()) + 1e-9
    assert float(step(u, 1.0, 0.0).imag.abs().max()) == 0.0


def test_mismatched_start_is_refused():
    cfg = TrainConfig(image_size=32, block_out_channels=(8, 8))
    net = new_restorer(cfg, {"task": "mri", "pattern": "uniform1d", "accel": 4, "acs": None})
    same = make_operator("mri", (1, 32, 32), pattern="uniform1d", accel=4)
    other = make_operator("mri", (1, 32, 32), pattern="gaussian1d", accel=4, seed=2)
    cplx = make_operator("mri", (1, 32, 32), pattern="uniform1d", accel=4, complex_image=True)
    assert net.fits(same) is True
    assert "mask" in net.fits(other)
    assert "complex" in net.fits(cplx)


def test_support_constraint_zeroes_what_no_coil_sees():
    """Cropped coil maps (0 on a band, as ESPIRiT's eigenvalue crop leaves the background): the
    full run from noise must not let the prior fill the band A is blind to; inside, the data
    hold.  The support step is an orthogonal projection: non-expansive."""
    from ccdf.consistency import Support

    g = torch.Generator().manual_seed(0)
    h = w = 32
    maps = torch.randn(4, h, w, generator=g, dtype=torch.complex64)
    maps = maps / (maps.abs() ** 2).sum(0).sqrt()
    maps[:, :, :6] = 0                                       # columns no coil sees
    op = MRI(uniform1d(h, w, 2, acs=8), (1, h, w), complex_image=True, coils=maps, cg_iters=50)
    assert op.support is not None and not op.support[..., :6].any() and op.support[..., 6:].all()
    assert MRI(uniform1d(h, w, 2), (1, h, w), complex_image=True,
               coils=maps[:, :, 6:].repeat(1, 1, 2)[:, :, :w]).support is None
    x = _image(h, w, g)
    y = op.A(x)
    for cons, tol in (("projection", 1e-4), ("cg", 0.05)):  # cg: DDS's 5 iterations a step
        res = reconstruct(_prior(), op, y, op.A_pinv(y), t0=1.0, steps=10, consistency=cons,
                          generator=torch.Generator().manual_seed(1))
        assert res.x[..., :6].abs().max() == 0, cons
        assert (op.A(res.x) - y).abs().max() < tol * y.abs().max(), cons
    s = Support(op.support)
    u, v = (torch.randn(2, 1, h, w, generator=g, dtype=torch.complex64) for _ in range(2))
    assert torch.linalg.vector_norm(s(u, 1.0, 0.0) - s(v, 1.0, 0.0)) <= \
        torch.linalg.vector_norm(u - v) + 1e-6


def _phased_pair(h=32, w=32):
    """Two images of one mask with different smooth phases, their k-space and classic start."""
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    mag = _image(h, w, g, complex_=False).abs().double()
    one = torch.ones_like(yy, dtype=torch.float64)
    x = torch.cat([mag * torch.polar(one, (0.9 * yy - 0.3 * xx).double()),
                   mag * torch.polar(one, (-0.6 * xx + 0.2).double())]).to(torch.complex64)
    op = make_operator("mri", (1, h, w), pattern="uniform1d", accel=4, complex_image=True)
    y = op.A(x)
    return op, x, y, init.classic(op, y)


def test_per_image_phase_maps_batch_and_cut():
    op, x, y, _ = _phased_pair()
    phi = smooth_phase(op.A_pinv(y))                                # (2, H, W)
    both = op.with_phase(phi)
    one = [op.with_phase(phi[i]) for i in range(2)]
    m = torch.randn(2, 1, 32, 32, dtype=torch.complex64)
    assert torch.allclose(both.A(m), torch.cat([one[i].A(m[i:i + 1]) for i in range(2)]))
    assert torch.allclose(both.A_adjoint(y), torch.cat([one[i].A_adjoint(y[i:i + 1])
                                                        for i in range(2)]))
    # K = 3 samples per image lie together: each uses its image's map
    m3 = m.repeat_interleave(3, 0)
    assert torch.allclose(both.A(m3), both.A(m).repeat_interleave(3, 0))
    assert torch.allclose(both.first(1).A(m[:1]), one[0].A(m[:1]))
    assert abs(both.norm() - op.norm()) < 1e-6                      # a phase is unitary
    with pytest.raises(ValueError, match="phase maps for a batch"):
        both.A(torch.randn(3, 1, 32, 32, dtype=torch.complex64))
    with pytest.raises(ValueError, match="phase must be"):
        op.with_phase(torch.zeros(2, 16, 16))


def test_smooth_phase_recovers_smooth_phase_better_than_the_centre():
    """The start's low-passed phase uses every measured line: on a smooth phase it is closer
    than the centre's estimate from a narrow centre (x8 fastMRI-like, 4% of the lines)."""
    h, w = 128, 128
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    mag = (torch.exp(-(yy**2 + xx**2) / 0.3) * (1 + 0.3 * torch.cos(9 * xx))).double()
    phase = (1.2 * yy - 0.8 * xx + 0.5 * torch.sin(2 * xx)).double()
    x = torch.polar(mag, phase)[None, None]
    op = make_operator("mri", (1, h, w), pattern="random1d", accel=8, complex_image=True)
    y = op.A(x)
    def err(est):
        e = torch.angle(torch.exp(1j * (est[0] - phase))).abs()
        return float((e * mag).sum() / mag.sum())
    assert err(smooth_phase(op.A_pinv(y))) < 0.75 * err(centre_phase(op.mask, y))
    assert err(smooth_phase(x)) < 0.02                                # the image's own
    with pytest.raises(ValueError, match="band"):
        smooth_phase(x, band=0)


def test_start_phase_result_is_real_image_times_the_starts_phase():
    op, x, y, x0 = _phased_pair()
    model = _prior()
    r = reconstruct(model, op, y, x0, t0=0.2, steps=20, phase="start", samples=2,
                    generator=torch.Generator().manual_seed(0))
    e = torch.polar(torch.ones(2, 32, 32, dtype=torch.float64), smooth_phase(x0))
    m = r.samples * e[:, None, None].conj().to(r.samples.dtype)     # (B, K, 1, H, W)
    assert float(m.imag.abs().max()) < 1e-4 * float(m.abs().max())  # real in the phased frame
    assert float((m[:, 0] - m[:, 1]).abs().max()) > 0               # two samples, not one
    n = reconstruct(model, op, y, x0, t0=0.2, steps=20, phase="none",
                    generator=torch.Generator().manual_seed(0))
    m1 = n.x * e[:, None].conj().to(n.x.dtype)
    assert float(m1.imag.abs().max()) > 1e-2 * float(m1.abs().max())  # none: complex image
    auto = reconstruct(model, op, y, x0, t0=0.2, steps=20, samples=2,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(auto.x, r.x)                                 # auto = start here


def test_start_phase_batch_equals_items_alone():
    op, x, y, x0 = _phased_pair()
    model = _prior()
    kw = dict(t0=0.2, steps=10, phase="start")
    alone = [reconstruct(model, op, y[i:i + 1], x0[i:i + 1],
                         generator=torch.Generator().manual_seed(i), **kw).x for i in range(2)]
    batch = reconstruct_batch(model, [Problem(op, y[i:i + 1], x0[i:i + 1],
                                              torch.Generator().manual_seed(i))
                                      for i in range(2)], **kw)
    for a, b in zip(alone, batch):
        assert torch.allclose(a, b.x, atol=1e-4 * float(a.abs().max()))


def test_start_phase_refused_where_it_does_not_apply():
    op, x, y, x0 = _phased_pair()
    model = _prior()
    assert phase_operator(model, op, x0, "none") is None
    assert phase_operator(model, op, x0, "auto") is not None
    assert phase_operator(_prior(complex_=False), op, x0, "auto") is None
    with pytest.raises(ValueError, match="not a complex prior"):
        phase_operator(_prior(complex_=False), op, x0, "start")
    coils = MRI(op.mask, complex_image=True, coils=torch.ones(2, 32, 32, dtype=torch.complex64))
    assert phase_operator(model, coils, x0, "auto") is None
    with pytest.raises(ValueError, match="multi-coil"):
        phase_operator(model, coils, x0, "start")
    with pytest.raises(ValueError, match="already has a phase"):
        phase_operator(model, op.with_phase(torch.zeros(32, 32)), x0, "start")
    with pytest.raises(ValueError, match="phase must be one of"):
        phase_operator(model, op, x0, "centre")
