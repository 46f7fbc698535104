"""``ccdf bench`` end to end on a tiny random model: well-formed results, not the numbers."""

import json

import numpy as np
import pytest
import torch

from ccdf import cli
from ccdf.models.formats import save_model, save_restorer
from ccdf.models.restorer import new_restorer
from ccdf.models.train import TrainConfig
from ccdf.models.unet import UNetDenoiser, build_unet
from ccdf.schedules import VPSchedule

ROW_KEYS = {"method", "start", "nfe", "t0", "steps", "psnr", "ssim", "seconds_per_image",
            "n_images"}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()), tmp / "model")
    cfg = TrainConfig(data="t", image_size=16, block_out_channels=(8, 16))
    save_restorer(new_restorer(cfg, {"task": "sr", "factor": 4}), tmp / "restorer")
    np.save(tmp / "x.npy", np.random.default_rng(0).random((3, 16, 16)).astype(np.float32))
    out = tmp / "out"
    rc = cli.main(["bench", "--task", "sr", "--factor", "4", "--model", str(tmp / "model"),
                   "--input", str(tmp / "x.npy"), "--restorer", str(tmp / "restorer"),
                   "--out", str(out), "--quick", "--n-images", "2", "--peers"])
    return rc, out


def test_bench_writes_rows_table_and_plots(bench_run):
    rc, out = bench_run
    assert rc == 0
    rows = json.loads((out / "results.json").read_text())
    assert all(ROW_KEYS <= set(r) for r in rows)
    by = {r["method"]: r for r in rows}
    assert by["full run (t0=1), N=1000"]["nfe"] == 1000
    assert by["full run (t0=1), N=20"]["nfe"] == 20
    assert by["CCDF net start, N=100, t0=0.2"]["nfe"] == 20
    assert by["initial estimate (classic)"]["nfe"] == 0 and "feed-forward net alone" in by
    assert any("auto t0" in m for m in by)
    assert by["DDRM, N=20"]["nfe"] == 20 and by["DiffPIR, N=100"]["nfe"] == 100
    assert by["DiffPIR, N=20"]["nfe"] == 20 and by["DPS, N=100"]["nfe"] == 100  # quick: capped
    assert all(r["n_images"] == 2 and np.isfinite(r["psnr"]) for r in rows)
    # an untrained restorer is the identity: the net alone equals the classic estimate
    assert by["feed-forward net alone"]["psnr"] == pytest.approx(
        by["initial estimate (classic)"]["psnr"], abs=1e-4)
    meta = json.loads((out / "bench.json").read_text())
    th = meta["theory"]
    # the recorded bound is Theorem 1's from the recorded constants, the measured error a real one
    assert th["n_prime"] == 20 and 0 < th["lambda"] < 1 and 0 < th["tau"] <= 1
    assert th["bound"] == pytest.approx(
        th["noise_term"] + th["lambda"] ** (2 * 20) * th["eps_nprime_measured"], rel=1e-6)
    assert 0 < th["measured"] < float("inf") and th["eps_nprime_measured"] > 0
    assert meta["overhead"]["ratio"] > 0 and meta["command"].startswith("ccdf bench")
    assert [p[0] for p in meta["curves"]["classic start, N=100"]] == [0.05, 0.1, 0.2, 0.5, 1.0]
    assert meta["machine"]["torch_threads"] >= 1 and meta["machine"]["cpu_count"] >= 1
    md = (out / "results.md").read_text()
    assert "| method | NFE | t0 | N | PSNR | SSIM |" in md and "Theorem 1" in md
    for png in ("grid.png", "psnr_vs_nfe.png", "psnr_vs_t0.png"):
        assert (out / png).stat().st_size > 1000


