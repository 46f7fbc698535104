"""Forward operators: adjointness, pseudo-inverse, projection, and the consistency steps on them.

Every case of CASES goes through the same generic checks (float64, batch 2, tiny images):
Re<A x, y> = <x, A^T y>; A A^+ A = A; P P = P; <P x, z> = <x, P z>; the Projection and
GradientStep consistency steps are non-expansive (same noise from identically seeded
generators) and the projection at b = 0 reproduces y; dtype and shape are kept; wrong shapes
raise ValueError; where the operator has an SVD (its ``svd()``, ``peers.spectral``), V is
orthonormal and V diag(s^2) V^H equals the dense A^T A.  The proximal step (``Prox``) equals a
dense solve and is firmly non-expansive.  Exact operators reach ~1e-15; the tolerance 1e-6 on
pseudo-inverse identities is set by the CG pseudo-inverse of the multi-coil case.  The last
case, ``RowBlur``, is an operator defined in a test file only (``test_toy_operator``).
"""

import math

import numpy as np
import pytest
import torch

from ccdf import peers
from ccdf.consistency import ConjugateGradient, GradientStep, Projection, Prox
from ccdf.operators import (
    MASKS,
    MRI,
    Blur,
    Inpainting,
    SuperResolution,
    birdcage_maps,
    box_mask,
    centered,
    centre_lines,
    gaussian1d,
    make_operator,
    mask_from_array,
    random1d,
    random_mask,
    uniform1d,
    uniform_kernel,
    upsample_bicubic,
    vd2d,
    zero_filled,
)
from test_toy_operator import RowBlur

B = 2
TOL = 1e-6


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _array_mask():
    yy, xx = np.mgrid[:16, :16]
    return ((yy + 2 * xx) % 5 != 0).astype(np.float64) * 0.9 + 0.05  # values in [0.05, 0.95]


CASES = [  # (id, factory) -- every factory returns a LinearOperator on tiny images
    ("sr-avg-x2", lambda: SuperResolution(2, (1, 16, 16))),
    ("sr-avg-x2-rgb", lambda: SuperResolution(2, (3, 16, 16))),
    ("sr-avg-x4", lambda: SuperResolution(4, (1, 16, 16))),
    ("sr-avg-x8", lambda: SuperResolution(8, (1, 16, 16))),
    ("sr-avg-x16", lambda: SuperResolution(16, (1, 32, 32))),
    ("sr-bicubic-x2", lambda: SuperResolution(2, (1, 16, 16), kernel="bicubic")),
    ("sr-bicubic-x4", lambda: make_operator("sr", (1, 16, 16), factor=4, kernel="bicubic")),
    ("inpaint-box", lambda: make_operator("inpaint", (1, 16, 16), mask="box")),
    ("inpaint-random", lambda: make_operator("inpaint", (1, 16, 16), mask="random:0.5", seed=3)),
    ("inpaint-array", lambda: Inpainting(mask_from_array(_array_mask(), (1, 16, 16)))),
    ("mri-real-uniform1d", lambda: MRI(uniform1d(16, 16, 4))),
    ("mri-real-gaussian1d", lambda: make_operator("mri", (1, 16, 16), pattern="gaussian1d",
                                                  accel=4, seed=1)),
    ("mri-real-random1d", lambda: MRI(random1d(16, 16, 4, generator=_gen(4)))),
    ("mri-real-vd2d", lambda: MRI(vd2d(16, 16, 4, _gen(2)))),
    ("mri-complex-uniform1d", lambda: MRI(uniform1d(16, 16, 4), complex_image=True)),
    ("mri-complex-phase", lambda: MRI(uniform1d(16, 12, 4), complex_image=True,
                                      phase=torch.randn(16, 12, generator=_gen(5)))),
    # accel 2: 4 birdcage coils resolve 2-fold aliasing well (CG converges in tens of steps)
    ("mri-multicoil", lambda: make_operator("mri", (1, 16, 16), pattern="uniform1d", accel=2,
                                            acs=2, coils=4)),
    # circular blurs on 8x8 (the SVD check builds their dense matrices)
    ("deblur-gaussian", lambda: make_operator("deblur", (1, 8, 8), kernel="gaussian",
                                              kernel_sigma=1.0)),
    ("deblur-uniform4", lambda: Blur(uniform_kernel(4), (1, 8, 8))),   # exact zeros in K
    ("deblur-motion-rgb", lambda: make_operator("deblur", (3, 8, 8), kernel="motion",
                                                kernel_size=5, seed=1)),
    ("deblur-gaussian-8x12", lambda: make_operator("deblur", (1, 8, 12), kernel_sigma=0.8,
                                                   kernel_size=4)),
    # ESPIRiT maps (sigpy) estimated from the k-space of a phantom: zero outside the object
    ("mri-multicoil-espirit", lambda: MRI(uniform1d(16, 16, 2), complex_image=True,
                                          coils=_espirit_maps(8, 16))),
    # given maps, one set per image of the batch (as per-slice maps of a volume)
    ("mri-multicoil-per-image", lambda: MRI(uniform1d(16, 16, 2), complex_image=True,
                                            coils=torch.stack([birdcage_maps(4, 16, 16, r)
                                                               for r in (1.5, 2.0)]))),
    ("toy-row-blur", lambda: RowBlur((2, 6, 8))),   # defined in test_toy_operator.py only
]


