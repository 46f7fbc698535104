"""``ccdf solve`` on a tiny random model: outputs, metrics, per-item seeds, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ccdf import cli, io
from ccdf.models.formats import save_model
from ccdf.models.unet import UNetDenoiser, build_unet
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
    # K = 2 posterior samples of N' = 3 steps each: 6 network evaluations per image
    assert all(i["nfe"] == 6 for i in m["images"]) and m["summary"]["nfe"] == 6
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


# ------------------------------------------------------------------ more formats and checks
def _run(model, inp, out, *extra, task=("--task", "sr", "--factor", "4")):
    return cli.main(["solve", *task, "--input", str(inp), "--out", str(out), "--model",
                     str(model), "--t0", "0.3", "--steps", "10", "--no-progress", *extra])


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_nfe_and_summary_fields(setup):
    model, inp, tmp = setup
    assert _run(model, inp / "im0.png", tmp / "o", "--t0", "0.45", "--steps", "10",
                "--sampler", "ddim") == 0
    m = _metrics(tmp / "o")
    assert m["images"][0]["nfe"] == round(0.45 * 10) == m["summary"]["nfe"]
    s = m["summary"]
    assert (s["t0"], s["steps"], s["sampler"], s["init"], s["model"]) == \
        (0.45, 10, "ddim", "classic", str(model))
    assert set(m["images"][0]) >= {"name", "psnr", "ssim", "nfe", "seconds"}


def test_batching_keeps_per_item_noise(setup):
    model, _, tmp = setup
    inp = tmp / "npys"
    g = torch.Generator().manual_seed(3)
    for i in range(3):
        io.write_npy(inp / f"a{i}.npy", torch.rand(16, 16, generator=g).numpy())
    assert _run(model, inp, tmp / "b1", "--batch-size", "1", "--samples", "2") == 0
    assert _run(model, inp, tmp / "b2", "--batch-size", "2", "--samples", "2") == 0
    for i in range(3):
        a, b = (np.load(tmp / d / f"a{i}.npy") for d in ("b1", "b2"))
        assert a.shape == (16, 16) and np.abs(a - b).max() < 1e-4  # rounding only, same noise
        assert (tmp / "b2" / f"a{i}_std.npy").exists()
    assert not np.allclose(np.load(tmp / "b1" / "a0.npy"), np.load(tmp / "b1" / "a1.npy"))


def _fastmri(img):
    """fastMRI layout: centred k-space of a centred image."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img, axes=(-2, -1)), norm="ortho"),
                           axes=(-2, -1)).astype(np.complex64)


def test_kspace_layout_conversion():
    from ccdf.solve import kspace_to_ours

    img = np.random.default_rng(0).random((2, 16, 15))
    np.testing.assert_allclose(kspace_to_ours(_fastmri(img)), np.fft.fft2(img, norm="ortho"),
                               atol=1e-5)


