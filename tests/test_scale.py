"""Whole data sets with ``ccdf solve``: resuming, torchrun ranks, and faults, on a tiny model."""

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ccdf import cli, io
from ccdf.models.formats import save_model
from ccdf.models.unet import UNetDenoiser, build_unet
from ccdf.schedules import VPSchedule

N = 12
ARGS = ["--task", "sr", "--factor", "4", "--t0", "0.3", "--steps", "10", "--no-progress"]


def _images(folder, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        io.write_image(folder / f"im{i:02d}.png", torch.rand(1, 16, 16, generator=g))


def _cmd(model, inp, out, *extra):
    return ["solve", "--input", str(inp), "--out", str(out), "--model", str(model), *ARGS,
            *extra]


def _files(out):
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


def _manifest(out):
    return [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


def _same_outputs(a, b):
    """Same files, same pixels, one ok manifest line per input with the same PSNR."""
    assert _files(a) == _files(b)
    assert not [p for p in b.iterdir() if p.name.startswith(".")]     # no lock, no temporaries
    for name in _files(a):
        if name.endswith(".png"):
            assert np.array_equal(io.read_image(a / name), io.read_image(b / name)), name
    ma, mb = _manifest(a), _manifest(b)
    assert [e["input"] for e in ma] == [e["input"] for e in mb]
    assert all(e["status"] == "ok" for e in ma + mb)
    np.testing.assert_allclose([e["psnr"] for e in ma], [e["psnr"] for e in mb], atol=1e-6)
    assert len(json.loads((b / "metrics.json").read_text())["images"]) == len(ma)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny model, N tiny images and an uninterrupted single-process run over them."""
    tmp = tmp_path_factory.mktemp("scale")
    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()), tmp / "model")
    _images(tmp / "in", N)
    assert cli.main(_cmd(tmp / "model", tmp / "in", tmp / "ref")) == 0
    return tmp / "model", tmp / "in", tmp / "ref"


@pytest.fixture()
def small(tmp_path):
    torch.manual_seed(0)
    save_model(UNetDenoiser(build_unet(16, 1, (8, 16)), VPSchedule()), tmp_path / "model")
    _images(tmp_path / "in", 3)
    return tmp_path / "model", tmp_path / "in", tmp_path


def _python(*args):
    return [sys.executable, *args]


# ----------------------------------------------------------------------------- resuming
def test_sigkill_then_resume_gives_the_uninterrupted_outputs(data, tmp_path, capsys):
    model, inp, ref = data
    out = tmp_path / "out"
    p = subprocess.Popen(_python("-m", "ccdf", *_cmd(model, inp, out, "--threads", "1")),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest, seen = out / "manifest.jsonl", 0
    while p.poll() is None and seen < 2:
        time.sleep(0.005)
        seen = manifest.read_bytes().count(b"\n") if manifest.exists() else 0
    p.send_signal(signal.SIGKILL)
    p.wait()
    seen = manifest.read_bytes().count(b"\n")
    assert 0 < seen < N, f"the run was not interrupted mid-way ({seen} lines)"
    with open(manifest, "ab") as f:  # a line torn by the kill
        f.write(b'{"input": "im11.png", "status": "o')
    (out / ".ccdf-k1ll3d_x.tmp").write_bytes(b"half a PNG")  # a write cut by the kill
    assert cli.main(_cmd(model, inp, out)) == 0
    assert f"resuming: {seen} of {N} input(s) already done" in capsys.readouterr().err
    _same_outputs(ref, out)


def test_resume_with_other_settings_is_refused(small, capsys):
    model, inp, tmp = small
    assert cli.main(_cmd(model, inp, tmp / "o")) == 0
    assert cli.main(_cmd(model, inp, tmp / "o", "--t0", "0.5")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings (t0: 0.3 there, 0.5 now)" in err[0]
    assert cli.main(_cmd(model, inp, tmp / "o", "--t0", "0.5", "--overwrite")) == 0
    assert {e["t0"] for e in _manifest(tmp / "o")} == {0.5}


# ----------------------------------------------------------------------------- torchrun
def test_torchrun_two_gloo_ranks_match_one_rank(data, tmp_path):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available in this torch build")
    model, inp, ref = data
    out = tmp_path / "out"
    r = subprocess.run(_python("-m", "torch.distributed.run", "--standalone",
                               "--nproc_per_node=2", "-m", "ccdf",
                               *_cmd(model, inp, out, "--threads", "1")),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("image(s)") == 1          # rank 0 reports, once
    _same_outputs(ref, out)


# ----------------------------------------------------------------------------- faults
def test_corrupt_and_truncated_png_fail_alone(small, capsys):
    model, inp, tmp = small
    (inp / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = (inp / "im00.png").read_bytes()
    (inp / "cut.png").write_bytes(good[: len(good) // 2])
    assert cli.main(_cmd(model, inp, tmp / "o")) == 1
    err = capsys.readouterr().err
    assert "bad.png failed: cannot read image" in err and "cut.png failed:" in err
    assert "2 of 5 input(s) failed" in err.strip().splitlines()[-1]
    status = {e["input"]: (e["status"], e.get("reason", "")) for e in _manifest(tmp / "o")}
    assert status["bad.png"][0] == status["cut.png"][0] == "failed"
    assert "truncated" in status["cut.png"][1] or "cannot read" in status["cut.png"][1]
    assert all(status[f"im{i:02d}.png"][0] == "ok" for i in range(3))
    assert all((tmp / "o" / f"im{i:02d}.png").exists() for i in range(3))
    # a rerun retries only the failed inputs
    assert cli.main(_cmd(model, inp, tmp / "o")) == 1
    assert "resuming: 3 of 5 input(s) already done" in capsys.readouterr().err


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("case", ["truncated-safetensors", "junk-pt", "malicious-pickle"])
def test_bad_checkpoint_is_refused(small, case, capsys):
    model, inp, tmp = small
    if case == "truncated-safetensors":
        bad = tmp / "cut"
        bad.mkdir()
        (bad / "config.json").write_bytes((model / "config.json").read_bytes())
        data = (model / "model.safetensors").read_bytes()
        (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif case == "junk-pt":
        bad = tmp / "junk.pt"
        bad.write_bytes(b"PK\x03\x04 not a checkpoint")
    else:
        bad = tmp / "evil.pt"
        torch.save({"input_blocks.0.0.weight": torch.zeros(1), "x": _Payload(tmp / "pwned")},
                   bad)
    cmd = _cmd(model, inp, tmp / "o")
    cmd[cmd.index("--model") + 1] = str(bad)
    assert cli.main(cmd) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ccdf solve: error:"), err
    assert not (tmp / "pwned").exists() and not (tmp / "o").exists()


class _NaNOnCalls:
    """A model that returns NaN on the given network calls (1-based)."""

    def __init__(self, model, bad):
        self.model, self.bad, self.calls = model, set(bad), 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def to(self, *a, **k):
        return self

    def __call__(self, x, t):
        self.calls += 1
        out = self.model(x, t)
        return out * float("nan") if self.calls in self.bad else out


@pytest.mark.parametrize("batch,bad", [(1, {4}), (3, {1, 2})])  # 3 network calls per item
def test_nan_mid_sampling_fails_that_item_only(small, monkeypatch, capsys, batch, bad):
    import ccdf.solve.run as run

    model, inp, tmp = small
    assert cli.main(_cmd(model, inp, tmp / "ref")) == 0
    real = run.resolve_model
    monkeypatch.setattr(run, "resolve_model", lambda *a: (_NaNOnCalls(real(*a)[0], bad), "nan"))
    assert cli.main(_cmd(model, inp, tmp / "o", "--batch-size", str(batch))) == 1
    culprit = "im01.png" if batch == 1 else "im00.png"  # batch 3: the batch, then im00 alone
    assert f"{culprit} failed: sampling diverged (non-finite" in capsys.readouterr().err
    entries = {e["input"]: e for e in _manifest(tmp / "o")}
    assert entries.pop(culprit)["status"] == "failed"
    for name in entries:  # the others: exactly the outputs of a clean batch-1 run
        assert entries[name]["status"] == "ok"
        stem = name[:-4]
        assert np.array_equal(io.read_image(tmp / "o" / f"{stem}.png"),
                              io.read_image(tmp / "ref" / f"{stem}.png"))


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_read_only_out_is_one_line_and_inputs_untouched(small, capsys):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod does not make a folder read-only")
    model, inp, tmp = small
    ro = tmp / "ro"
    ro.mkdir()
    before = _snapshot(inp)
    ro.chmod(0o555)
    try:
        for out in (ro, ro / "sub"):
            assert cli.main(_cmd(model, inp, out)) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"cannot write to --out {out}" in err[0], err
    finally:
        ro.chmod(0o755)
    assert _snapshot(inp) == before and list(ro.iterdir()) == []


def test_unwritable_out_simulated(small, monkeypatch, capsys):
    """The same path as a read-only folder, for root (who ignores chmod)."""
    import ccdf.solve.manifest as manifest

    model, inp, tmp = small
    before = _snapshot(inp)

    def refuse(out):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(manifest, "_lock", refuse)
    assert cli.main(_cmd(model, inp, tmp / "o")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ccdf solve: error: cannot write to --out {tmp / 'o'}: Permission denied"]
    assert _snapshot(inp) == before


def test_disk_full_keeps_what_was_finished(small, monkeypatch, capsys):
    model, inp, tmp = small
    out = tmp / "o"
    real, calls = io.write_image, []

    def full_after_two_inputs(path, img):  # each input writes NAME_init.png then NAME.png
        calls.append(path)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, img)

    monkeypatch.setattr(io, "write_image", full_after_two_inputs)
    assert cli.main(_cmd(model, inp, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert "the 2 input(s) finished before are kept" in err[0]
    assert [(e["input"], e["status"]) for e in _manifest(out)] == \
        [("im00.png", "ok"), ("im01.png", "ok")]
    kept = {n: (out / n).read_bytes() for n in ("im00.png", "im01.png")}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no lock, no temporaries
    monkeypatch.setattr(io, "write_image", real)
    assert cli.main(_cmd(model, inp, out)) == 0
    assert all((out / n).read_bytes() == b for n, b in kept.items())   # not redone
    assert [e["input"] for e in _manifest(out)] == ["im00.png", "im01.png", "im02.png"]


def test_second_run_on_the_same_out_is_refused_and_stale_lock_taken_over(small, capsys):
    model, inp, tmp = small
    out = tmp / "o"
    out.mkdir()
    fd = os.open(out / ".ccdf.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live run holds the lock
        os.write(fd, b"pid 4242 on node7\n")
        assert cli.main(_cmd(model, inp, out)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"ccdf solve: error: another ccdf solve (pid 4242 on node7) is writing "
                       f"to {out}; wait for it to finish or choose another --out"]
    finally:
        os.close(fd)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".ccdf.lock").write_text(f"pid {dead.pid} on here\n")  # its holder died
    assert cli.main(_cmd(model, inp, out)) == 0
    assert not (out / ".ccdf.lock").exists()


# ----------------------------------------------------------------------------- devices
def test_cuda_unavailable_is_one_line(small, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    model, inp, tmp = small
    assert cli.main(_cmd(model, inp, tmp / "o", "--device", "cuda")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda: no CUDA device is available" in err[0]
    assert not (tmp / "o").exists()


def test_half_precision_runs_on_cpu(small):
    model, inp, tmp = small
    assert cli.main(_cmd(model, inp / "im00.png", tmp / "o", "--half")) == 0
    assert _manifest(tmp / "o")[0]["status"] == "ok"
