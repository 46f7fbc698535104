"""Compressed-sensing baselines (``ccdf.classical``, sigpy) and their rows in ``ccdf bench``."""

import json

import numpy as np
import pytest
import torch

from ccdf import cli, metrics
from ccdf.operators import MRI, birdcage_maps, make_operator, random1d

sp = pytest.importorskip("sigpy")
import sigpy.mri.app  # noqa: E402

from ccdf import classical  # noqa: E402


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _phantom(h=32, w=32):
    return torch.from_numpy(np.abs(sp.shepp_logan((h, w))))


@pytest.mark.parametrize("h,w", [(16, 16), (15, 18)])
def test_to_centred_is_sigpys_centred_fft(h, w):
    x = np.random.default_rng(0).standard_normal((2, h, w)) + 1j
    k_ours = np.fft.fft2(x, norm="ortho")
    np.testing.assert_allclose(classical.to_centred(k_ours), sp.fft(x, axes=(-2, -1), center=True),
                               atol=1e-12)


@pytest.mark.parametrize("kind", classical.KINDS)
def test_cs_recon_is_sigpy_on_the_same_problem(kind):
    """cs_recon on ccdf's layout equals sigpy's app called directly in sigpy's layout."""
    x = _phantom(24, 20).to(torch.complex128)
    mask = random1d(24, 20, 3, generator=_gen(0))
    ours = classical.cs_recon(torch.fft.fft2(x, norm="ortho") * mask, mask, None, kind, 3e-3, 20)
    m_c = np.fft.fftshift(mask.numpy()).astype(float)
    y_c = sp.fft(x.numpy(), center=True) * m_c
    app = sigpy.mri.app.TotalVariationRecon if kind == "tv" else sigpy.mri.app.L1WaveletRecon
    steps = {"sigma": 1 / 9, "tau": 1.0} if kind == "tv" else {"alpha": 1.0}
    ref = app(y_c[None], np.ones((1, 24, 20), complex), 3e-3, weights=m_c, max_iter=20,
              show_pbar=False, **steps).run()
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-9)
    # with lambda = 0 and every line sampled, the L1-wavelet solver returns x itself
    full = torch.ones(24, 20, dtype=torch.bool)
    if kind == "l1wavelet":
        back = classical.cs_recon(torch.fft.fft2(x, norm="ortho"), full, None, kind, 0.0, 3)
        assert torch.allclose(back, x, atol=1e-10)


def test_multicoil_and_real_images():
    x = _phantom(16, 16)
    maps = birdcage_maps(4, 16, 16)
    op = make_operator("mri", (1, 16, 16), pattern="uniform1d", accel=2, acs=2, coils=maps)
    xh = classical.cs_reconstruct(op, op.A(x[None, None]), "tv", 1e-3, 30)
    assert xh.shape == (1, 1, 16, 16) and xh.is_complex()
    # lambda is relative to the image scale s: the same solution as sigpy's at lambda s
    s = float(torch.quantile(op.A_adjoint(op.A(x[None, None])).abs().double(), 0.995))
    assert s == pytest.approx(float(classical.image_scales(op, op.A(x[None, None]))[0]))
    y_c = sp.fft(maps.numpy() * x.numpy(), axes=(-2, -1), center=True)
    m_c = np.fft.fftshift(op.mask.numpy()).astype(float)
    ref = sigpy.mri.app.TotalVariationRecon(y_c * m_c, maps.numpy(), 1e-3 * s, weights=m_c,
                                            max_iter=30, show_pbar=False, sigma=1 / 9,
                                            tau=1.0).run()
    np.testing.assert_allclose(xh[0, 0].numpy(), ref, atol=1e-8)
    # real images: the Hermitian-completed k-space on M | Mflip; the solution is real
    op_r = MRI(random1d(16, 16, 4, generator=_gen(1)))
    y = op_r.A(x[None, None])
    k = torch.fft.fft2(op_r.A_pinv(y), norm="ortho")[0, 0]
    s = float(classical.image_scales(op_r, y)[0])
    z = classical.cs_recon(k, op_r.mask_sym, None, "tv", 1e-2 * s, 50)
    assert float(z.imag.abs().max()) < 1e-6 * float(z.abs().max())
    xr = classical.cs_reconstruct(op_r, y, "tv", 1e-2, 50)
    assert not xr.is_complex() and torch.allclose(xr[0, 0], z.real)
    # units do not change the solution: the same data times 1000 give 1000 times the image
    x1000 = classical.cs_reconstruct(op_r, 1000 * y, "tv", 1e-2, 50)
    assert torch.allclose(x1000, 1000 * xr, rtol=1e-4, atol=1e-4 * float(1000 * xr.abs().max()))


