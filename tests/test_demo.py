"""``ccdf demo`` end to end on a tiny random model standing in for the embedded one."""

import json

import torch

from ccdf import demo
from ccdf.models.formats import save_model
from ccdf.models.unet import UNetDenoiser, build_unet
from ccdf.schedules import VPSchedule


def test_demo_writes_report_table_and_figures(tmp_path, monkeypatch):
    torch.manual_seed(0)
    models = tmp_path / "models"
    save_model(UNetDenoiser(build_unet(32, 1, (8, 16)), VPSchedule()), models / "default-image")
    monkeypatch.setattr(demo, "_asset", lambda name: models / name)
    out = tmp_path / "out"
    report = demo.run_demo(out, quick=True, tasks=["sr4", "mri4"], log=lambda *_: None)
    text = report.read_text()
    assert "| method | NFE | PSNR | SSIM | s/image |" in text
    assert "embedded model default-mri is not in this build yet" in text  # skipped, said so
    res = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in res[0]["rows"]}
    assert rows["full run (t0=1), N=1000"]["nfe"] == 1000
    assert rows["CCDF classic start, N=100 t0=0.2, mean of 4"]["nfe"] == 80  # 4 samples x 20
    assert rows["initial estimate (classic)"]["nfe"] == 0
    assert [t for t, _ in res[0]["sweep"]["classic"]] == [0.05, 0.1, 0.2, 0.5, 1.0]
    assert (out / "sr4_grid.png").stat().st_size > 0
    assert (out / "sr4_psnr_vs_t0.png").stat().st_size > 0
