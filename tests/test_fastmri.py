"""fastMRI files end to end with ``ccdf solve`` on a tiny size-independent random model.

Files are written in fastMRI's layout by ``ccdf.simulate`` (a phantom times a smooth phase,
8 birdcage coils, readout oversampled 2x: kspace (S, 8, 48, 24) for a 24 x 24 field of view):
the reader (4-D kspace, oversampled readout, the test split's mask, attrs, the ISMRMRD
header), the outputs (submission layout, crop, NIfTI, PNG, std, complex), fastMRI's metrics,
given coil maps, bad input, and a folder of two volumes resumed after a kill.
"""

import json
import signal
import subprocess
import sys
import time

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from ccdf import cli, io, simulate
from ccdf.metrics import center_crop, fastmri_volume
from ccdf.models.formats import save_model
from ccdf.models.unet import UNetDenoiser, build_unet
from ccdf.operators.coils import coil_images, rss
from ccdf.schedules import VPSchedule

N = 24          # field of view; the readout is oversampled to 2 N
MRI = ["--task", "mri", "--pattern", "uniform1d", "--accel", "2", "--acs", "8"]


def _phantom(s, n=N, seed=0):
    yy, xx = np.mgrid[:n, :n] / (n - 1) * 2 - 1
    mags = []
    for i in range(s):
        r = 0.75 + 0.05 * i
        m = ((xx / r) ** 2 + (yy / 0.85) ** 2 <= 1) * (0.6 + 0.4 * (xx > 0.1 * i))
        mags.append(m.astype(np.float32))
    return simulate.complex_slices(np.stack(mags), seed)


def _mask_cols(w=N):
    cols = np.zeros(w, bool)
    cols[(w - 8 + 1) // 2:(w - 8 + 1) // 2 + 8] = True
    cols[::2] = True
    return cols


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fastmri")
    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule(), meta={"any_size": True}),
               tmp / "model")
    img = _phantom(3)
    data, attrs = simulate.volume(img, ncoil=8, oversample=2, name="train")
    attrs["acceleration_extra"] = "kept"
    io.write_h5_file(tmp / "in" / "multi.h5", data, attrs)            # fully sampled, train-like
    data, attrs = simulate.volume(img[:2], ncoil=8, oversample=2, name="test",
                                  mask_cols=_mask_cols(), acceleration=2)
    io.write_h5_file(tmp / "test" / "multi_test.h5", data, attrs)     # test split: mask, no target
    data, attrs = simulate.volume(img[:2], ncoil=1, oversample=2, name="single")
    io.write_h5_file(tmp / "single" / "single.h5", data, attrs)       # single-coil, ESC target
    return tmp


def _solve(files, inp, out, *extra, task=MRI):
    return cli.main(["solve", *task, "--input", str(inp), "--out", str(out), "--model",
                     str(files / "model"), "--t0", "0.3", "--steps", "10", "--no-progress",
                     "--threads", "1", *extra])


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_simulated_file_has_the_fastmri_layout(files):
    with h5py.File(files / "in" / "multi.h5") as f:
        k, rss_t = np.asarray(f["kspace"]), np.asarray(f["reconstruction_rss"])
        assert k.dtype == np.complex64 and k.shape == (3, 8, 2 * N, N)
        assert rss_t.shape == (3, N, N) and set(f.attrs) >= {"acquisition", "max", "norm",
                                                             "patient_id"}
        assert f.attrs["max"] == pytest.approx(rss_t.max())
        assert b"<reconSpace>" in f["ismrmrd_header"][()]
    # fastMRI's target: the RSS of the fully sampled coil images, centre-cropped
    np.testing.assert_allclose(rss_t, center_crop(rss(coil_images(k)), (N, N)), atol=1e-5)
    # the coil images are the image (the field of view padded in the readout) seen by the coils
    truth = np.abs(_phantom(3))
    np.testing.assert_allclose(rss_t, truth, atol=1e-5)


