"""Checkpoints of each family, written in the family's own format, through the command line:
``ccdf inspect`` and ``ccdf solve`` end to end on a small RGB 64x64 model (20 steps), and the
one-line refusals."""

import json

import numpy as np
import pytest
import torch

from ccdf import cli
from ccdf.models.adm import ADMUNet
from ccdf.models.ncsnpp import NCSNpp

SIZE = 64


def _randomize(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 / max(p[0].numel(), 1) ** 0.5
                                                         if p.dim() > 1 else 0.05))
    return net


def write_adm(folder, class_cond=False):
    """A guided-diffusion .pt (flat state dict, fp16 as released) + its settings."""
    net = _randomize(ADMUNet(image_size=SIZE, in_channels=3, model_channels=32, out_channels=6,
                             num_res_blocks=1, attention_ds=(4,), channel_mult=(1, 2, 2),
                             num_classes=10 if class_cond else None, num_head_channels=16,
                             use_scale_shift_norm=True, resblock_updown=True), 0)
    path = folder / ("adm_cond.pt" if class_cond else "adm.pt")
    torch.save({k: v.half() for k, v in net.state_dict().items()}, path)
    flags = (f"--image_size {SIZE} --num_channels 32 --num_res_blocks 1 --channel_mult 1,2,2 "
             f"--attention_resolutions 16 --num_head_channels 16 --learn_sigma True "
             f"--resblock_updown True --use_scale_shift_norm True --class_cond {class_cond}")
    return path, flags


NCSN_CONFIG = '''from configs.default_tiny_configs import get_default_configs


def get_config():
  config = get_default_configs()
  training = config.training
  training.sde = 'vesde'
  training.continuous = True
  model = config.model
  model.name = 'ncsnpp'
  model.scale_by_sigma = True
  model.nf = 16
  model.ch_mult = (1, 2)
  model.num_res_blocks = 1
  model.attn_resolutions = (16,)
  model.resamp_with_conv = True
  model.conditional = True
  model.fir = True
  model.fir_kernel = [1, 3, 3, 1]
  model.skip_rescale = True
  model.resblock_type = 'biggan'
  model.progressive = 'none'
  model.progressive_input = 'residual'
  model.progressive_combine = 'sum'
  model.embedding_type = 'fourier'
  model.nonlinearity = 'swish'
  return config
'''
NCSN_DEFAULTS = '''import ml_collections


def get_default_configs():
  config = ml_collections.ConfigDict()
  config.training = training = ml_collections.ConfigDict()
  config.data = data = ml_collections.ConfigDict()
  data.image_size = 64
  data.centered = False
  data.num_channels = 3
  config.model = model = ml_collections.ConfigDict()
  model.sigma_max = 50
  model.sigma_min = 0.01
  model.num_scales = 1000
  model.beta_min = 0.1
  model.beta_max = 20.
  return config
'''


def _score_sde_ckpt(net, path):
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([p])
    torch.save({"optimizer": opt.state_dict(),
                "model": {"module." + k: v for k, v in net.state_dict().items()},
                "ema": {"decay": 0.999, "num_updates": 3,
                        "shadow_params": [q.detach().clone() for q in net.parameters()
                                          if q.requires_grad]},
                "step": 3}, path)
    return path


def write_ncsnpp(folder):
    """score-MRI-style NCSN++ (VE, FIR, residual input pyramid) + its .py config."""
    kw = dict(image_size=SIZE, num_channels=3, centered=False, nf=16, ch_mult=(1, 2),
              num_res_blocks=1, attn_resolutions=(16,), embedding_type="fourier",
              progressive_input="residual", sigma_max=50.0)
    net = _randomize(NCSNpp(**kw), 1)
    (folder / "configs" / "ve").mkdir(parents=True)
    (folder / "configs" / "default_tiny_configs.py").write_text(NCSN_DEFAULTS)
    cfg = folder / "configs" / "ve" / "tiny_ncsnpp_continuous.py"
    cfg.write_text(NCSN_CONFIG)
    return _score_sde_ckpt(net, folder / "checkpoint_1.pth"), cfg


