"""Bad input and shared machines: image modes, odd file names, decompression bombs, FIFOs,
SIGTERM, temporary files, bounds on --batch-size and --sigma-y, threads, NIfTI geometry."""

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from ccdf import cli, io
from ccdf.models.formats import save_model
from ccdf.models.unet import UNetDenoiser, build_unet
from ccdf.schedules import VPSchedule

ARGS = ["--task", "sr", "--factor", "4", "--t0", "0.3", "--steps", "10", "--no-progress"]


@pytest.fixture()
def small(tmp_path):
    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()), tmp_path / "model")
    g = torch.Generator().manual_seed(1)
    for i in range(2):
        io.write_image(tmp_path / "in" / f"im{i}.png", torch.rand(1, 16, 16, generator=g))
    return tmp_path / "model", tmp_path / "in", tmp_path


def _solve(model, inp, out, *extra):
    return cli.main(["solve", "--input", str(inp), "--out", str(out), "--model", str(model),
                     *ARGS, *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ccdf solve: error:"), err
    return err[0]


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


# ----------------------------------------------------------------------------- 1. image modes
def test_16bit_png_and_float_tiff_are_read_at_full_range(tmp_path):
    a16 = (np.arange(256).reshape(16, 16) * 257).astype(np.uint16)   # 0 .. 65535
    Image.fromarray(a16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    x = io.read_image(tmp_path / "g16.png", 1)
    np.testing.assert_array_equal(x[0].numpy(), a16.astype(np.float32) / 65535)
    f = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    Image.fromarray(f).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(io.read_image(tmp_path / "f.tif", 1)[0].numpy(), f)
    Image.fromarray(f * 3).save(tmp_path / "hot.tif")
    with pytest.raises(io.InputError, match=r"must lie in \[0, 1\], got \[0, 3\]"):
        io.read_image(tmp_path / "hot.tif", 1)
    Image.fromarray(a16.astype(np.int32) * 1000).save(tmp_path / "i32.tif")
    with pytest.raises(io.InputError, match="32-bit integer image"):
        io.read_image(tmp_path / "i32.tif", 1)


def test_16bit_png_solves_like_the_same_image_as_npy(small):
    """The PNG's truth is the 16-bit image itself (not clipped to black and white)."""
    model, _, tmp = small
    rng = np.random.default_rng(0)
    a16 = rng.integers(0, 65536, (16, 16)).astype(np.uint16)
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    Image.fromarray(a16).save(tmp / "a" / "x.png")
    np.save(tmp / "b" / "x.npy", a16.astype(np.float32) / 65535)
    assert _solve(model, tmp / "a", tmp / "oa") == 0
    assert _solve(model, tmp / "b", tmp / "ob") == 0
    pa, pb = _metrics(tmp / "oa")["images"][0], _metrics(tmp / "ob")["images"][0]
    assert pa["init_psnr"] == pytest.approx(pb["init_psnr"], abs=1e-9)   # same truth, same y


def test_colour_transparency_and_sizes_say_what_the_model_takes(small, capsys):
    model, _, tmp = small
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp / "red.png")
    assert _solve(model, tmp / "red.png", tmp / "o") == 2
    line = _one_error_line(capsys)
    assert "colour image (mode RGB)" in line and "grayscale (1-channel)" in line
    gray = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16)[..., None], 3, 2)
    Image.fromarray(gray).save(tmp / "gray_rgb.png")                 # RGB holding a gray image
    np.testing.assert_array_equal(io.read_image(tmp / "gray_rgb.png", 1)[0].numpy() * 255,
                                  gray[..., 0])
    rgba = np.full((16, 16, 4), 128, np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp / "glass.png")
    assert _solve(model, tmp / "glass.png", tmp / "o") == 2
    assert "transparent pixels" in _one_error_line(capsys)
    io.write_image(tmp / "big.png", torch.rand(3, 32, 32))
    assert _solve(model, tmp / "big.png", tmp / "o") == 2
    assert "is 32x32 but the model takes 16x16 grayscale images" in _one_error_line(capsys)
    assert not (tmp / "o").exists()