def test_multicoil_volume_outputs_and_metrics(files):
    out = files / "o_multi"
    assert _solve(files, files / "in" / "multi.h5", out, "--samples", "2", "--consistency", "cg",
                  "--complex-output", "--batch-size", "3") == 0
    with h5py.File(files / "in" / "multi.h5") as f:
        attrs, header, target = dict(f.attrs), f["ismrmrd_header"][()], \
            np.asarray(f["reconstruction_rss"])
    with h5py.File(out / "multi.h5") as f:
        rec = np.asarray(f["reconstruction"])
        assert rec.dtype == np.float32 and rec.shape == (3, N, N)     # cropped to the target
        assert dict(f.attrs) == attrs and f["ismrmrd_header"][()] == header  # untouched
        assert np.asarray(f["std"]).shape == (3, N, N)
        c = np.asarray(f["reconstruction_complex"])
        assert c.dtype == np.complex64 and c.shape == (3, 2 * N, N)     # uncropped SENSE image
        np.testing.assert_allclose(center_crop(np.abs(c), (N, N)), rec, rtol=1e-5, atol=1e-6)
        assert list(f["slices"]) == [0, 1, 2]
    vol = nib.load(str(out / "multi.nii.gz"))
    np.testing.assert_allclose(vol.get_fdata(), np.moveaxis(rec, 0, -1), rtol=1e-6)
    assert vol.header.get_zooms() == (1.0, 1.0, 1.0)
    for s in ("s000", "s001", "s002"):
        for suffix in (".png", "_init.png", "_std.png"):
            assert (out / f"multi_{s}{suffix}").exists()
    m = _metrics(out)
    ks = m["summary"]["kspace"]["multi.h5"]
    assert (ks["coils"], ks["coil_maps"], ks["mask"]) == (8, "ESPIRiT", "pattern (retrospective)")
    assert ks["calibration_width"] >= 8  # the 8 centre columns (and a sampled neighbour)
    entry = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    expected = fastmri_volume(target, rec)
    assert entry["fastmri"] == pytest.approx(expected)
    assert m["summary"]["fastmri"] == pytest.approx({"n_volumes": 1, **expected})
    assert all("psnr" in i for i in m["images"])


def test_test_split_mask_and_given_coil_maps(files, tmp_path):
    """The test split: the file's mask, no target (no metrics); maps given as .npy and .h5."""
    inp = files / "test" / "multi_test.h5"
    out = tmp_path / "o"
    assert _solve(files, inp, out) == 0
    m = _metrics(out)
    assert m["summary"]["kspace"]["multi_test.h5"]["mask"] == "file"
    assert "fastmri" not in m["summary"] and "psnr" not in m["images"][0]
    maps = simulate.birdcage(8, 2 * N, N).astype(np.complex64)
    np.save(tmp_path / "maps.npy", maps)                          # (coils, H, W): every slice
    io.write_h5_file(tmp_path / "maps.h5", {"maps": np.stack([maps, maps])})
    (tmp_path / "per_input").mkdir()
    np.save(tmp_path / "per_input" / "multi_test.npy", maps)    # a folder: NAME.npy per input
    results = []
    for spec in ("maps.npy", "maps.h5", "per_input"):
        o = tmp_path / f"o_{spec}"
        assert _solve(files, inp, o, "--coil-maps", str(tmp_path / spec),
                      "--consistency", "cg") == 0
        used = _metrics(o)["summary"]["kspace"]["multi_test.h5"]["coil_maps"]
        assert used == (spec if spec != "per_input" else "multi_test.npy")
        with h5py.File(o / "multi_test.h5") as f:
            results.append(np.asarray(f["reconstruction"]))
    for r in results[1:]:
        np.testing.assert_allclose(results[0], r, rtol=1e-5, atol=1e-6)


def test_single_coil_esc_file_and_slices(files, tmp_path):
    out = tmp_path / "o"
    assert _solve(files, files / "single" / "single.h5", out, "--slices", "1",
                  "--consistency", "gradient") == 0
    with h5py.File(out / "single.h5") as f:
        rec = np.asarray(f["reconstruction"])
        assert rec.shape == (1, N, N) and list(f["slices"]) == [1]
    with h5py.File(files / "single" / "single.h5") as f:
        esc = np.asarray(f["reconstruction_esc"])[1:2]
    s = _metrics(out)["summary"]
    assert s["kspace"]["single.h5"]["target_kind"] == "reconstruction_esc"
    assert s["fastmri"] == pytest.approx({"n_volumes": 1, **fastmri_volume(esc, rec)})
    assert s["consistency"] == "gradient"