def test_tv_beats_zero_filling_on_a_phantom_and_choose_lambda_uses_the_grid():
    x = torch.stack([_phantom(32, 32), _phantom(32, 32).flip(1)])[:, None]
    op = make_operator("mri", (1, 32, 32), pattern="random1d", accel=3, seed=2)
    y = op.A(x)
    zf = metrics.psnr(op.A_pinv(y), x).mean()
    lam, table = classical.choose_lambda(op, y, x, "tv", grid=(1e-4, 1e-2), iters=60)
    assert [t[0] for t in table] == [1e-4, 1e-2] and lam == max(table, key=lambda t: t[1])[0]
    assert max(p for _, p in table) > float(zf) + 1.0
    # the default: the decades, then the half decades either side of the best
    lam, table = classical.choose_lambda(op, y[:1], x[:1], "l1wavelet", iters=5)
    psnr = dict(table)
    assert set(classical.DECADES) <= set(psnr) and len(psnr) >= 7
    top = max(classical.DECADES, key=psnr.get)
    assert {float(f"{top * f:.3g}") for f in (10 ** -0.5, 10 ** 0.5)} <= set(psnr)
    assert psnr[lam] == max(psnr.values())
    assert min(psnr) < lam < max(psnr) or lam in classical.LAMBDA_RANGE


def test_choose_lambda_extends_the_grid_past_its_end(monkeypatch):
    """A best lambda below the decades (1e-6): the grid grows by half decades until the best
    has a worse neighbour on both sides."""
    import math

    x = _phantom(16, 16)[None, None]
    op = make_operator("mri", (1, 16, 16), pattern="uniform1d", accel=2)
    monkeypatch.setattr(classical, "cs_reconstruct",
                        lambda op, y, kind, lam, iters: x * (1 + 0.01 * abs(math.log10(lam) + 6)))
    lam, table = classical.choose_lambda(op, op.A(x), x, "tv")
    lams = [t[0] for t in table]
    assert lam == pytest.approx(1e-6, rel=0.01) and min(lams) < lam < max(lams)


def test_cs_recon_bad_input():
    k = torch.zeros(8, 8, dtype=torch.complex128)
    m = torch.ones(8, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="kind"):
        classical.cs_recon(k, m, kind="tgv")
    with pytest.raises(ValueError, match="lambda"):
        classical.cs_recon(k, m, lam=-1.0)
    with pytest.raises(ValueError, match="mask"):
        classical.cs_recon(k, m[:4])
    with pytest.raises(ValueError, match="maps"):
        classical.cs_recon(torch.zeros(2, 8, 8, dtype=torch.complex128), m)


# ------------------------------------------------------------------ bench rows
def _rows(out):
    return {r["method"]: r for r in json.loads((out / "results.json").read_text())}


def test_bench_classical_rows_real_and_complex(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((3, 16, 16)).astype(np.float32))
    np.save(tmp_path / "v.npy", rng.random((2, 16, 16)).astype(np.float32))
    base = ["bench", "--task", "mri", "--model", "none", "--cs-iters", "5", "--n-images", "2"]
    out = tmp_path / "real"
    assert cli.main(base + ["--input", str(tmp_path / "x.npy"), "--val", str(tmp_path / "v.npy"),
                            "--out", str(out)]) == 0
    by = _rows(out)
    tv = next(r for m, r in by.items() if m.startswith("CS total variation"))
    l1 = next(r for m, r in by.items() if m.startswith("CS L1 wavelet"))
    assert "zero-filled" in by and by["zero-filled"]["n_images"] == 2
    for r in (tv, l1):
        assert r["seconds_per_image"] > 0 and r["n_images"] == 2 and r["lambda"] > 0
        assert f"lambda={r['lambda']:g}" in r["method"] and np.isfinite(r["psnr"])
    meta = json.loads((out / "bench.json").read_text())
    assert meta["classical"]["tv"]["n_val"] == 2 and len(meta["classical"]["tv"]["table"]) >= 7
    assert "## Compressed sensing (sigpy)" in (out / "results.md").read_text()
    assert (out / "grid.png").exists()
    # complex data at 64 pixels (the committed OOD set) with its own validation slices
    out = tmp_path / "complex"
    assert cli.main(base + ["--data", "mri:ood64-complex", "--quick", "--n-images", "1",
                            "--out", str(out)]) == 0
    by = _rows(out)
    assert any(m.startswith("CS total variation") for m in by) and by["zero-filled"]["psnr"] > 5
    assert json.loads((out / "bench.json").read_text())["classical"]["l1wavelet"]["n_val"] == 2
    # no validation set for a plain file: the CS rows are skipped, saying why
    out = tmp_path / "noval"
    assert cli.main(base + ["--input", str(tmp_path / "x.npy"), "--out", str(out)]) == 0
    assert not any(m.startswith("CS ") for m in _rows(out))
    assert "compressed sensing skipped" in capsys.readouterr().out
    # a validation set of another size: one line, exit 2
    assert cli.main(base + ["--data", "mri:ood64", "--val", "mri:val128", "--out",
                            str(tmp_path / "bad")]) == 2
    assert "validation set mri:val128" in capsys.readouterr().err
    # a restorer named on the command line that does not take the data is refused
    from ccdf import datasets

    r4 = datasets.ASSETS / "models" / "restorer-mri4"
    if (r4 / "config.json").exists():
        assert cli.main(base + ["--data", "mri:ood64-complex", "--restorer", str(r4), "--out",
                                str(tmp_path / "bad2")]) == 2
        assert "takes real images" in capsys.readouterr().err