def write_ddpmpp(folder):
    """DDPM++ (VP, continuous, positional), its config as a JSON sidecar."""
    model = dict(name="ncsnpp", nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,),
                 resamp_with_conv=True, conditional=True, fir=False, fir_kernel=[1, 3, 3, 1],
                 skip_rescale=True, resblock_type="biggan", progressive="none",
                 progressive_input="none", progressive_combine="sum",
                 embedding_type="positional", nonlinearity="swish", scale_by_sigma=False,
                 num_scales=1000, sigma_min=0.01, sigma_max=50.0, beta_min=0.1, beta_max=20.0)
    net_kw = {k: v for k, v in model.items() if k not in ("name", "beta_min", "beta_max")}
    net = _randomize(NCSNpp(image_size=SIZE, num_channels=3, centered=True, **net_kw), 2)
    path = _score_sde_ckpt(net, folder / "ddpmpp.pth")
    (folder / "ddpmpp.json").write_text(json.dumps({
        "model": model, "data": {"image_size": SIZE, "num_channels": 3, "centered": True},
        "training": {"sde": "vpsde", "continuous": True}}))
    return path


def write_diffusers(folder):
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=SIZE, in_channels=3, out_channels=3,
                       block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    unet.save_pretrained(folder / "unet")
    DDPMScheduler(timestep_spacing="trailing").save_pretrained(folder / "scheduler")
    return folder


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    d = {}
    for name in ("adm", "adm_cond", "ncsnpp", "ddpmpp", "diffusers"):
        (root / name).mkdir()
    adm, flags = write_adm(root / "adm")
    (root / "adm" / "adm.flags").write_text(f'MODEL_FLAGS="{flags}"\n'
                                           'DIFFUSION_FLAGS="--diffusion_steps 1000 '
                                           '--noise_schedule linear"\n')
    d["adm"] = (adm, [])                       # the sidecar adm.flags is found
    cond, cflags = write_adm(root / "adm_cond", class_cond=True)
    d["adm_cond"] = (cond, ["--model-config", cflags, "--class-label", "3"])
    ck, cfg = write_ncsnpp(root / "ncsnpp")
    d["ncsnpp"] = (ck, ["--model-config", str(cfg)])
    d["ddpmpp"] = (write_ddpmpp(root / "ddpmpp"), [])  # the sidecar ddpmpp.json
    d["diffusers"] = (write_diffusers(root / "diffusers"), [])
    g = np.random.default_rng(0)
    img = root / "img.png"
    from PIL import Image

    Image.fromarray((g.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)).save(img)
    d["_img"] = img
    return d


EXPECT = {  # family, architecture, prediction, data range, conditioning
    "adm": ("guided-diffusion (ADM)", "ADM UNetModel", "eps", [-1.0, 1.0], "none"),
    "adm_cond": ("guided-diffusion (ADM)", "ADM UNetModel", "eps", [-1.0, 1.0],
                 "class label 0..9 (given: 3)"),
    "ncsnpp": ("score_sde / score-MRI", "NCSN++", "score", [0.0, 1.0], "none"),
    "ddpmpp": ("score_sde / score-MRI", "DDPM++", "eps", [-1.0, 1.0], "none"),
    "diffusers": ("diffusers", "UNet2DModel", "eps", [-1.0, 1.0], "none"),
}