def test_single_coil_phase_modes(files, tmp_path):
    """--phase: a complex prior on single-coil k-space absorbs the start's smooth phase by
    default (auto = start: a real image times that phase) or reconstructs the complex image
    (none); the summary says which; start where it does not apply fails with one line."""
    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(16, 2, (8, 16)), VPSchedule(),
                            meta={"any_size": True, "complex": True}), tmp_path / "cplx")
    recs = {}
    for phase in ("auto", "start", "none"):
        out = tmp_path / phase
        assert cli.main(["solve", *MRI, "--input", str(files / "single" / "single.h5"), "--out",
                         str(out), "--model", str(tmp_path / "cplx"), "--t0", "0.3", "--steps",
                         "10", "--no-progress", "--threads", "1", "--phase", phase]) == 0
        assert _metrics(out)["summary"]["phase"] == phase
        with h5py.File(out / "single.h5") as f:
            recs[phase] = np.asarray(f["reconstruction"])
    np.testing.assert_array_equal(recs["auto"], recs["start"])
    assert np.abs(recs["start"] - recs["none"]).max() > 1e-3 * np.abs(recs["none"]).max()
    out = tmp_path / "multi"
    assert cli.main(["solve", *MRI, "--input", str(files / "in" / "multi.h5"), "--out", str(out),
                     "--model", str(tmp_path / "cplx"), "--t0", "0.3", "--steps", "10",
                     "--no-progress", "--threads", "1", "--phase", "start"]) == 1
    entry = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert "--phase start: multi-coil" in entry["reason"]


