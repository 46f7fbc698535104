"""Automatic t0: the contraction factor it relies on, and the choice itself."""

import pytest
import torch

from ccdf import autot0
from ccdf.models.denoiser import GaussianDenoiser
from ccdf.samplers import solve
from ccdf.schedules import VESchedule, VPSchedule


@pytest.mark.parametrize("schedule", [VPSchedule(), VESchedule(sigma_max=20.0)], ids=["vp", "ve"])
@pytest.mark.parametrize("s2", [0.01, 0.3])
def test_contraction_factor_is_exact_for_gaussian_prior(schedule, s2):
    """Same-noise runs from two starts under N(0, s2 I): the end difference is exactly
    w (x0_hat_1 - x0_hat_2) with w = a^2 s2 / (a^2 s2 + b^2) -- the telescoped product of the
    per-step Jacobians sqrt(alpha_i) v_{i-1} / v_i, v_i = a_i^2 s2 + b_i^2."""
    d, steps, t0 = 16, 60, 0.4
    model = GaussianDenoiser(torch.zeros(d), s2 * torch.eye(d), schedule)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(3, d, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, d, generator=g, dtype=torch.float64)
    r1 = solve(model, x1, steps=steps, t0=t0, sampler="ddpm", generator=torch.Generator().manual_seed(9))
    r2 = solve(model, x2, steps=steps, t0=t0, sampler="ddpm", generator=torch.Generator().manual_seed(9))
    w = autot0.contraction_factor(schedule, t0, s2)
    assert 0 < w < 1
    assert torch.allclose(r1.x - r2.x, w * (x1 - x2), rtol=1e-6, atol=1e-9)


def test_t0_for_error_is_minimal_and_monotone():
    s = VPSchedule()
    prev = 0.0
    for eps0 in (1e-4, 1e-3, 1e-2, 1e-1, 1.0):
        t0 = autot0.t0_for_error(s, 100, eps0, mu=0.25, t0_min=0.01)
        assert t0 >= prev
        prev = t0
        assert autot0.contraction_factor(s, t0, eps0) ** 2 <= 0.25
        if t0 > 0.01:
            assert autot0.contraction_factor(s, t0 - 0.01, eps0) ** 2 > 0.25
    assert autot0.t0_for_error(s, 100, 1e-6, t0_min=0.05) == 0.05  # the floor


def test_choose_t0_uses_saved_error_or_prior_samples():
    from ccdf.models.unet import UNetDenoiser, build_unet
    from ccdf.operators import make_operator

    torch.manual_seed(0)
    model = UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()).eval()
    op = make_operator("sr", (1, 16, 16), factor=4)
    x = torch.rand(2, 1, 16, 16)
    y = op.A(x)
    x0 = torch.nn.functional.interpolate(y, scale_factor=4)
    t_a, why_a = autot0.choose_t0(model, op, y, x0, 50, init_meta={"heldout": {"mse_net": 1e-3}})
    t_b, why_b = autot0.choose_t0(model, op, y, x0, 50, init_meta={"heldout": {"mse_net": 1e-1}})
    assert "held-out" in why_a and t_a < t_b
    cache = {}
    t_c, why_c = autot0.choose_t0(model, op, y, x0, 50, cache=cache)
    assert "prior samples" in why_c and 0 < t_c <= 1 and len(cache) == 1


def test_t0_for_error_with_k_matches_mu_rule_and_grows_with_k():
    s = VPSchedule()
    for eps0 in (1e-3, 3e-2):
        assert autot0.t0_for_error(s, 100, eps0, mu=0.25) == autot0.t0_for_error(s, 100, eps0, k=1.0)
        ts = [autot0.t0_for_error(s, 100, eps0, k=k) for k in (0.1, 1.0, 10.0, 100.0)]
        assert ts == sorted(ts) and ts[0] < ts[-1]


def test_task_and_start_keys():
    assert autot0.task_key({"task": "sr", "factor": 4, "kernel": "avg"}) == "sr factor=4 kernel=avg"
    mri = {"task": "mri", "pattern": "uniform1d", "accel": 4, "acs": None, "seed": 3}
    assert autot0.task_key(mri) == autot0.task_key({**mri, "accel": 4.0, "seed": 0})
    assert autot0.task_key({"task": "sr", "factor": 4}) == "sr factor=4 kernel=avg"  # demo's form
    assert autot0.task_key({"task": "mri", "accel": 4}) == autot0.task_key(mri)
    assert autot0.task_key({"task": "sr", "factor": 2}) != "sr factor=4 kernel=avg"
    assert autot0.start_key(None) == "classic"

    class Net:
        source = "/x/restorer-sr4"

    assert autot0.start_key(Net()) == "net:restorer-sr4"


