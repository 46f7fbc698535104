"""ccdf.assets (embedded names, task defaults, Task, parse_t0) and the shared CLI arguments."""

import argparse
import subprocess
import sys

import pytest
import torch

from ccdf import assets
from ccdf.assets import Task, default_prior, default_restorer, parse_t0, task_key
from ccdf.cli.args import add_task_args, float_list, int_list, task_of
from ccdf.operators import make_operator


def test_embedded_models_are_in_the_package():
    for name in (*assets.PRIORS, assets.RESTORER_SR4, assets.RESTORER_MRI, assets.RESTORER_DEBLUR,
                 assets.RESTORER_INPAINT, assets.SR3_SR4, assets.ESRGAN_SR4, assets.FASHION_CLASSIFIER):
        assert assets.has_asset(name), name
        assert assets.asset_path(name).parent == assets.ASSETS / "models"
    for f in assets.SAMPLES.values():
        assert (assets.ASSETS / f).is_file()


def test_task_dicts_and_keys():
    t = Task("mri", pattern="uniform1d", accel=4, acs=None, seed=3)
    assert t.as_dict() == {"task": "mri", "pattern": "uniform1d", "accel": 4, "acs": None,
                           "seed": 3}
    assert Task.of(t.as_dict()) == t and Task.of(t) is t
    assert t.task_key == task_key(t.as_dict()) == "mri accel=4.0 pattern=uniform1d"
    assert Task("sr").task_key == task_key({"task": "sr", "factor": 4}) == "sr factor=4 kernel=avg"
    # an inpainting mask left None is the default box (as ``solve`` runs it)
    assert Task("inpaint").task_key == task_key({"task": "inpaint", "mask": "box"})
    assert Task("mri", coils=8).as_dict()["coils"] == 8
    assert "coils" not in Task("mri").as_dict()
    with pytest.raises(ValueError, match="unknown task"):
        Task("denoise")
    with pytest.raises(ValueError, match="unknown parameter"):
        Task.of({"task": "sr", "factr": 2})


def test_task_operator_is_make_operator():
    x = torch.rand(2, 1, 16, 16)
    for t in (Task("sr", factor=2, kernel="bicubic"), Task("inpaint", mask="box"),
              Task("mri", pattern="random1d", accel=4, seed=1), Task("deblur", kernel_sigma=1.0)):
        want = make_operator(t.name, (1, 16, 16), **{k: v for k, v in t.params.items()
                                                       if v is not None})
        assert torch.equal(t.operator((1, 16, 16)).A(x), want.A(x))


def test_defaults_per_task():
    assert default_prior("mri") == default_prior(Task("mri")) == assets.DEFAULT_MRI
    assert default_prior({"task": "sr"}) == assets.DEFAULT_IMAGE
    assert default_restorer({"task": "sr", "factor": 4, "kernel": "avg"}) == assets.RESTORER_SR4
    assert default_restorer(Task("sr", factor=4, kernel="bicubic")) is None
    assert default_restorer(Task("sr", factor=2)) is None
    assert default_restorer(Task("mri", pattern="vd2d", accel=8)) == assets.RESTORER_MRI
    assert default_restorer(Task("deblur", kernel="gaussian", kernel_sigma=2.0)) == \
        assets.RESTORER_DEBLUR
    assert default_restorer(Task("deblur", kernel_sigma=1.0)) is None
    assert default_restorer(Task("inpaint", mask="box")) == default_restorer(Task("inpaint")) \
        == assets.RESTORER_INPAINT
    assert default_restorer(Task("inpaint", mask="random:0.5")) is None


def test_parse_t0():
    assert parse_t0("0.3") == 0.3 and parse_t0(1) == 1.0 and parse_t0("auto") == "auto"
    with pytest.raises(ValueError, match=r"t0 must be in \(0, 1\], got 1.5"):
        parse_t0("1.5")
    with pytest.raises(ValueError, match="or 'auto', got 'soon'"):
        parse_t0("soon")
    with pytest.raises(ValueError, match="number"):
        parse_t0("auto", auto=False)
    for bad in ("0", "nan", "-0.1"):
        with pytest.raises(ValueError):
            parse_t0(bad)


def test_cli_task_args_and_lists():
    p = argparse.ArgumentParser()
    add_task_args(p)
    p.add_argument("--seed", type=int, default=0)
    assert task_of(p.parse_args(["--task", "sr"])).as_dict() == \
        {"task": "sr", "factor": 4, "kernel": "avg"}
    assert task_of(p.parse_args(["--task", "deblur", "--seed", "2"])).as_dict() == \
        {"task": "deblur", "kernel": "gaussian", "kernel_sigma": 2.0, "kernel_size": None,
         "seed": 2}
    assert task_of(p.parse_args(["--task", "mri", "--acs", "0.1"])).as_dict() == \
        {"task": "mri", "pattern": "uniform1d", "accel": 4, "acs": 0.1, "seed": 0}
    assert int_list("100,1000") == (100, 1000)
    assert float_list("0.05,1") == (0.05, 1.0) and isinstance(float_list("1")[0], float)
    with pytest.raises(argparse.ArgumentTypeError):
        int_list("0.5,1")


def test_cli_import_leaves_torch_alone():
    """``set_threads`` must run before torch is imported: the CLI modules import no torch."""
    code = "import sys, ccdf.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
