"""Training entry points on tiny data: restoration nets, the train/sample commands."""

import json

import numpy as np
import pytest
import torch

from ccdf import cli, io
from ccdf.models.formats import load_restorer
from ccdf.models.restorer import evaluate_restorer, new_restorer, train_restorer
from ccdf.models.train import TrainConfig


def _images(n=12, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth random images: upsampled noise, so SR x4 has something learnable
    low = torch.rand(n, 1, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear",
                                           align_corners=False).clamp(0, 1)


def test_restorer_starts_as_identity_then_learns(tmp_path):
    x = _images()
    cfg = TrainConfig(data="t", image_size=16, block_out_channels=(8, 16), batch_size=8,
                      steps=40, checkpoint_every=20, lr=2e-3, ema_decay=0.9)
    out = train_restorer(cfg, {"task": "sr", "factor": 4}, x, tmp_path / "r", heldout=x[:4],
                         progress=False)
    net = load_restorer(out)
    assert net.task == {"task": "sr", "factor": 4}
    held = net.meta["heldout"]
    assert set(held) >= {"psnr_init", "psnr_net", "mse_init", "mse_net"}
    assert held == pytest.approx(evaluate_restorer(net, x[:4]), rel=1e-5)
    # zero-initialised output layer: an untrained restorer is the identity
    net0 = new_restorer(cfg, {"task": "sr", "factor": 4})
    assert torch.equal(net0(x), x)
    # it learned something on the training images
    assert held["mse_net"] < held["mse_init"]


def test_restorer_refuses_other_folders(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"format": "ccdf-model"}))
    with pytest.raises(ValueError, match="not a ccdf restoration network"):
        load_restorer(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_restorer(tmp_path / "missing")


def test_train_and_sample_commands(tmp_path, capsys):
    data = tmp_path / "imgs"
    for i, img in enumerate(_images(6)):
        io.write_image(data / f"{i}.png", img)
    out = tmp_path / "model"
    args = ["train", "--data", str(data), "--out", str(out), "--image-size", "16",
            "--channels-mult", "8,16", "--batch-size", "4", "--steps", "3",
            "--checkpoint-every", "2", "--no-progress"]
    assert cli.main(args) == 0
    log = [json.loads(ln) for ln in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format"] == "ccdf-model" and "train" in cfg["extra"]["command"]
    png = tmp_path / "grid.png"
    assert cli.main(["sample", "--model", str(out), "--n", "4", "--steps", "3",
                     "--out", str(png)]) == 0
    grid = io.read_image(png)
    assert grid.shape == (1, 32, 32)
    # bad data path: one line, exit 2
    assert cli.main(["train", "--data", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0]


def test_read_idx_roundtrip_and_truncation(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    (tmp_path / "ok.idx").write_bytes(header + arr.tobytes())
    assert np.array_equal(io.read_idx(tmp_path / "ok.idx"), arr)
    (tmp_path / "bad.idx").write_bytes(header + arr.tobytes()[:-3])
    with pytest.raises(io.InputError, match="truncated"):
        io.read_idx(tmp_path / "bad.idx")


def test_tile_lays_images_out_row_by_row_with_blank_cells():
    x = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 1, 2, 3)
    g = io.tile(x, 2)  # 3 rows of 2 cells of 2x3 pixels; the sixth cell blank
    assert g.shape == (1, 6, 6)
    cells = g.reshape(1, 3, 2, 2, 3).permute(1, 3, 0, 2, 4)[:, :, 0].reshape(3, 2, -1)
    assert cells.amin(-1).tolist() == cells.amax(-1).tolist() == [[0, 1], [2, 3], [4, 0]]