def test_h5_kspace_folder(setup):
    model, _, tmp = setup
    img = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    k = _fastmri(img)
    inp = tmp / "k"
    io.write_h5(inp / "full.h5", kspace=k)                       # fully sampled: retrospective
    cols = np.zeros(16, bool)
    cols[::2] = True
    io.write_h5(inp / "masked.h5", kspace=k * cols, mask=cols)   # fastMRI-style column mask
    out = tmp / "o"
    assert _run(model, inp, out, "--samples", "2",
                task=("--task", "mri", "--pattern", "uniform1d", "--accel", "4")) == 0
    m = _metrics(out)
    names = [i["name"] for i in m["images"]]
    assert names == ["full.h5[0]", "full.h5[1]", "masked.h5[0]", "masked.h5[1]"]
    assert "psnr" in m["images"][0] and "psnr" not in m["images"][2]
    assert m["summary"]["kspace"]["full.h5"]["real_image"] is True
    assert m["summary"]["kspace"]["masked.h5"]["mask"] == "file"
    import h5py
    for stem in ("full", "masked"):
        with h5py.File(out / f"{stem}.h5") as f:
            rec = np.asarray(f["reconstruction"])
            assert rec.shape == (2, 16, 16) and np.isfinite(rec).all()
            assert np.asarray(f["std"]).shape == (2, 16, 16)
        for s in ("s000", "s001"):
            for suffix in (".png", "_init.png", "_std.png"):
                assert (out / f"{stem}_{s}{suffix}").exists()
    # a file whose mask samples everything: the projection makes the result the image itself,
    # in the file's units, with no clipping: a bright pixel far above the scale (the 99.5th
    # percentile of the zero-filled magnitude) survives
    bright = img.copy()
    bright[0, 5, 7] = 40.0
    io.write_h5(tmp / "all.h5", kspace=_fastmri(bright), mask=np.ones(16, np.float32))
    assert _run(model, tmp / "all.h5", tmp / "o3",
                task=("--task", "mri", "--pattern", "uniform1d", "--accel", "4")) == 0
    with h5py.File(tmp / "o3" / "all.h5") as f:
        rec, init = np.asarray(f["reconstruction"]), np.asarray(f["initial_estimate"])
    scale = _metrics(tmp / "o3")["summary"]["kspace"]["all.h5"]["scale"]  # zero-filled p99.5
    assert scale < 2 and (bright > scale).sum() >= 2
    np.testing.assert_allclose(rec, bright, atol=1e-3 * 40)
    np.testing.assert_allclose(init, bright, atol=1e-3 * 40)


def test_nifti_and_npy_stack_are_resized_slices(setup):
    import nibabel as nib

    model, _, tmp = setup
    rng = np.random.default_rng(1)
    inp = tmp / "vol"
    io.write_nifti(inp / "v.nii.gz", rng.random((20, 20, 4)).astype(np.float32) + 0.1)
    io.write_npy(inp / "st.npy", rng.random((2, 24, 24)).astype(np.float32))
    out = tmp / "o"
    assert _run(model, inp, out, "--slices", "1:3") == 0
    vol = np.asarray(nib.load(str(out / "v.nii.gz")).get_fdata())
    assert vol.shape == (16, 16, 2)
    assert np.load(out / "st.npy").shape == (1, 16, 16)      # slice 1 of 2 selected by 1:3
    assert (out / "v_s001.png").exists() and (out / "v_s002_init.png").exists()
    names = [i["name"] for i in _metrics(out)["images"]]
    assert names == ["st.npy[1]", "v.nii.gz[1]", "v.nii.gz[2]"]
    assert all("psnr" in i for i in _metrics(out)["images"])


def test_measurement_inputs(setup):
    model, _, tmp = setup
    io.write_image(tmp / "lr.png", torch.rand(1, 4, 4))
    assert _run(model, tmp / "lr.png", tmp / "o", "--input-kind", "measurement", "--json") == 0
    m = _metrics(tmp / "o")
    assert m["summary"]["psnr_mean"] is None and "psnr" not in m["images"][0]
    assert io.read_image(tmp / "o" / "lr.png").shape == (1, 16, 16)
    io.write_image(tmp / "holes.png", torch.rand(1, 16, 16))
    assert _run(model, tmp / "holes.png", tmp / "o2", "--input-kind", "measurement", "--mask",
                "random:0.5", task=("--task", "inpaint")) == 0
    assert (tmp / "o2" / "holes.png").exists()


def test_restorer_path_init(setup):
    from ccdf.models.formats import save_restorer
    from ccdf.models.restorer import new_restorer
    from ccdf.models.train import TrainConfig

    model, inp, tmp = setup
    cfg = TrainConfig(image_size=16, block_out_channels=(8, 16))
    save_restorer(new_restorer(cfg, {"task": "sr", "factor": 4}), tmp / "r")
    assert _run(model, inp / "im0.png", tmp / "o", "--init", str(tmp / "r")) == 0
    assert _metrics(tmp / "o")["summary"]["init"] == str(tmp / "r")


