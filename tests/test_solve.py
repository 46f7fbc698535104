"""``ccdf solve`` on a tiny random model: outputs, metrics, per-item seeds, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ccdf import cli, io
from ccdf.models.unet import UNetDenoiser, build_unet, save_model
from ccdf.schedules import VPSchedule


@pytest.fixture()
def setup(tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "model"
    save_model(UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()), model)
    inp = tmp_path / "in"
    g = torch.Generator().manual_seed(1)
    for i in range(3):
        io.write_image(inp / f"im{i}.png", torch.rand(1, 16, 16, generator=g))
    return model, inp, tmp_path


def _solve(model, inp, out, *extra):
    return cli.main(["solve", "--task", "sr", "--factor", "4", "--input", str(inp), "--out",
                     str(out), "--model", str(model), "--t0", "0.3", "--steps", "10",
                     "--no-progress", *extra])


def test_outputs_and_metrics(setup):
    model, inp, tmp = setup
    assert _solve(model, inp, tmp / "out", "--samples", "2") == 0
    m = json.loads((tmp / "out" / "metrics.json").read_text())
    assert [i["name"] for i in m["images"]] == ["im0.png", "im1.png", "im2.png"]
    assert all(i["nfe"] == 3 for i in m["images"]) and m["summary"]["nfe"] == 3
    for k in ("psnr_mean", "ssim_mean", "t0", "steps", "seconds_per_image", "init_psnr_mean"):
        assert k in m["summary"]
    for stem in ("im0", "im1", "im2"):
        for suffix in (".png", "_init.png", "_std.png", "_std.npy"):
            assert (tmp / "out" / f"{stem}{suffix}").exists()


def test_per_item_seed_independent_of_folder_content(setup):
    model, inp, tmp = setup
    assert _solve(model, inp, tmp / "a") == 0
    io.write_image(inp / "aaa_extra.png", torch.rand(1, 16, 16))
    assert _solve(model, inp, tmp / "b") == 0
    for stem in ("im0", "im1", "im2"):
        assert np.array_equal(np.asarray(io.read_image(tmp / "a" / f"{stem}.png")),
                              np.asarray(io.read_image(tmp / "b" / f"{stem}.png")))


def test_npy_input_and_auto_t0(setup):
    model, _, tmp = setup
    np.save(tmp / "x.npy", np.random.default_rng(0).random((16, 16)).astype(np.float32))
    assert _solve(model, tmp / "x.npy", tmp / "o", "--t0", "auto", "--json") == 0
    m = json.loads((tmp / "o" / "metrics.json").read_text())
    assert "prior samples" in m["summary"]["t0_reason"] and (tmp / "o" / "x.npy").exists()


@pytest.mark.parametrize("case", ["missing", "size", "nan", "t0", "factor", "mask", "corrupt"])
def test_bad_input_one_line_nothing_lost(setup, case, capsys):
    model, inp, tmp = setup
    out = tmp / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    args = ["solve", "--task", "sr", "--factor", "4", "--input", str(inp), "--out", str(out),
            "--model", str(model), "--steps", "5", "--no-progress"]
    if case == "missing":
        args[args.index("--input") + 1] = str(tmp / "nope")
    elif case == "size":
        io.write_image(tmp / "big.png", torch.rand(1, 32, 32))
        args[args.index("--input") + 1] = str(tmp / "big.png")
    elif case == "nan":
        np.save(tmp / "n.npy", np.full((16, 16), np.nan, np.float32))
        args[args.index("--input") + 1] = str(tmp / "n.npy")
    elif case == "t0":
        args += ["--t0", "1.5"]
    elif case == "factor":
        args[args.index("--factor") + 1] = "3"
    elif case == "mask":
        io.write_image(tmp / "m.png", torch.ones(1, 8, 8))
        args = [a if a != "sr" else "inpaint" for a in args] + ["--mask", str(tmp / "m.png")]
    elif case == "corrupt":
        (tmp / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        args[args.index("--input") + 1] = str(tmp / "c.png")
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ccdf solve: error:"), err
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_bad_input_subprocess_has_no_traceback(setup):
    model, inp, tmp = setup
    r = subprocess.run([sys.executable, "-m", "ccdf", "solve", "--task", "sr", "--input",
                        str(inp), "--out", str(tmp / "o"), "--model", str(model), "--t0", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