@pytest.fixture
def tiny_prior(tmp_path):
    from ccdf.models.formats import load_model, save_model
    from ccdf.models.unet import UNetDenoiser, build_unet

    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()), tmp_path / "prior")
    return load_model(tmp_path / "prior")


def test_calibration_round_trip_gives_back_its_best_t0(tiny_prior):
    """calibrate -> save -> find -> choose_t0 on the same images returns the calibrated t0*:
    k is stored in the units choose_t0 uses (eps0 + residual, model space)."""
    from ccdf import init
    from ccdf.operators import make_operator

    model = tiny_prior
    task = {"task": "sr", "factor": 4, "kernel": "avg"}
    op = make_operator("sr", (1, 16, 16), factor=4)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    y = op.A(x)
    x0 = init.classic(op, y)
    grid = (0.05, 0.1, 0.2, 0.5)
    entry = autot0.calibrate(model, op, x, x0, steps=20, grid=grid)
    assert entry["t0_best"] in grid and [p[0] for p in entry["curve"]] == list(grid)
    best = max(p for _, p in entry["curve"])
    assert all(p < best - entry["tol_db"] for t, p in entry["curve"] if t < entry["t0_best"])
    assert entry["eps0"] == pytest.approx(float((x0 - x).pow(2).mean()))
    f = autot0.save_calibration(model, task, "classic", entry)
    assert f == model.source / "autot0.json"
    autot0.save_calibration(model, task, "net:other", {**entry, "k": 1e-9})  # merged, not replaced
    cal = autot0.find_calibration(model, task, "classic")
    assert cal["k"] == pytest.approx(entry["k"])
    assert autot0.find_calibration(model, {"task": "sr", "factor": 2, "kernel": "avg"}, "classic") is None
    t0, why = autot0.choose_t0(model, op, y, x0, 20, calibration=cal)
    assert t0 == pytest.approx(entry["t0_best"]) and "calibrated" in why
    # a start twice as far off (same residual) needs at least as long a path
    t0_far, _ = autot0.choose_t0(model, op, y, x0, 20, calibration={**cal, "eps0": 4 * cal["eps0"]})
    assert t0_far >= t0


def test_calibrate_t0_cli_then_solve_auto_uses_it(tiny_prior, tmp_path, capsys):
    import json

    import numpy as np

    from ccdf import cli

    np.save(tmp_path / "val.npy", np.random.default_rng(0).random((3, 16, 16)).astype(np.float32))
    rc = cli.main(["calibrate-t0", "--task", "sr", "--factor", "4", "--model",
                   str(tiny_prior.source), "--input", str(tmp_path / "val.npy"), "--restorer",
                   "none", "--steps", "10"])
    assert rc == 0
    data = json.loads((tiny_prior.source / "autot0.json").read_text())
    entry = data["sr factor=4 kernel=avg"]["classic"]
    assert 0 < entry["t0_best"] <= 1 and entry["command"].startswith("ccdf calibrate-t0")
    capsys.readouterr()
    rc = cli.main(["solve", "--task", "sr", "--factor", "4", "--input", str(tmp_path / "val.npy"),
                   "--out", str(tmp_path / "o"), "--model", str(tiny_prior.source), "--t0",
                   "auto", "--steps", "10", "--no-progress"])
    assert rc == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert "calibrated" in m["summary"]["t0_reason"]
    # without --steps, auto t0 runs on the grid it was calibrated on (N = 10 here), and a
    # start without a calibration (or a fixed t0) on N = 100
    for t0, want in (("auto", 10), ("0.2", 100)):
        out = tmp_path / f"o-{t0}"
        assert cli.main(["solve", "--task", "sr", "--factor", "4", "--input",
                         str(tmp_path / "val.npy"), "--out", str(out), "--model",
                         str(tiny_prior.source), "--t0", t0, "--no-progress"]) == 0
        assert json.loads((out / "metrics.json").read_text())["summary"]["steps"] == want


def test_calibrate_t0_needs_a_task_and_never_writes_into_the_package(capsys):
    from ccdf import cli, datasets

    with pytest.raises(SystemExit) as e:
        cli.main(["calibrate-t0"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().endswith("the following arguments are required: --task")
    f = datasets.ASSETS / "models" / "default-image" / "autot0.json"
    before = f.read_bytes()
    assert cli.main(["calibrate-t0", "--task", "sr", "--n-images", "1", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "copy it" in err[0] and "--model my-prior" in err[0]
    assert f.read_bytes() == before
