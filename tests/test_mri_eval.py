"""The committed MRI evaluation sets (``mri:`` data specs) and outputs that keep their range."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ccdf import datasets, init, io
from ccdf.operators import MRI, make_operator
from ccdf.reconstruction import reconstruct

SHAPES = {"heldout256": (16, 256), "val64": (6, 64), "val128": (6, 128), "val256": (6, 256),
          "ood64": (7, 64), "ood128": (7, 128), "ood256": (7, 256)}
INDEX = json.loads((datasets.MRI_DIR / "index.json").read_text())


@pytest.mark.parametrize("name", datasets.MRI_SETS)
def test_mri_sets_shapes_dtypes_and_scale(name):
    n, size = SHAPES[name]
    x = datasets.load(f"mri:{name}")
    z = datasets.load(f"mri:{name}-complex")
    assert x.shape == z.shape == (n, 1, size, size)
    assert x.dtype == torch.float32 and z.dtype == torch.complex64
    assert x.min() >= 0 and torch.allclose(z.abs(), x, atol=1e-6)
    # scaled as the training slices (volume 99.5th percentile = 1) and not clipped at 1
    assert 0.9 < float(x.max()) < 1.2 and (name.startswith("val") or float(x.max()) > 1)
    phi = torch.angle(z[x > 0.05])
    assert float(phi.std()) > 0.3  # a real phase, not a constant
    assert INDEX["sets"][name]["shape"] == [n, size, size]


def test_phase_is_the_documented_polynomial():
    c = INDEX["sets"]["ood64"]["phase"]
    x, z = datasets.mri_set("ood64"), datasets.mri_set("ood64-complex")
    i, r, col = 2, 10, 50
    u, v = -1 + 2 * col / 63, -1 + 2 * r / 63
    a = c[i]
    phi = a[0] + a[1] * u + a[2] * v + a[3] * u * u + a[4] * u * v + a[5] * v * v
    want = complex(x[i, 0, r, col]) * complex(math.cos(phi), math.sin(phi))
    assert abs(complex(z[i, 0, r, col]) - want) < 1e-5 * max(1.0, abs(want))
    # the same image at 64, 128 and 256 pixels shares its coefficients
    assert c == INDEX["sets"]["ood128"]["phase"] == INDEX["sets"]["ood256"]["phase"]
    assert INDEX["sets"]["ood64"]["items"][0].startswith("Shepp-Logan")


def test_specs_validation_and_errors():
    assert datasets.validation_spec("mri:heldout256") == "mri:val256"
    assert datasets.validation_spec("mri:heldout256-complex") == "mri:val256-complex"
    assert datasets.validation_spec("mri:ood128-complex") == "mri:val128-complex"
    assert datasets.validation_spec("mni152:sample") == "mni152:val"
    assert datasets.validation_spec("mri:val64") is None
    assert datasets.validation_spec("x.npy") is None
    with pytest.raises(ValueError, match="256x256 images but 64x64"):
        datasets.load("mri:heldout256", size=64)
    with pytest.raises(ValueError, match="heldout256"):
        datasets.load("mri:heldout64")
    assert datasets.load("mri:ood64", size=64).shape == (7, 1, 64, 64)


@pytest.mark.skipif(importlib.util.find_spec("nilearn") is None, reason="needs nilearn")
def test_committed_val64_is_what_the_script_writes():
    spec = importlib.util.spec_from_file_location(
        "make_mri_eval", Path(__file__).parents[1] / "scripts" / "make_mri_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    v = io.read_nifti(datasets.mni152_path()).astype(np.float64)
    vol = v / np.percentile(v[v > 0], 99.5)
    want = np.stack(mod.slices(vol, 2, mod.VAL_Z, 64)).astype(np.float16)
    np.testing.assert_array_equal(io.read_npy(datasets.MRI_DIR / "val64.npy"), want)
    np.testing.assert_allclose(mod.phase_coefficients(7, mod.SEEDS["ood"]),
                               INDEX["sets"]["ood64"]["phase"], atol=1e-11)


# ------------------------------------------------------------------ no silent clipping
class _Zero(torch.nn.Module):
    """A denoiser that predicts eps = 0 (x0 = x / a): any prior would do with a full mask."""

    image_size, channels = 16, 1

    def __init__(self):
        super().__init__()
        from ccdf.schedules import VPSchedule

        self.schedule, self.prediction = VPSchedule(), "eps"

    def forward(self, x, t):
        return torch.zeros_like(x)


def _bright():
    g = torch.Generator().manual_seed(0)
    x = 0.5 * torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)
    x[0, 0, 4, 9] = 7.0  # far above the 99.5th percentile of the zero-filled magnitude
    return x


def test_bright_pixel_survives_init_reconstruct_and_peers():
    from ccdf.peers import run_peer

    x = _bright()
    op = MRI(torch.ones(16, 16, dtype=torch.bool))  # fully sampled: the result is x itself
    y = op.A(x)
    zf = init.classic(op, y)
    assert float(np.percentile(zf.abs().numpy(), 99.5)) < 7.0
    assert torch.allclose(zf, x, atol=1e-10)
    r = reconstruct(_Zero(), op, y, zf, t0=0.2, steps=10, generator=torch.Generator())
    assert abs(float(r.x[0, 0, 4, 9]) - 7.0) < 1e-4 and torch.allclose(r.x, x, atol=1e-4)
    xp, _ = run_peer("diffpir", _Zero(), op, y, steps=5, generator=torch.Generator())
    assert abs(float(xp[0, 0, 4, 9]) - 7.0) < 1e-3
    # undersampled: the zero-filled start keeps values above 1 (it used to be clipped)
    op4 = make_operator("mri", (1, 16, 16), pattern="uniform1d", accel=2)
    assert float(init.classic(op4, op4.A(x)).max()) > 1.5
    # other tasks still clamp to [0, 1]
    sr = make_operator("sr", (1, 16, 16), factor=2)
    assert float(init.classic(sr, sr.A(x)).max()) <= 1.0


def test_complex_npy_data_keeps_phase_units_and_size(tmp_path):
    """A complex .npy data spec (``ccdf bench --input``) is loaded as it is: complex, in its
    units (not clipped to [0, 1]), at its size; a size the model does not take is refused."""
    rng = np.random.default_rng(0)
    a = (3 * rng.random((2, 20, 24)) * np.exp(1j * rng.random((2, 20, 24)))).astype(np.complex64)
    np.save(tmp_path / "c.npy", a)
    x = datasets.load(str(tmp_path / "c.npy"))
    assert x.dtype == torch.complex64 and x.shape == (2, 1, 20, 24)
    np.testing.assert_array_equal(x[:, 0].numpy(), a)
    with pytest.raises(ValueError, match="complex images but 64x64"):
        datasets.load(str(tmp_path / "c.npy"), size=64)
    np.save(tmp_path / "bad.npy", a[0, 0])
    with pytest.raises(io.InputError, match="complex images must be"):
        datasets.load(str(tmp_path / "bad.npy"))