@pytest.mark.parametrize("name", list(EXPECT))
def test_inspect(families, name, capsys):
    path, extra = families[name]
    assert cli.main(["inspect", str(path), *extra, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    fam, arch, pred, rng, cond = EXPECT[name]
    assert d["family"] == fam and d["architecture"].startswith(arch)
    assert d["prediction"] == pred and d["data_range"] == rng and d["conditioning"] == cond
    assert d["image_size"] == SIZE and d["channels"] == 3 and d["parameters"] > 1000
    assert isinstance(d["assumed"], list)
    assert cli.main(["inspect", str(path), *extra]) == 0
    text = capsys.readouterr().out
    assert "family" in text and "assumed" in text


@pytest.mark.parametrize("name", list(EXPECT))
def test_solve_end_to_end(families, name, tmp_path, capsys):
    path, extra = families[name]
    out = tmp_path / "out"
    code = cli.main(["solve", "--task", "sr", "--factor", "4", "--input", str(families["_img"]),
                     "--out", str(out), "--model", str(path), *extra, "--steps", "20",
                     "--t0", "1", "--threads", "1", "--no-progress", "--json"])
    assert code == 0, capsys.readouterr().err
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["n_images"] == 1 and s["nfe"] == 20 and np.isfinite(s["psnr_mean"])
    assert (out / "img.png").exists()
    rec = [json.loads(ln) for ln in (out / "manifest.jsonl").read_text().splitlines()]
    assert rec[0]["status"] == "ok"
    if name == "adm_cond":
        assert rec[0]["images"][0]["class_label"] == 3


def test_per_input_class_labels(families, tmp_path, capsys):
    path, extra = families["adm_cond"]
    inp = tmp_path / "in"
    inp.mkdir()
    for n in ("a.png", "b.png"):
        (inp / n).write_bytes(families["_img"].read_bytes())
    (tmp_path / "labels.csv").write_text("name,label\na.png,1\nb,7\n")
    flags = extra[extra.index("--model-config") + 1]
    out = tmp_path / "out"
    args = ["solve", "--task", "sr", "--input", str(inp), "--out", str(out), "--model", str(path),
            "--model-config", flags, "--class-label", str(tmp_path / "labels.csv"),
            "--steps", "20", "--t0", "0.5", "--batch-size", "2", "--no-progress"]
    assert cli.main(args) == 0, capsys.readouterr().err
    rec = {json.loads(ln)["input"]: json.loads(ln)
           for ln in (out / "manifest.jsonl").read_text().splitlines()}
    assert rec["a.png"]["images"][0]["class_label"] == 1
    assert rec["b.png"]["images"][0]["class_label"] == 7
    # the labels matter: b solved alone with label 1 differs
    out2 = tmp_path / "out2"
    assert cli.main(["solve", "--task", "sr", "--input", str(inp / "b.png"), "--out", str(out2),
                     "--model", str(path), "--model-config", flags, "--class-label", "1",
                     "--steps", "20", "--t0", "0.5", "--no-progress"]) == 0
    from ccdf import io

    assert not torch.equal(io.read_image(out / "b.png"), io.read_image(out2 / "b.png"))


@pytest.mark.parametrize("case, msg", [
    ("adm-no-settings", "image_size, num_head_channels (or num_heads), use_new_attention_order"),
    ("cond-no-label", "class-conditional (10 classes"),
    ("uncond-label", "is not class-conditional"),
    ("label-range", "outside 0..9"),
    ("score-sde-no-config", "pass --model-config CONFIG.py"),
])
def test_refusals_are_one_line(families, tmp_path, case, msg, capsys):
    adm, _ = families["adm"]
    cond, cextra = families["adm_cond"]
    flags = cextra[cextra.index("--model-config") + 1]
    bare = tmp_path / "bare.pt"
    bare.write_bytes(adm.read_bytes())
    nc, _ = families["ncsnpp"]
    bare_nc = tmp_path / "ck.pth"
    bare_nc.write_bytes(nc.read_bytes())
    model_args = {"adm-no-settings": [str(bare)],
                  "cond-no-label": [str(cond), "--model-config", flags],
                  "uncond-label": [str(adm), "--class-label", "2"],
                  "label-range": [str(cond), "--model-config", flags, "--class-label", "10"],
                  "score-sde-no-config": [str(bare_nc)]}[case]
    out = tmp_path / "out"
    code = cli.main(["solve", "--task", "sr", "--input", str(families["_img"]), "--out", str(out),
                     "--model", *model_args, "--steps", "20", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and msg in err, err
    assert not out.exists()


def test_sample_with_checkpoint(families, tmp_path, capsys):
    path, extra = families["adm_cond"]
    out = tmp_path / "s.png"
    assert cli.main(["sample", "--model", str(path), *extra, "--n", "2", "--steps", "5",
                     "--out", str(out), "--threads", "1"]) == 0
    assert out.exists()


def test_bench_setup_takes_checkpoint_settings(families, tmp_path):
    """bench and calibrate-t0 load through make_setup with --model-config / --class-label."""
    from ccdf.bench import make_setup

    path, extra = families["adm_cond"]
    flags = extra[extra.index("--model-config") + 1]
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(families["_img"].read_bytes())
    s = make_setup({"task": "sr", "factor": 4}, str(path), str(data), 1, "none", extras=False,
                   model_config=(flags,), class_label="5")
    assert s.model.class_label == 5 and s.x.shape == (1, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="class-conditional"):
        make_setup({"task": "sr", "factor": 4}, str(path), str(data), 1, "none", extras=False,
                   model_config=(flags,))