def _espirit_maps(ncoil, n):
    from ccdf.operators.coils import espirit_maps

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    img = ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 <= 1).double() * torch.polar(
        torch.ones(n, n, dtype=torch.float64), 0.5 * xx.double())
    coil = birdcage_maps(ncoil, n, n) * img
    k = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(coil, dim=(-2, -1)), norm="ortho"),
                           dim=(-2, -1))
    return torch.from_numpy(espirit_maps(k.numpy())).to(torch.complex128)


IDS = [c[0] for c in CASES]
FACTORIES = [c[1] for c in CASES]
_OPS = {}



@pytest.fixture(params=FACTORIES, ids=IDS)
def op(request):
    key = request.param
    if key not in _OPS:
        _OPS[key] = key()
    return _OPS[key]


def rand_x(op, g, dtype=torch.float64):
    shape = (B, *op.image_shape)
    x = torch.randn(shape, generator=g, dtype=dtype)
    if op.complex_image:
        x = torch.complex(x, torch.randn(shape, generator=g, dtype=dtype))
    return x


def rand_y(op, g, dtype=torch.float64):
    """A valid measurement: A(random) plus random values on the mask (if the operator has one)."""
    y = op.A(rand_x(op, g, dtype))
    r = torch.randn(y.shape, generator=g, dtype=dtype)
    if y.is_complex():
        r = torch.complex(r, torch.randn(y.shape, generator=g, dtype=dtype))
    if hasattr(op, "mask"):
        r = r * op.mask
    return y + r


def inner(u, v):
    return float((u.conj() * v).real.sum())


def rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


# ------------------------------------------------------------------ generic checks
def test_adjoint(op):
    g = _gen(0)
    x, y = rand_x(op, g), rand_y(op, g)
    assert inner(op.A(x), y) == pytest.approx(inner(x, op.A_adjoint(y)), rel=1e-8)


def test_pinv_identity(op):
    ax = op.A(rand_x(op, _gen(1)))
    assert rel(op.A(op.A_pinv(ax)), ax) < TOL


def test_projection_idempotent(op):
    px = op.project(rand_x(op, _gen(2)))
    assert rel(op.project(px), px) < TOL


def test_projection_symmetric(op):
    g = _gen(3)
    x, z = rand_x(op, g), rand_x(op, g)
    assert inner(op.project(x), z) == pytest.approx(inner(x, op.project(z)), rel=TOL)


@pytest.mark.parametrize("a,b", [(0.8, 0.6), (1.0, 0.0)])
@pytest.mark.parametrize("step", [Projection, GradientStep, Prox])
def test_consistency_nonexpansive(op, step, a, b):
    g = _gen(4)
    y = op.A(rand_x(op, g))
    x1, x2 = rand_x(op, g), rand_x(op, g)
    c = step(op, y)
    d = torch.linalg.vector_norm(c(x1, a, b, _gen(9)) - c(x2, a, b, _gen(9)))
    assert float(d) <= float(torch.linalg.vector_norm(x1 - x2)) * (1 + TOL)