# ----------------------------------------------------------------------------- 2. names
def test_newline_and_non_utf8_names_are_solved(small, capsys):
    model, inp, tmp = small
    nl = inp / "a\nb.png"
    latin = inp / os.fsdecode(b"caf\xe9.png")
    io.write_image(nl, torch.rand(1, 16, 16))
    io.write_image(latin, torch.rand(1, 16, 16))
    out = tmp / "o"
    assert _solve(model, inp, out) == 0
    assert (out / "a\nb.png").exists() and (out / "a\nb_init.png").exists()
    assert b"caf\xe9.png" in os.listdir(os.fsencode(out))
    names = [i["name"] for i in _metrics(out)["images"]]
    assert names == sorted(p.name for p in inp.iterdir())
    (inp / "c\nd.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")   # fails alone, one line
    assert _solve(model, inp, out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("ccdf solve: c\\nd.png failed: cannot read image") for line in err)
    assert len(err) == 3, err   # resuming ..., the failure, the summary


def test_long_names_fail_alone_and_reruns_get_past_them(small, capsys):
    model, inp, tmp = small
    io.write_image(inp / ("y" * 246 + ".png"), torch.rand(1, 16, 16))  # y..y_init.png: 255 bytes
    io.write_image(inp / ("z" * 247 + ".png"), torch.rand(1, 16, 16))  # z..z_init.png: 256 bytes
    out = tmp / "o"
    for _ in range(2):
        assert _solve(model, inp, out) == 1
        err = capsys.readouterr().err
        assert "the name is too long for its outputs" in err and "rename it" in err
    m = {e["input"]: e for e in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    assert m["y" * 246 + ".png"]["status"] == "ok" and m["z" * 247 + ".png"]["status"] == "failed"
    assert (out / ("y" * 246 + "_init.png")).exists()
    assert {m["im0.png"]["status"], m["im1.png"]["status"]} == {"ok"}


def test_fifo_input_is_refused_not_waited_on(small, capsys):
    model, inp, tmp = small
    os.mkfifo(tmp / "x.png")

    def hung(*_):
        raise TimeoutError("blocked on the FIFO")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        assert _solve(model, tmp / "x.png", tmp / "o") == 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert _one_error_line(capsys).endswith("x.png is a FIFO, not a regular file")
    os.mkfifo(inp / "y.png")                       # in a folder: skipped like a sub-folder
    assert _solve(model, inp, tmp / "o2") == 0
    assert [i["name"] for i in _metrics(tmp / "o2")["images"]] == ["im0.png", "im1.png"]


# ----------------------------------------------------------------------------- 3. bombs
def _png_header(w: int, h: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("w,h,msg", [(60000, 60000, "exceeds limit"),
                                     (5000, 5000, "claims 5000x5000 pixels"),
                                     (64, 64, "is 64x64 but the model takes 16x16")])
def test_decompression_bombs_are_refused_from_the_header(small, capsys, monkeypatch, w, h, msg):
    model, _, tmp = small
    (tmp / "bomb.png").write_bytes(_png_header(w, h))              # 67 bytes, no pixel data
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded"))
    assert _solve(model, tmp / "bomb.png", tmp / "o") == 2
    assert msg in _one_error_line(capsys)


# ----------------------------------------------------------------------------- 4. SIGTERM
def test_sigterm_is_one_line_cleans_up_and_resumes(small, tmp_path, capsys):
    model, inp, _ = small
    g = torch.Generator().manual_seed(2)
    for i in range(2, 40):  # enough inputs that the run is mid-way when signalled
        io.write_image(inp / f"im{i:02d}.png", torch.rand(1, 16, 16, generator=g))
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "ccdf", "solve", "--input", str(inp), "--out", str(out),
           "--model", str(model), *ARGS, "--t0", "1", "--steps", "20", "--batch-size", "2"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    manifest, seen = out / "manifest.jsonl", 0
    while p.poll() is None and seen < 1:
        time.sleep(0.005)
        seen = manifest.read_bytes().count(b"\n") if manifest.exists() else 0
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=120)[1].strip().splitlines()
    assert p.returncode == 143, err
    assert err == [("ccdf solve: terminated (SIGTERM); finished outputs are kept: rerun the "
                    "same command to resume")]
    assert not [q.name for q in out.iterdir() if q.name.startswith(".")]  # no lock, no .tmp
    done = manifest.read_bytes().count(b"\n")
    assert 0 < done < 40
    assert cli.main(cmd[3:]) == 0                                      # the same command
    assert f"resuming: {done} of 40 input(s) already done" in capsys.readouterr().err
    assert len(_metrics(out)["images"]) == 40


def test_rank_says_whose_line_it_is(small, capsys, monkeypatch):
    model, inp, tmp = small
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert _solve(model, inp, tmp / "o", "--t0", "2") == 2
    assert capsys.readouterr().err.startswith("ccdf solve (rank 1 of 2): error: t0 must be in")


# ----------------------------------------------------------------------------- 5. temporaries
def test_only_ccdf_temporaries_are_removed(small):
    model, inp, tmp = small
    out = tmp / "o"
    out.mkdir()
    (out / ".X.abcdefgh.tmp").write_text("the user's")
    (out / ".ccdf-k1ll3d_x.tmp").write_text("left by a killed run")
    assert _solve(model, inp, out) == 0
    assert (out / ".X.abcdefgh.tmp").read_text() == "the user's"
    assert not (out / ".ccdf-k1ll3d_x.tmp").exists()


# ----------------------------------------------------------------------------- 6, 7. bounds
@pytest.mark.parametrize("flag,value,msg", [("--batch-size", "257", "--batch-size must be in 1..256"),
                                            ("--sigma-y", "1e308", "--sigma-y must be in [0, 1]"),
                                            ("--sigma-y", "nan", "--sigma-y must be in [0, 1]")])
def test_bounds_are_checked_up_front(small, capsys, flag, value, msg):
    model, inp, tmp = small
    assert _solve(model, inp, tmp / "o", flag, value) == 2
    assert msg in _one_error_line(capsys)
    assert not (tmp / "o").exists()


def test_outputs_are_written_as_each_batch_finishes(small, monkeypatch):
    from ccdf.solve import run

    model, inp, tmp = small
    for i in range(2, 4):
        io.write_image(inp / f"im{i}.png", torch.rand(1, 16, 16))
    out, seen = tmp / "o", []
    real = run.solve_batch

    def spy(model_, items, cfg, cb):
        seen.append(sorted(p.name for p in out.glob("im?.png")))
        return real(model_, items, cfg, cb)

    monkeypatch.setattr(run, "solve_batch", spy)
    assert _solve(model, inp, out, "--batch-size", "2") == 0
    assert seen == [[], ["im0.png", "im1.png"]]


# ----------------------------------------------------------------------------- 8. threads
def test_threads_default_to_one_and_extra_threads_wait_passively(small, monkeypatch):
    model, inp, tmp = small
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        torch.set_num_threads(2)
        assert _solve(model, inp, tmp / "o", "--t0", "7") == 2     # set before the work
        assert torch.get_num_threads() == 1 and "OMP_WAIT_POLICY" not in os.environ
        assert _solve(model, inp, tmp / "o", "--t0", "7", "--threads", "2") == 2
        assert torch.get_num_threads() == 2 and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        monkeypatch.setenv("OMP_NUM_THREADS", "3")                     # e.g. set by torchrun
        assert cli.set_threads(None) == 3 and cli.set_threads(1) == 1
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- 9. review
def test_auto_t0_cache_key_tells_large_masks_apart(monkeypatch):
    from ccdf import autot0
    from ccdf.operators import Inpainting

    g = torch.Generator().manual_seed(0)
    m1 = torch.rand(64, 64, generator=g) > 0.5
    m2 = m1.clone()
    m2[40, 40] = ~m2[40, 40]
    a, b, c = Inpainting(m1, (1, 64, 64)), Inpainting(m2, (1, 64, 64)), Inpainting(m1.clone(), (1, 64, 64))
    assert repr(a.__dict__) == repr(b.__dict__)        # the old key: one entry for both
    assert autot0.operator_key(a) != autot0.operator_key(b)
    assert autot0.operator_key(a) == autot0.operator_key(c)
    calls = []
    monkeypatch.setattr(autot0, "prior_init_error", lambda m, op: calls.append(op) or 0.01)

    class Model:
        schedule = VPSchedule()

    cache, y, model = {}, torch.zeros(1, 1, 64, 64), Model()  # one model: the key holds its id
    for op in (a, b, c):
        autot0.choose_t0(model, op, y, y, 100, cache=cache)
    assert calls == [a, b]


def test_h5_outputs_follow_the_umask_like_the_others(tmp_path):
    io.write_h5(tmp_path / "r.h5", x=np.zeros(3))
    io.write_json(tmp_path / "r.json", {})
    umask = os.umask(0o22)
    os.umask(umask)
    assert (tmp_path / "r.h5").stat().st_mode & 0o777 == 0o666 & ~umask       # not 0600
    assert (tmp_path / "r.h5").stat().st_mode & 0o777 == (tmp_path / "r.json").stat().st_mode & 0o777


def test_theory_says_which_ddpm_variance(capsys):
    from ccdf import theory
    from ccdf.samplers.steps import make_sampler

    assert cli.main(["theory", "--steps", "100"]) == 0
    assert capsys.readouterr().out.startswith("schedule ddpm (ancestral steps, large variance)")
    small = theory.report("ddpm", 100, 0.2, variance="small")
    large = theory.report("ddpm", 100, 0.2)
    sched = VPSchedule()
    _, var = theory.per_step(sched, 100, make_sampler("ddpm"))      # what `solve` runs
    assert small["C"] == pytest.approx(max(var[1:21]))
    assert small["lambda"] == large["lambda"] and small["C"] < large["C"]


def test_best_fixed_t0_ignores_means_of_samples():
    from ccdf.bench import best_fixed

    rows = [{"method": "CCDF classic start, N=100, t0=0.1", "start": "classic", "steps": 100,
             "t0": 0.1, "psnr": 25.0, "samples": 1},
            {"method": "CCDF classic start, N=100 t0=0.2, mean of 4", "start": "classic",
             "steps": 100, "t0": 0.2, "psnr": 27.0, "samples": 4},
            {"method": "CCDF classic start, N=100, auto t0=0.21", "start": "classic",
             "steps": 100, "t0": 0.21, "psnr": 26.0, "samples": 1}]
    assert best_fixed(rows, "classic", 100)["t0"] == 0.1


# ----------------------------------------------------------------------------- NIfTI
def _affine():
    rot = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([0.9, 1.1, 2.5])
    a[:3, 3] = [-40.0, 12.5, 7.0]
    return a


def test_nifti_keeps_affine_header_and_units(small):
    import nibabel as nib

    model, _, tmp = small
    rng = np.random.default_rng(0)
    vol = (200 + 500 * rng.random((16, 16, 3))).astype(np.float32)   # no crop, no resampling
    img = nib.Nifti1Image(vol, _affine())
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, tmp / "v.nii.gz")
    # t0 = 0.01 (one step from the start): hardly anything is clipped to [0, 1] on the way
    assert _solve(model, tmp / "v.nii.gz", tmp / "o", "--t0", "0.01", "--steps", "100") == 0
    back = nib.load(str(tmp / "o" / "v.nii.gz"))
    np.testing.assert_allclose(back.affine, _affine(), atol=1e-5)
    assert back.header.get_xyzt_units() == ("mm", "sec")
    out = back.get_fdata()
    scale = float(np.percentile(vol, 99.5))
    assert out.shape == vol.shape and 0 <= out.min() and out.max() <= scale * (1 + 1e-5)
    # the SR projection keeps the 4x4 averages of the measurement: in the input's units and
    # orientation (a transposed or flipped volume is off by 7-10 %)
    def pool(v):
        return v.reshape(4, 4, 4, 4, 3).mean((1, 3))

    np.testing.assert_allclose(pool(out), pool(np.minimum(vol, scale)), rtol=1e-4)