def test_bench_bad_input_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # --task is required: argparse gives the usage
        cli.main(["bench", "--out", str(tmp_path)])
    assert e.value.code == 2 and capsys.readouterr().err.strip().endswith(
        "ccdf bench: error: the following arguments are required: --task")
    assert cli.main(["bench", "--task", "sr", "--model", str(tmp_path / "none"),
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ccdf bench: error:")


def test_targets_check_the_interior_optimum_of_each_curve():
    from ccdf.bench_report import targets

    pts = [(0.1, 20.0, 0.5, 30.0), (0.5, 21.0, 0.6, 10.0), (1.0, 22.0, 0.7, 20.0)]
    res = {"task": {"task": "sr"}, "rows": [], "curves": {"classic start, N=100": pts,
                                                           "net start, N=100": [p[:3] + (None,)
                                                                                for p in pts]}}
    met = {name: ok for name, ok, _ in targets(res)}
    assert met["PSNR vs t0 (classic start, N=100) has an interior optimum"] is False  # best at 1
    assert met["FD vs t0 (classic start, N=100) has an interior optimum"] is True     # best at 0.5
    assert "FD vs t0 (net start, N=100) has an interior optimum" not in met          # no FD there


def test_deblur_bench_rows_with_noise(tmp_path):
    """A deblurring bench on a tiny prior: y carries sigma_y noise (seeded), the classic start
    is the Wiener filter at sigma_y, CCDF runs the prox step, the peers run with their
    deblurring settings, and the deblurring targets are checked on the rows."""
    from ccdf import init
    from ccdf.bench import Bench, make_setup
    from ccdf.bench_report import targets

    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()), tmp_path / "model")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 16, 16)).astype(np.float32))
    task = {"task": "deblur", "kernel": "gaussian", "kernel_sigma": 1.0, "kernel_size": None}
    s = make_setup(task, str(tmp_path / "model"), str(tmp_path / "x.npy"), restorer="none",
                   sigma_y=0.05, seed=3)
    clean = s.op.A(s.x)
    assert 0.03 < float((s.y - clean).std()) < 0.07 and "sigma_y=0.05" in s.name
    assert torch.equal(s.starts["classic"], init.classic(s.op, s.y, 0.05))
    assert torch.equal(make_setup(task, str(tmp_path / "model"), str(tmp_path / "x.npy"),
                                  restorer="none", sigma_y=0.05, seed=3).y, s.y)
    b = Bench(s, 0, log=lambda m: None, consistency="prox")
    b.initial()
    b.full_runs(steps=(20,))
    b.ccdf("CCDF classic start, N=100, t0=0.2", "classic", 0.2, 100)
    from ccdf import peers

    for name, label in (("ddrm", "DDRM"), ("diffpir", "DiffPIR"), ("dps", "DPS")):
        xh, nfe = peers.run_peer(name, s.model, s.op, s.y, steps=20, sigma_y=s.sigma_y,
                                 generator=b.gen())
        b.add(f"{label}, N=20", xh, nfe, 1.0, steps=20)
    by = {r["method"]: r for r in b.rows}
    assert by["CCDF classic start, N=100, t0=0.2"]["nfe"] == 20
    assert all(np.isfinite(r["psnr"]) and r["seconds_per_image"] >= 0 for r in b.rows)
    met = {name for name, _, _ in targets({"task": task, "rows": b.rows})}
    assert {"CCDF (<= 20 NFE) >= the Wiener start + 1 dB", "CCDF (<= 20 NFE) >= full run N=20",
            "CCDF (<= 20 NFE) >= DDRM at 20 NFE", "CCDF (<= 20 NFE) >= DiffPIR at 20 NFE"} <= met