def _cg(op, y, **kw):
    return ConjugateGradient(op, y, **{"iters": 300, "tol": 1e-13, **kw})


def test_cg_consistency_converged_is_the_projection(op):
    """CG on the data term from x0, run to convergence: x0 + A^+ (y - A x0) (DDS's step)."""
    g = _gen(10)
    y, x0 = op.A(rand_x(op, g)), rand_x(op, g)
    assert rel(_cg(op, y)(x0), x0 + op.A_pinv(y - op.A(x0))) < TOL
    assert rel(op.A(_cg(op, y)(x0)), y) < TOL


@pytest.mark.parametrize("sigma_y,a,b", [(0.0, 1.0, 0.0), (0.1, 0.8, 0.6)])
def test_cg_consistency_nonexpansive_when_converged(op, sigma_y, a, b):
    g = _gen(11)
    y = op.A(rand_x(op, g))
    x1, x2 = rand_x(op, g), rand_x(op, g)
    c = _cg(op, y, sigma_y=sigma_y)
    d = torch.linalg.vector_norm(c(x1, a, b) - c(x2, a, b))
    assert float(d) <= float(torch.linalg.vector_norm(x1 - x2)) * (1 + TOL)


@pytest.mark.parametrize("iters", [1, 2, 5])
def test_cg_consistency_few_iterations_never_moves_away_from_a_solution(op, iters):
    """With M iterations the step is not linear, but CG's error decreases monotonically
    (Hestenes & Stiefel): ||c(x0) - x*|| <= ||x0 - x*|| for every x* with A x* = y."""
    g = _gen(12)
    x_star = rand_x(op, g)
    y = op.A(x_star)
    c = ConjugateGradient(op, y, iters=iters)
    for _ in range(3):
        x0 = rand_x(op, g)
        assert float(torch.linalg.vector_norm(c(x0) - x_star)) <= \
            float(torch.linalg.vector_norm(x0 - x_star)) * (1 + 1e-9)


def test_projection_step_hits_measurement(op):
    g = _gen(5)
    y = op.A(rand_x(op, g))
    x = Projection(op, y)(rand_x(op, g), 1.0, 0.0, _gen(6))
    assert rel(op.A(x), y) < TOL


def test_float32_dtype_and_shape(op):
    g = _gen(6)
    x, y = rand_x(op, g, torch.float32), op.A(rand_x(op, g, torch.float32))
    def real_dtype(t):
        return t.real.dtype if t.is_complex() else t.dtype

    assert real_dtype(y) == torch.float32
    for out in (op.A_adjoint(y), op.A_pinv(y), op.project(x), Projection(op, y)(x, 0.8, 0.6, g),
                GradientStep(op, y)(x, 0.8, 0.6, g), Prox(op, y, 0.1)(x, 0.8, 0.6, g),
                ConjugateGradient(op, y)(x, 0.8, 0.6, g)):
        assert out.dtype == x.dtype and out.shape == x.shape


def test_wrong_shape_raises(op):
    c, h, w = op.image_shape
    with pytest.raises(ValueError, match="shape|size"):
        op.A(torch.zeros(B, c, h + 2, w, dtype=torch.float64))
    with pytest.raises(ValueError):
        op.A(torch.zeros(c, h, w, dtype=torch.float64))


def test_start_and_view_are_images(op):
    """The hooks the solvers use: the classic start and the drawing of y are images."""
    y = op.A(rand_x(op, _gen(14)))
    start, view = op.classic_start(y), op.show(y)
    assert start.shape == view.shape == (B, *op.image_shape) and not view.is_complex()
    assert isinstance(op.name, str) and op.name


def _dense_real(op):
    """A as a real matrix (rows: [Re; Im] of complex measurements) for real images."""
    d = math.prod(op.image_shape)
    cols = op.A(torch.eye(d, dtype=torch.float64).reshape(d, *op.image_shape)).reshape(d, -1)
    if cols.is_complex():
        cols = torch.cat([cols.real, cols.imag], 1)
    return cols.T