def test_phase_start_off_mri_is_one_line(files, tmp_path, capsys):
    img = tmp_path / "a.png"
    io.write_image(img, torch.zeros(1, 16, 16))
    assert cli.main(["solve", "--task", "sr", "--factor", "4", "--input", str(img), "--out",
                     str(tmp_path / "o"), "--phase", "start", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ccdf solve: error: --phase start is for --task mri"]


# ------------------------------------------------------------------ bad input
def _bad(case, files, tmp):
    inp = tmp / "bad.h5"
    if case == "no-kspace":
        io.write_h5_file(inp, {"reconstruction_rss": np.zeros((1, N, N), np.float32)})
        return inp, [], "has no 'kspace' dataset"
    if case == "mask-width":
        with h5py.File(files / "test" / "multi_test.h5") as f:
            k = np.asarray(f["kspace"])
        io.write_h5_file(inp, {"kspace": k, "mask": np.ones(N + 3, np.float32)})
        return inp, [], f"mask dataset is ({N + 3},), expected ({N},)"
    if case == "maps-shape":
        np.save(tmp / "maps.npy", np.ones((8, N, N), np.complex64))
        return files / "in" / "multi.h5", ["--coil-maps", str(tmp / "maps.npy")], \
            "coil maps maps.npy are complex64 (8, 24, 24), but multi.h5's k-space (3, 8, 48, 24)"
    if case == "few-centre-lines":
        return files / "in" / "multi.h5", ["--acs", "4"], \
            "ESPIRiT needs at least 8 fully sampled centre lines to estimate coil maps, this " \
            "mask has"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["no-kspace", "mask-width", "maps-shape", "few-centre-lines"])
def test_bad_input_one_line_nothing_lost(files, tmp_path, case, capsys):
    inp, extra, message = _bad(case, files, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    args = [a for a in MRI]
    if "--acs" in extra:
        args[args.index("--acs") + 1] = extra[1]
        extra = []
    assert _solve(files, inp, out, *extra, task=args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ccdf solve: error:") and message in err[0], err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    # in a folder, the bad file fails alone and the good one is written
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "bad.h5").write_bytes(inp.read_bytes())
    (folder / "good.h5").write_bytes((files / "test" / "multi_test.h5").read_bytes())
    if case == "maps-shape":
        return  # --coil-maps FILE is for every file of a folder: a folder takes a maps folder
    assert _solve(files, folder, tmp_path / "o2", *extra, task=args) == 1
    lines = [json.loads(x) for x in (tmp_path / "o2" / "manifest.jsonl").read_text().splitlines()]
    assert [(e["input"], e["status"]) for e in lines] == [("bad.h5", "failed"), ("good.h5", "ok")]
    assert message in lines[0]["reason"] and (tmp_path / "o2" / "good.h5").exists()


# ------------------------------------------------------------------ resuming
def test_folder_of_two_volumes_resumed_after_a_kill(files, tmp_path, capsys):
    inp = tmp_path / "vols"
    for i in range(2):
        data, attrs = simulate.volume(_phantom(3, seed=i), ncoil=8, oversample=2, name=f"v{i}")
        io.write_h5_file(inp / f"v{i}.h5", data, attrs)
    args = ["solve", *MRI, "--input", str(inp), "--model", str(files / "model"), "--t0", "0.5",
            "--steps", "24", "--consistency", "cg", "--no-progress", "--threads", "1"]
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert cli.main(args + ["--out", str(ref)]) == 0
    p = subprocess.Popen([sys.executable, "-m", "ccdf", *args, "--out", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.jsonl"
    while p.poll() is None and not (manifest.exists() and manifest.read_bytes().count(b"\n")):
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert manifest.read_bytes().count(b"\n") == 1, "the run was not killed between volumes"
    assert (out / "v0.h5").exists() and not (out / "v1.h5").exists()
    assert cli.main(args + ["--out", str(out)]) == 0
    assert "resuming: 1 of 2 input(s) already done" in capsys.readouterr().err
    for name in ("v0.h5", "v1.h5"):
        with h5py.File(ref / name) as a, h5py.File(out / name) as b:
            assert np.array_equal(np.asarray(a["reconstruction"]), np.asarray(b["reconstruction"]))
    assert [e["status"] for e in map(json.loads, manifest.read_text().splitlines())] == ["ok"] * 2
    assert _metrics(out)["summary"]["fastmri"]["n_volumes"] == 2


def test_complex_prior_of_any_size_on_a_multicoil_file(files, tmp_path):
    """The complex (real, imaginary) prior of any size solves the SENSE-combined image."""
    from ccdf.models.train import TrainConfig, make_model

    cfg = TrainConfig(image_size=16, channels=2, block_out_channels=(8, 16), patch=16,
                      complex=True)
    torch.manual_seed(0)
    save_model(make_model(cfg).eval(), tmp_path / "cmodel")
    out = tmp_path / "o"
    assert cli.main(["solve", *MRI, "--input", str(files / "in" / "multi.h5"), "--out", str(out),
                     "--model", str(tmp_path / "cmodel"), "--t0", "0.3", "--steps", "10",
                     "--consistency", "cg", "--batch-size", "3", "--no-progress"]) == 0
    with h5py.File(out / "multi.h5") as f:
        rec = np.asarray(f["reconstruction"])
    assert rec.shape == (3, N, N) and np.isfinite(rec).all() and rec.max() > 0
    assert _metrics(out)["summary"]["fastmri"]["n_volumes"] == 1


def test_simulation_script(tmp_path):
    """scripts/simulate_fastmri.py on a .npy stack: train-like and test-split files."""
    import runpy

    script = runpy.run_path(str(__import__("pathlib").Path(__file__).parents[1] / "scripts" /
                                "simulate_fastmri.py"))
    np.save(tmp_path / "s.npy", np.abs(_phantom(3, n=16)).astype(np.float32))
    for extra, out in (([], "train"), (["--accel", "2", "--acs", "8"], "test")):
        assert script["main"](["--source", str(tmp_path / "s.npy"), "--out", str(tmp_path / out),
                               "--size", "16", "--coils", "4", "--slices-per-volume", "2",
                               *extra]) == 0
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["s_00.h5", "s_01.h5"]
    with h5py.File(tmp_path / "train" / "s_00.h5") as f:
        assert f["kspace"].shape == (2, 4, 32, 16) and f["reconstruction_rss"].shape == (2, 16, 16)
    with h5py.File(tmp_path / "test" / "s_01.h5") as f:
        k, m = np.asarray(f["kspace"]), np.asarray(f["mask"])
        assert k.shape == (1, 4, 32, 16) and "reconstruction_rss" not in f
        assert m.shape == (16,) and f.attrs["acceleration"] == 2 and \
            f.attrs["num_low_frequency"] >= 8
        assert not np.abs(k[..., m == 0]).any() and np.abs(k[..., m == 1]).all()
    assert script["main"](["--source", str(tmp_path / "none.npy"), "--out", str(tmp_path)]) == 2