def test_multicoil_bench_rows(tmp_path):
    """``--coils``: ESPIRiT maps, the CG-SENSE start, zero-filled RSS, compressed sensing with
    lambda from validation slices, and CCDF with each consistency (tiny: 24 x 24, 4 coils)."""
    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(24, 1, (8, 16)), VPSchedule()), tmp_path / "model")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :24] / 23 * 2 - 1
    disc = ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 <= 1).astype(np.float32)
    for name in ("x", "val"):
        np.save(tmp_path / f"{name}.npy", disc * rng.random((2, 24, 24)).astype(np.float32))
    out = tmp_path / "out"
    assert cli.main(["bench", "--task", "mri", "--accel", "2", "--acs", "8", "--coils", "4",
                     "--model", str(tmp_path / "model"), "--input", str(tmp_path / "x.npy"),
                     "--val", str(tmp_path / "val.npy"), "--cs-iters", "10", "--out", str(out),
                     "--quick", "--n-images", "2", "--threads", "1", "--no-checks"]) == 0
    by = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    assert by["initial estimate (classic)"]["nfe"] == 0 and "zero-filled RSS" in by
    cs = [m for m in by if m.startswith("CS ")]
    assert len(cs) == 2
    assert by["full run (t0=1), N=100"]["nfe"] == 100      # quick multi-coil: no N = 1000
    for tag in ("", ", gradient", ", cg"):
        assert by[f"CCDF classic start, N=100, t0=0.2{tag}"]["nfe"] == 20
    meta = json.loads((out / "bench.json").read_text())
    starts = ("classic", "net") if "feed-forward net alone" in by else ("classic",)
    # the compressed-sensing start: the CS row better on validation, swept like the others
    best = max(meta["classical"], key=lambda k: dict(meta["classical"][k]["table"])[
        meta["classical"][k]["lambda"]])
    assert [r.get("cs_kind") for r in by.values() if r["start"] == "cs" and r["nfe"] == 0] == [best]
    starts += ("cs",)
    assert set(meta["curves"]) == {f"{s}{c} start, N=100" for s in starts   # net: restorer-mri
                                   for c in ("", "+gradient", "+cg")}
    assert meta["consistency"] == ["projection", "gradient", "cg"]
    assert set(meta["classical"]) == {"tv", "l1wavelet"}
    md = (out / "results.md").read_text()
    assert "best compressed sensing + 1 dB" in md and "SENSE start + 3 dB" in md


def test_single_coil_bench_absorbs_the_centre_phase(tmp_path):
    """A complex prior on single-coil complex slices: the CCDF rows run with the start's phase
    absorbed (--phase auto), the report says so; --phase none runs the complex image and its
    CCDF rows differ, the rows without a prior do not."""
    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(24, 2, (8, 16)), VPSchedule(),
                            meta={"any_size": True, "complex": True}), tmp_path / "model")
    yy, xx = np.mgrid[:24, :24] / 23 * 2 - 1
    disc = ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 <= 1) * np.exp(1j * (0.8 * yy - 0.4 * xx))
    rng = np.random.default_rng(0)
    for name in ("x", "val"):
        np.save(tmp_path / f"{name}.npy", (disc * rng.random((2, 24, 24))).astype(np.complex64))
    rows = {}
    for phase in ("auto", "none"):
        out = tmp_path / phase
        assert cli.main(["bench", "--task", "mri", "--accel", "2", "--acs", "8", "--model",
                         str(tmp_path / "model"), "--input", str(tmp_path / "x.npy"), "--val",
                         str(tmp_path / "val.npy"), "--cs-iters", "5", "--out", str(out),
                         "--quick", "--grid", "0.2", "--full-steps", "10", "--restorer", "none",
                         "--threads", "1", "--no-checks", "--phase", phase]) == 0
        meta = json.loads((out / "bench.json").read_text())
        assert (meta["phase"], meta["phase_used"]) == (phase, "start" if phase == "auto"
                                                       else "none")
        md = (out / "results.md").read_text()
        assert ("phase absorbed in the operator" in md) == (phase == "auto")
        rows[phase] = {r["method"]: r["psnr"] for r in json.loads((out / "results.json")
                                                                   .read_text())}
    ccdf = "CCDF classic start, N=100, t0=0.2"
    assert rows["auto"][ccdf] != rows["none"][ccdf]
    assert rows["auto"]["zero-filled"] == rows["none"]["zero-filled"]