def test_compressed_sensing_start_library_and_solve(tmp_path, capsys):
    """init.CompressedSensing: the clamped CS image, its calibration key, refused off MRI; and
    `ccdf solve --init tv` on a fastMRI-layout file (the calibrated lambda, then --cs-lambda)."""
    from ccdf import autot0, init, io
    from ccdf.models.formats import save_model
    from ccdf.models.unet import UNetDenoiser, build_unet
    from ccdf.schedules import VPSchedule

    x = _phantom(16, 16)[None, None].to(torch.complex64)
    op = make_operator("mri", (1, 16, 16), pattern="uniform1d", accel=4, acs=4,
                       complex_image=True)
    start = init.CompressedSensing("tv", 1e-2, iters=30)
    x0 = init.estimate(start, op, op.A(x))
    assert torch.equal(x0, op.clamp(classical.cs_reconstruct(op, op.A(x), "tv", 1e-2, 30)))
    assert metrics.psnr(x0.abs(), x.abs()) > metrics.psnr(op.A_pinv(op.A(x)).abs(), x.abs())
    assert autot0.start_key(start) == "cs:tv" and start.fits(op) is True
    assert "for MRI" in start.fits(make_operator("sr", (1, 16, 16), factor=4))

    model = tmp_path / "model"
    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()), model)
    img = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    io.write_h5(tmp_path / "in" / "v.h5", kspace=np.fft.fftshift(np.fft.fft2(
        np.fft.ifftshift(img, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)).astype(np.complex64))
    io.write_json(model / "autot0.json", {"mri accel=4.0 pattern=uniform1d": {"cs:tv": {
        "k": 10.0, "eps0": 1e-3, "residual": 0.0, "n_images": 2, "lambda": 0.05}}})
    args = ["solve", "--task", "mri", "--pattern", "uniform1d", "--accel", "4", "--input",
            str(tmp_path / "in"), "--model", str(model), "--steps", "10", "--no-progress",
            "--init", "tv"]
    assert cli.main([*args, "--t0", "0.1", "--out", str(tmp_path / "o1")]) == 0
    assert cli.main([*args, "--t0", "0.1", "--cs-lambda", "0.05", "--out",
                     str(tmp_path / "o2")]) == 0
    assert cli.main([*args, "--t0", "auto", "--out", str(tmp_path / "o4")]) == 0
    import h5py
    for run in ("o1", "o4"):  # the calibration's lambda is the one --cs-lambda gives
        with h5py.File(tmp_path / run / "v.h5") as f1, h5py.File(tmp_path / "o2" / "v.h5") as f2:
            np.testing.assert_allclose(f1["initial_estimate"][()], f2["initial_estimate"][()],
                                       rtol=1e-5, atol=1e-6)
    capsys.readouterr()
    assert cli.main(["solve", "--task", "sr", "--input", str(tmp_path / "in"), "--out",
                     str(tmp_path / "o3"), "--model", str(model), "--init", "tv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--init tv" in err[0] and "mri" in err[0]
    assert not (tmp_path / "o3").exists()