def test_nifti_affine_follows_crop_pad_and_resampling():
    """Voxel u of a volume_slices slice, turned back as the writer does, holds the input at
    nifti_affine's index: checked on a linear ramp, which area averaging keeps exact."""
    from ccdf.datasets import volume_slices
    from ccdf.solve.readers import nifti_affine

    i, j, k = np.meshgrid(np.arange(40), np.arange(30), np.arange(5), indexing="ij")
    ramp = (50 + i + 2 * j + 3 * k).astype(np.float32)
    vol = np.zeros_like(ramp)
    vol[4:36, 3:27] = ramp[4:36, 3:27]                    # crop 32 x 24, padded to 32, f = 2
    geo: dict = {}
    x = volume_slices(vol, 16, axis=2, geometry=geo)
    assert geo["crop_lo"] == [4, 3] and geo["side"] == 32 and geo["pad_before"] == [0, 4]
    out = np.moveaxis(np.rot90(x[:, 0].numpy(), -1, axes=(1, 2)), 0, 2) * geo["scale"]
    chosen = [1, 3]
    m = np.linalg.inv(_affine()) @ nifti_affine(_affine(), geo, 2, 16, chosen)
    for p in range(16):
        for q in range(3, 13):                             # away from the padding
            for kk, s in enumerate(chosen):
                src = m @ [p, q, kk, 1]
                want = 50 + src[0] + 2 * src[1] + 3 * src[2]
                if want < geo["scale"]:                    # (the top 0.5% are clipped)
                    assert out[p, q, s] == pytest.approx(want, rel=1e-5), (p, q, s)