def _bad_args(case, model, inp, tmp, out):
    base = ["solve", "--task", "sr", "--factor", "4", "--input", str(inp), "--out", str(out),
            "--model", str(model), "--steps", "5", "--no-progress"]
    mri = ["--task", "mri", "--pattern", "uniform1d", "--accel", "4"]

    def with_input(path, task=None):
        a = list(base)
        a[a.index("--input") + 1] = str(path)
        if task:
            a = a[:1] + task + a[5:]
        return a

    if case == "h5-no-kspace":
        io.write_h5(tmp / "x.h5", image=np.zeros((2, 16, 16), np.float32))
        return with_input(tmp / "x.h5", mri)
    if case == "h5-multicoil":
        io.write_h5(tmp / "x.h5", kspace=np.ones((1, 4, 16, 16), np.complex64))
        return with_input(tmp / "x.h5", mri)
    if case == "h5-size":
        io.write_h5(tmp / "x.h5", kspace=np.ones((1, 32, 32), np.complex64))
        return with_input(tmp / "x.h5", mri)
    if case == "h5-for-sr":
        io.write_h5(tmp / "x.h5", kspace=np.ones((1, 16, 16), np.complex64))
        return with_input(tmp / "x.h5")
    if case == "t0-text":
        return base + ["--t0", "soon"]
    if case == "mri-image-measurement":
        return with_input(inp / "im0.png", mri) + ["--input-kind", "measurement"]
    if case == "inpaint-measurement-no-mask":
        return with_input(inp / "im0.png", ["--task", "inpaint"]) + ["--input-kind", "measurement"]
    if case == "net-no-match":
        return base[:4] + ["2"] + base[5:] + ["--init", "net"]
    if case == "bad-model":
        (tmp / "m2").mkdir()
        (tmp / "m2" / "config.json").write_text("{not json")
        i = base.index("--model") + 1
        return base[:i] + [str(tmp / "m2")] + base[i + 1:]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["h5-no-kspace", "h5-multicoil", "h5-size", "h5-for-sr",
                                  "t0-text", "mri-image-measurement",
                                  "inpaint-measurement-no-mask", "net-no-match", "bad-model"])
def test_more_bad_inputs_one_line_nothing_written(setup, case, capsys):
    model, inp, tmp = setup
    out = tmp / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert cli.main(_bad_args(case, model, inp, tmp, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ccdf solve: error:"), err
    if case == "h5-multicoil":  # 16 columns at x4: 2 centre lines, too few for ESPIRiT
        assert "ESPIRiT needs at least 8 fully sampled centre lines" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"


def test_one_bad_input_in_folder_fails_alone(setup, capsys):
    model, inp, tmp = setup
    np.save(inp / "zz.npy", np.full((16, 16), np.inf, np.float32))
    assert _run(model, inp, tmp / "out") == 1
    err = capsys.readouterr().err
    assert "zz.npy failed: zz.npy contains NaN or Inf" in err and "1 of 4 input(s) failed" in err
    lines = [json.loads(x) for x in (tmp / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [(e["input"], e["status"]) for e in lines] == \
        [("im0.png", "ok"), ("im1.png", "ok"), ("im2.png", "ok"), ("zz.npy", "failed")]
    assert "NaN" in lines[3]["reason"] and not (tmp / "out" / "zz.npy").exists()
    m = _metrics(tmp / "out")
    assert m["summary"]["n_failed"] == 1 and len(m["images"]) == 3


def test_failure_during_solve_fails_that_input_only(setup, monkeypatch, capsys):
    """Outputs are per input now: a failure mid-run fails that input, the others are written
    (each file atomically) and the exit code is 1."""
    import ccdf.solve.batch

    model, inp, tmp = setup
    out = tmp / "out"
    out.mkdir()
    (out / "im1.png").write_bytes(b"old result")
    real, calls = ccdf.solve.batch.reconstruct_batch, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise FloatingPointError("non-finite values at reverse step 3 of 3")
        return real(*a, **k)

    monkeypatch.setattr(ccdf.solve.batch, "reconstruct_batch", flaky)
    assert _run(model, inp, out) == 1
    assert "im1.png failed: sampling diverged (non-finite" in capsys.readouterr().err
    assert (out / "im1.png").read_bytes() == b"old result"       # never half-overwritten
    assert (out / "im0.png").exists() and (out / "im2.png").exists()
    assert [i["name"] for i in _metrics(out)["images"]] == ["im0.png", "im2.png"]