def test_svd_matches_dense_matrix(op):
    try:
        sp = peers.spectral(op)
    except ValueError:
        pytest.skip("no SVD known for this operator (DDRM refuses it)")
    d = math.prod(op.image_shape)
    basis = torch.eye(d, dtype=torch.float64).reshape(d, *op.image_shape)
    if op.complex_image:
        basis = basis.to(torch.complex128)
    vt = sp.Vt(basis).reshape(d, d).T.to(torch.complex128)       # column j = V^T e_j
    assert torch.allclose(vt.conj().T @ vt, torch.eye(d, dtype=torch.complex128), atol=1e-10)
    s2 = sp.s.expand(op.image_shape).reshape(d).to(torch.complex128) ** 2
    gram = vt.conj().T @ (s2[:, None] * vt)                      # V diag(s^2) V^H
    cols = op.A(basis).reshape(d, -1).T.to(torch.complex128)
    ata = cols.conj().T @ cols
    if not op.complex_image:
        assert gram.imag.abs().max() < 1e-10
        gram, ata = gram.real, ata.real
    assert (gram - ata).abs().max() < 1e-10
    if not op.complex_image and isinstance(op, Blur):  # singular values = svdvals of dense A
        want = torch.linalg.svdvals(_dense_real(op))
        got = sp.s.expand(op.image_shape).flatten().sort(descending=True).values
        assert torch.allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("sigma_y,a,b", [(0.05, 0.8, 0.6), (0.3, 0.3, 0.95)])
def test_prox_equals_dense_solve(op, sigma_y, a, b):
    """x = argmin ||y_t - A x||^2 / (2 s^2) + ||x - x'||^2 / 2, s = a sigma_y / b, by a dense
    solve of (A^T A / s^2 + I) x = A^T y_t / s^2 + x' (noiseless y_t: noisy=False)."""
    if op.complex_image:
        pytest.skip("dense real form only for real images")
    g = _gen(10)
    y = op.A(rand_x(op, g))
    x1 = rand_x(op, g)
    got = Prox(op, y, sigma_y, noisy=False)(x1, a, b).reshape(B, -1)
    mat = _dense_real(op)
    s2 = (a * sigma_y / b) ** 2
    yt = a * y.reshape(B, -1)
    if yt.is_complex():
        yt = torch.cat([yt.real, yt.imag], 1)
    lhs = mat.T @ mat / s2 + torch.eye(mat.shape[1], dtype=torch.float64)
    want = torch.linalg.solve(lhs, (yt @ mat / s2 + x1.reshape(B, -1)).T).T
    assert rel(got, want) < TOL


def test_prox_firmly_nonexpansive(op):
    """||T x1 - T x2||^2 <= <T x1 - T x2, x1 - x2> (same y_t noise for both)."""
    g = _gen(11)
    y = op.A(rand_x(op, g))
    x1, x2 = rand_x(op, g), rand_x(op, g)
    c = Prox(op, y, 0.2)
    d = c(x1, 0.8, 0.6, _gen(12)) - c(x2, 0.8, 0.6, _gen(12))
    assert float(d.abs().pow(2).sum()) <= inner(d, x1 - x2) * (1 + TOL) + 1e-12
    assert inner(d, x1 - x2) < float((x1 - x2).abs().pow(2).sum())  # strictly contracts


def test_prox_limits():
    """b = 0 with sigma_y > 0: no data step; noiseless with no floor: the projection."""
    op = make_operator("deblur", (1, 8, 8), kernel_sigma=1.0)
    g = _gen(13)
    y, x = op.A(rand_x(op, g)), rand_x(op, g)
    assert torch.equal(Prox(op, y, 0.1)(x, 1.0, 0.0), x)
    hard = Prox(op, y, 0.0, sigma_floor=0.0)(x, 1.0, 0.0)
    assert rel(hard, Projection(op, y)(x, 1.0, 0.0)) < 1e-9
    with pytest.raises(ValueError, match="sigma_floor"):
        Prox(op, y, 0.0, sigma_floor=-1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_device_follows_input():
    for make in FACTORIES:
        o = make()
        x = rand_x(o, _gen(7), torch.float32).cuda()
        y = o.A(x)
        assert y.device == x.device and o.A_pinv(y).device == x.device
        assert o.project(x).device == x.device


# ------------------------------------------------------------------ super-resolution
def test_avg_pinv_is_replication_and_adjoint_is_scaled():
    op = SuperResolution(4, (1, 8, 8))
    y = torch.arange(4.0, dtype=torch.float64).view(1, 1, 2, 2)
    rep = torch.tensor([[0.0] * 4 + [1.0] * 4] * 4 + [[2.0] * 4 + [3.0] * 4] * 4,
                       dtype=torch.float64).view(1, 1, 8, 8)
    assert torch.equal(op.A_pinv(y), rep)
    assert torch.allclose(op.A_adjoint(y), rep / 16)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, generator=_gen(0))
    px = op.project(x)
    assert torch.allclose(px[..., :4, :4], x[..., :4, :4].mean().expand(4, 4))  # block mean