# ----------------------------------------------------------------------------- first hour
def test_readme_library_example_prints_numbers(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "README.md").read_text()
    code = text.split("## Library", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 -- the README's own example
    assert re.fullmatch(r"20 NFE, PSNR \d+\.\d\d dB", capsys.readouterr().out.strip())


def test_help_has_text_and_defaults_for_every_flag(capsys):
    parser = cli.build_parser()
    subs = parser._subparsers._group_actions[0].choices
    for name, sp in subs.items():
        for a in sp._actions:
            assert a.help, f"ccdf {name} {a.option_strings} has no help"
    with pytest.raises(SystemExit):
        cli.main(["solve", "--help"])
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    assert "--task {sr,inpaint,mri,deblur}" in out.split("\n\n")[0].replace("[--task", "")  # required
    assert "N of the full schedule (default 100; with --t0 auto, the N that the start's t0 " \
        "was calibrated at" in flat
    assert "white (>= 0.5) = observed" in flat and "Fashion-MNIST" in flat
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("ccdf ")


def test_misspelt_flag_gets_the_subcommand_usage_and_a_suggestion(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["solve", "--task", "sr", "--input", "x", "--out", "y", "--stpes", "3"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: ccdf solve ")
    assert err.strip().endswith("unrecognized arguments: --stpes 3; did you mean --steps?")
    with pytest.raises(SystemExit):
        cli.main(["solve", "--task", "inpaintt", "--input", "x", "--out", "y"])
    assert "did you mean 'inpaint'?" in capsys.readouterr().err


def test_out_of_distribution_warning_on_foreign_inputs_only(tmp_path, capsys):
    """The embedded garment prior: a photograph crop and a checkerboard are flagged, held-out
    Fashion-MNIST images are not (``ccdf.ood``)."""
    from matplotlib import cbook

    from ccdf import datasets

    inp = tmp_path / "in"
    for i, x in enumerate(datasets.sample("fashion-mnist")[:3]):
        io.write_image(inp / f"fm{i}.png", x)
    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("L")
    photo.resize((128, 150), Image.BOX).crop((40, 50, 72, 82)).save(inp / "photo.png")
    board = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(board).save(inp / "board.png")
    out = tmp_path / "o"
    assert cli.main(["solve", "--task", "sr", "--factor", "4", "--input", str(inp), "--out",
                     str(out), "--t0", "0.2", "--steps", "50", "--no-progress"]) == 0
    err = capsys.readouterr().err
    flags = {i["name"]: i["ood"] for i in _metrics(out)["images"]}
    assert flags == {"board.png": True, "fm0.png": False, "fm1.png": False, "fm2.png": False,
                     "photo.png": True}, _metrics(out)["images"]
    assert "warning: board.png looks unlike the prior's training data (fashion-mnist)" in err
    assert "2 of 5 image(s) look unlike the data the prior was trained on" in err
    assert _metrics(out)["summary"]["ood"]["reference"] == "fashion-mnist sample (48 images)"