def test_multicoil_measurement_noise_is_added(tmp_path):
    """--sigma-y with --coils: white complex noise on the measured k-space of every coil, added
    once (the bench's setup adds no noise of its own on top)."""
    from ccdf import multicoil
    from ccdf.bench import make_setup

    yy, xx = np.mgrid[:24, :24] / 23 * 2 - 1
    x = torch.from_numpy(((xx / 0.8) ** 2 + (yy / 0.9) ** 2 <= 1).astype(np.float32))[None, None]
    task = {"task": "mri", "pattern": "uniform1d", "accel": 2, "acs": 8, "coils": 4}
    op, y0, _ = multicoil.problem(x, task)
    _, y1, _ = multicoil.problem(x, task, sigma_y=0.05, seed=3)
    d = (y1 - y0)[..., op.mask]
    assert float(d.real.std()) == pytest.approx(0.05, rel=0.1)
    assert float((y1 - y0)[..., ~op.mask].abs().max()) == 0
    np.save(tmp_path / "x.npy", x[:, 0].numpy())
    s = make_setup(task, "none", str(tmp_path / "x.npy"), restorer="none", extras=False,
                   sigma_y=0.05, seed=3)
    assert torch.equal(s.y, y1)


def test_full_run_target_compares_the_images_both_ran_on():
    """A 1000-step full run on the first k images is compared with CCDF's mean over those k
    images (``psnr_each``), not with its mean over the whole set."""
    from ccdf.bench_report import against_full_run

    ccdf = {"method": "CCDF classic start, N=100, t0=0.2", "nfe": 20, "psnr": 31.0,
            "psnr_each": [28.0, 34.0]}
    sub = {"method": "full run (t0=1), N=1000, first 1 image(s)", "nfe": 1000, "psnr": 28.5}
    name, ok, text = against_full_run(ccdf, [sub, ccdf])
    assert not ok and "28.00" in text and "first 1 image" in text   # 28.0 < 28.5 - 0.3
    whole = {**sub, "method": "full run (t0=1), N=1000"}
    assert against_full_run(ccdf, [whole, ccdf])[1] is True         # 31.0 >= 28.2
    assert against_full_run({**ccdf, "psnr_each": None}, [sub]) is None
    assert against_full_run(ccdf, [ccdf]) is None


def test_a_run_already_made_is_not_repeated(tmp_path, monkeypatch):
    """Every bench run has the same seed: an auto-t0 row on a swept t0 reuses that run (same
    images, NFE and time under its own label); another t0, N or sample count runs anew."""
    from ccdf import bench
    from ccdf.bench import Bench, make_setup

    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()), tmp_path / "model")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 16, 16)).astype(np.float32))
    s = make_setup({"task": "sr", "factor": 4}, str(tmp_path / "model"), str(tmp_path / "x.npy"),
                   restorer="none")
    calls = []
    real = bench.reconstruct
    monkeypatch.setattr(bench, "reconstruct", lambda *a, **k: calls.append(k) or real(*a, **k))
    b = Bench(s, 0, log=lambda m: None)
    first = b.ccdf("CCDF classic start, N=20, t0=0.5", "classic", 0.5, 20)
    again = b.ccdf("CCDF classic start, N=20, auto t0=0.50", "classic", 0.5, 20)
    assert len(calls) == 1 and torch.equal(b.images[first["method"]], b.images[again["method"]])
    assert {k: v for k, v in first.items() if k != "method"} == \
        {k: v for k, v in again.items() if k != "method"}
    b.ccdf("t0 0.25", "classic", 0.25, 20)
    b.ccdf("N 40", "classic", 0.5, 40)
    b.ccdf("mean of 2", "classic", 0.5, 20, samples=2)
    assert len(calls) == 4
    fresh = Bench(s, 0, log=lambda m: None).ccdf("x", "classic", 0.5, 20)
    assert fresh["psnr"] == first["psnr"]  # the reuse gives what a new run gives