def test_sr_factor_must_divide():
    with pytest.raises(ValueError, match="does not divide the image size 30x30"):
        SuperResolution(4, (1, 30, 30))
    with pytest.raises(ValueError, match="kernel"):
        SuperResolution(2, (1, 16, 16), kernel="lanczos")


def test_bicubic_matches_antialiased_interpolation_inside():
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64, generator=_gen(0))
    for f in (2, 4):
        ref = torch.nn.functional.interpolate(x, scale_factor=1 / f, mode="bicubic",
                                              antialias=True, align_corners=False)
        y = SuperResolution(f, (1, 32, 32), kernel="bicubic").A(x)
        assert torch.allclose(y[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=1e-12)
    assert upsample_bicubic(y, 4).shape == (1, 1, 32, 32)


# ------------------------------------------------------------------ inpainting
def test_inpaint_masks():
    m = box_mask(32, 32, 0.25)
    assert not m[16, 16] and m[0, 0] and abs((~m).float().mean() - 0.25) < 0.02
    r = random_mask(32, 32, 0.7, _gen(0))
    assert int((~r).sum()) == round(0.7 * 1024)
    assert torch.equal(r, random_mask(32, 32, 0.7, _gen(0)))
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            random_mask(8, 8, bad)


def test_mask_from_array():
    arr = np.zeros((32, 32))
    arr[:, 16:] = 1
    m = mask_from_array(arr, (1, 32, 32))
    assert m.dtype == torch.bool and m[:, 16:].all() and not m[:, :16].any()
    with pytest.raises(ValueError, match="mask is 30x30 but the image is 32x32"):
        mask_from_array(np.ones((30, 30)), (1, 32, 32))


def test_inpaint_mask_from_files(tmp_path):
    from ccdf import io

    arr = np.ones((16, 16))
    arr[4:8, 4:8] = 0
    io.write_npy(tmp_path / "m.npy", arr)
    io.write_image(tmp_path / "m.png", torch.from_numpy(arr)[None])
    for name in ("m.npy", "m.png"):
        op = make_operator("inpaint", (1, 16, 16), mask=str(tmp_path / name))
        assert torch.equal(op.mask, torch.from_numpy(arr) >= 0.5)
    with pytest.raises(ValueError, match="mask is 16x16 but the image is 32x32"):
        make_operator("inpaint", (1, 32, 32), mask=str(tmp_path / "m.npy"))
    with pytest.raises(ValueError, match="FRACTION"):
        make_operator("inpaint", (1, 16, 16), mask="random:lots")


# ------------------------------------------------------------------ MRI
ONE_D = ("uniform1d", "random1d", "gaussian1d")


def _fastmri_centre(w, accel):
    """fastMRI's centre block (centred layout): round(w cf) lines from (w - n + 1) // 2."""
    n = round(w * {4: 0.08, 8: 0.04}[accel])
    return (w - n + 1) // 2 + np.arange(n)


@pytest.mark.parametrize("pattern", ONE_D)
@pytest.mark.parametrize("w", [64, 96, 320, 368])
@pytest.mark.parametrize("accel", [4, 8])
def test_mri_1d_mask_fraction_centre_and_seed(pattern, w, accel):
    h = 40
    mask = MASKS[pattern](h, w, accel, generator=_gen(0))
    assert mask.shape == (h, w) and mask.dtype == torch.bool
    assert (mask == mask[:1]).all() and mask[0, 0]  # whole phase-encode columns, DC sampled
    row = centered(mask)[0].numpy()
    centre = _fastmri_centre(w, accel)
    assert row[centre].all()  # fastMRI's default centre fraction, 0.08 at x4 and 0.04 at x8
    n = int(row.sum())
    # accelerations counted as fastMRI counts them: w / accel lines in all, centre included
    assert n == round(w / accel) if pattern != "uniform1d" else abs(n - w / accel) <= 1
    outer = np.setdiff1d(np.flatnonzero(row), centre)
    assert len(outer) >= round(w / accel) - len(centre) - 1 and len(outer) >= 3
    assert torch.equal(mask, MASKS[pattern](h, w, accel, generator=_gen(0)))
    assert any(not torch.equal(mask, MASKS[pattern](h, w, accel, generator=_gen(s)))
               for s in (1, 2, 3))


@pytest.mark.parametrize("w,accel", [(64, 4), (96, 8), (368, 4)])
def test_uniform1d_is_fastmri_equispaced_fraction(w, accel):
    """The outer lines are round(offset + m a) for fastMRI's adjusted spacing a (an
    independent numpy rendering of ``EquispacedMaskFractionFunc``), for some offset < round(a)."""
    c = len(_fastmri_centre(w, accel))
    a = accel * (c - w) / (c * accel - w)
    refs = []
    for off in range(round(a)):
        ref = np.zeros(w, dtype=bool)
        ref[_fastmri_centre(w, accel)] = True
        ref[np.around(np.arange(off, w - 1, a)).astype(int)] = True
        refs.append(ref)
    for seed in range(4):
        row = centered(uniform1d(8, w, accel, generator=_gen(seed)))[0].numpy()
        assert any(np.array_equal(row, r) for r in refs)
    assert np.array_equal(centered(uniform1d(8, w, accel))[0].numpy(), refs[0])  # offset 0


def test_random1d_columns_have_fastmri_probability():
    """Each outer column is sampled with p = (w / R - c) / (w - c), as in RandomMaskFunc."""
    w, accel, c = 64, 4, 5
    freq = torch.stack([centered(random1d(2, w, accel, generator=_gen(s)))[0]
                        for s in range(300)]).double().mean(0)
    centre = torch.from_numpy(_fastmri_centre(w, accel))
    outer = torch.ones(w, dtype=torch.bool)
    outer[centre] = False
    p = (w / accel - c) / (w - c)
    assert (freq[centre] == 1).all()
    assert float((freq[outer] - p).abs().max()) < 0.09  # 300 draws: sd 0.022


def test_gaussian1d_small_sizes_keep_random_outer_lines():
    """x8 on 64 columns: 3 centre lines (0.04 * 64) and 5 random ones outside, not a low-pass."""
    row = centered(gaussian1d(64, 64, 8, generator=_gen(0)))[0]
    assert int(row.sum()) == 8 and int(row[_fastmri_centre(64, 8)].sum()) == 3


@pytest.mark.parametrize("h,w", [(64, 64), (96, 96), (320, 320), (368, 320)])
def test_vd2d_fraction_centre_and_seed(h, w):
    mask = vd2d(h, w, 6, generator=_gen(0))
    assert mask.shape == (h, w) and mask.dtype == torch.bool and mask[0, 0]
    assert int(mask.sum()) == round(h * w / 6)
    acs = max(2, min(h, w) // 8)
    ky, kx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    assert centered(mask)[(ky**2 + kx**2) <= (acs / 2) ** 2].all()
    assert torch.equal(mask, vd2d(h, w, 6, generator=_gen(0)))
    assert not torch.equal(mask, vd2d(h, w, 6, generator=_gen(1)))


def test_mri_mask_acs_override():
    for pattern in ONE_D:
        row = centered(MASKS[pattern](4, 64, 4, acs=10, generator=_gen(0)))[0]
        assert row[27:37].all() and centre_lines(64, 4, 10) == 10
    assert centre_lines(64, 4, 0.125) == 8 and centre_lines(320, 8) == 13
    assert centre_lines(100, 3) == round(100 * 0.32 / 3)
    assert torch.equal(vd2d(32, 32, 4, generator=_gen(0), acs=0.25),
                       vd2d(32, 32, 4, generator=_gen(0), acs=8))
    m = uniform1d(32, 32, 4, acs=0)  # no centre: every 4th column from DC
    assert torch.equal(m[0], torch.arange(32) % 4 == 0)
    op = make_operator("mri", (1, 64, 64), pattern="random1d", accel=8, acs=6, seed=3)
    assert torch.equal(op.mask, random1d(64, 64, 8, acs=6, generator=_gen(3)))


def test_mri_mask_validation():
    with pytest.raises(ValueError, match="acceleration"):
        uniform1d(32, 32, 1)
    with pytest.raises(ValueError, match="acs"):
        uniform1d(32, 32, 4, acs=32)
    with pytest.raises(ValueError, match="acs"):
        random1d(32, 32, 4, acs=1.5)
    with pytest.raises(ValueError, match="budget"):
        gaussian1d(32, 32, 8, acs=6, generator=_gen(0))
    with pytest.raises(ValueError, match="budget"):
        random1d(32, 32, 8, acs=0.5, generator=_gen(0))
    with pytest.raises(ValueError, match="budget"):
        vd2d(32, 32, 16, acs=10, generator=_gen(0))


def test_real_mri_projection_is_real_symmetrised_mask():
    op = MRI(gaussian1d(16, 16, 4, acs=2, generator=_gen(1)))
    x = torch.randn(B, 1, 16, 16, dtype=torch.float64, generator=_gen(2))
    i, j = torch.arange(16), torch.arange(16)
    m = op.mask
    mflip = m[(-i) % 16][:, (-j) % 16]
    k = torch.fft.fft2(x, norm="ortho")
    expected = torch.fft.ifft2(k * (m | mflip), norm="ortho").real
    px = op.project(x)
    assert not px.is_complex() and px.dtype == torch.float64
    assert torch.allclose(px, expected, atol=1e-12)
    assert torch.allclose(op.A_pinv(op.A(x)), expected, atol=1e-12)
    normal = torch.fft.ifft2(k * (m.double() + mflip.double()) / 2, norm="ortho").real
    assert torch.allclose(op.A_adjoint(op.A(x)), normal, atol=1e-12)  # A^T A = F^H D F
    assert torch.allclose(zero_filled(op, op.A(x)), op.A_adjoint(op.A(x)))
    with pytest.raises(ValueError, match="real images"):
        op.A(torch.complex(x, x))


def test_birdcage_maps():
    s = birdcage_maps(4, 16, 16)
    assert s.shape == (4, 16, 16) and s.is_complex()
    assert torch.allclose((s.abs() ** 2).sum(0), torch.ones(16, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="complex_image"):
        MRI(uniform1d(16, 16, 2), coils=s)


def test_make_operator_errors():
    with pytest.raises(ValueError, match="sr, inpaint, mri, deblur"):
        make_operator("denoise", (1, 16, 16))
    with pytest.raises(ValueError, match="uniform1d, random1d, gaussian1d, vd2d"):
        make_operator("mri", (1, 16, 16), pattern="radial")
    with pytest.raises(ValueError, match="box"):
        make_operator("inpaint", (1, 16, 16), mask="no-such-mask")
    assert math.isclose(make_operator("sr", (1, 16, 16), factor=2).norm(), 0.5, rel_tol=1e-6)


def test_chain_led_by_the_cg_step_acts_on_x0_hat():
    """Chain(ConjugateGradient, RealImage) (reconstruct's real_image with --consistency cg) is
    a step on the Tweedie estimate: the image stays real at its clean level (b = 0)."""
    from ccdf.consistency import Chain, RealImage

    op = MRI(uniform1d(16, 16, 4), complex_image=True)
    g = _gen(13)
    y, x0 = op.A(rand_x(op, g)), rand_x(op, g)
    c = Chain(ConjugateGradient(op, y), RealImage())
    assert c.tweedie and not Chain(Projection(op, y), RealImage()).tweedie
    out = c(x0, 0.8, 0.6, _gen(14))
    assert torch.equal(out.imag, torch.zeros_like(out.imag))
    assert torch.allclose(out, ConjugateGradient(op, y)(x0, 0.8, 0.6).real.to(out.dtype))
