"""ADM (guided-diffusion) checkpoint conversion, checked against ADM's own forward pass.

The ADM side is re-implemented here from guided_diffusion/unet.py (UNetModel, ResBlock,
AttentionBlock, QKVAttentionLegacy / QKVAttention, timestep_embedding) as plain functions of
the ADM state dict, independently of the key mapping in ``ccdf.models.adm``; a synthetic
state dict with ADM's exact key layout is built the way ``UNetModel.__init__`` builds it.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from ccdf.models.adm import EpsOnly, adm_alphas_cumprod, infer_adm, load_adm_checkpoint
from ccdf.models.formats import load_model, save_model
from ccdf.models.unet import UNetDenoiser

TINY = dict(image_size=32, num_channels=32, channel_mult=(1, 2), num_res_blocks=1,
            attention_resolutions="16", num_head_channels=16, num_heads=4, resblock_updown=True,
            use_scale_shift_norm=True, learn_sigma=True, use_new_attention_order=False,
            class_cond=False, num_heads_upsample=-1)
# the other branch of every flag: conv down/up-sampling, additive time embedding, 3 outputs,
# a fixed head count, QKVAttention's [q | k | v] order
TINY_ALT = dict(TINY, resblock_updown=False, use_scale_shift_norm=False, learn_sigma=False,
                num_head_channels=-1, num_heads=2, use_new_attention_order=True)
# class-conditional, the 512 model's fractional first width (0.5 x 64 = 32 channels), a fixed
# head count over levels of different widths (64 and 128 channels), other heads upsampling
COND = dict(TINY, image_size=32, num_channels=64, channel_mult=(0.5, 1, 2),
            attention_resolutions="16,8", num_head_channels=-1, num_heads=4,
            num_heads_upsample=2, class_cond=True, num_res_blocks=2,
            use_new_attention_order=True)
NUM_CLASSES = 10



# ----------------------------------------------------------------------------- ADM layout
def adm_state_dict(f: dict, in_ch: int = 3, seed: int = 0) -> dict:
    """Random weights with the keys / shapes of guided_diffusion.unet.UNetModel(**f)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    mc, temb = f["num_channels"], 4 * f["num_channels"]
    attn_ds = {f["image_size"] // int(r) for r in f["attention_resolutions"].split(",")}

    def norm(p, c):
        sd[p + ".weight"] = 1 + 0.2 * torch.randn(c, generator=g)
        sd[p + ".bias"] = 0.2 * torch.randn(c, generator=g)

    def conv(p, cin, cout, k, dims=2):
        fan = cin * k**dims
        sd[p + ".weight"] = torch.randn(cout, cin, *[k] * dims, generator=g) / math.sqrt(fan)
        sd[p + ".bias"] = 0.2 * torch.randn(cout, generator=g)

    def linear(p, cin, cout):
        sd[p + ".weight"] = torch.randn(cout, cin, generator=g) / math.sqrt(cin)
        sd[p + ".bias"] = 0.2 * torch.randn(cout, generator=g)

    def res(p, cin, cout):
        norm(p + ".in_layers.0", cin)
        conv(p + ".in_layers.2", cin, cout, 3)
        linear(p + ".emb_layers.1", temb, 2 * cout if f["use_scale_shift_norm"] else cout)
        norm(p + ".out_layers.0", cout)
        conv(p + ".out_layers.3", cout, cout, 3)
        if cin != cout:
            conv(p + ".skip_connection", cin, cout, 1)

    def attn(p, c):
        norm(p + ".norm", c)
        conv(p + ".qkv", c, 3 * c, 1, dims=1)
        conv(p + ".proj_out", c, c, 1, dims=1)

    def resample(p, ch, up):
        if f["resblock_updown"]:
            res(p, ch, ch)
        else:
            conv(p + (".conv" if up else ".op"), ch, ch, 3)

    linear("time_embed.0", mc, temb)
    linear("time_embed.2", temb, temb)
    if f.get("class_cond"):
        sd["label_emb.weight"] = torch.randn(NUM_CLASSES, temb, generator=g)
    ch = int(mc * f["channel_mult"][0])
    conv("input_blocks.0.0", in_ch, ch, 3)
    chans, ds, i = [ch], 1, 1
    for level, m in enumerate(f["channel_mult"]):
        for _ in range(f["num_res_blocks"]):
            res(f"input_blocks.{i}.0", ch, int(m * mc))
            ch = int(m * mc)
            if ds in attn_ds:
                attn(f"input_blocks.{i}.1", ch)
            chans.append(ch)
            i += 1
        if level != len(f["channel_mult"]) - 1:
            resample(f"input_blocks.{i}.0", ch, up=False)
            chans.append(ch)
            i, ds = i + 1, ds * 2
    res("middle_block.0", ch, ch)
    attn("middle_block.1", ch)
    res("middle_block.2", ch, ch)
    k = 0
    for level, m in list(enumerate(f["channel_mult"]))[::-1]:
        for j in range(f["num_res_blocks"] + 1):
            res(f"output_blocks.{k}.0", ch + chans.pop(), int(m * mc))
            ch, nxt = int(m * mc), 1
            if ds in attn_ds:
                attn(f"output_blocks.{k}.1", ch)
                nxt = 2
            if level and j == f["num_res_blocks"]:
                resample(f"output_blocks.{k}.{nxt}", ch, up=True)
                ds //= 2
            k += 1
    norm("out.0", ch)
    conv("out.2", ch, in_ch * (2 if f["learn_sigma"] else 1), 3)
    return sd


# ----------------------------------------------------------------------------- ADM forward
def _gn(sd, p, x):
    return F.group_norm(x, 32, sd[p + ".weight"], sd[p + ".bias"], eps=1e-5)


def adm_resblock(sd, p, x, emb, scale_shift=True, up=False, down=False):
    h = F.silu(_gn(sd, p + ".in_layers.0", x))
    if up:
        h, x = F.interpolate(h, scale_factor=2, mode="nearest"), F.interpolate(x, scale_factor=2,
                                                                                 mode="nearest")
    elif down:
        h, x = F.avg_pool2d(h, 2, 2), F.avg_pool2d(x, 2, 2)
    h = F.conv2d(h, sd[p + ".in_layers.2.weight"], sd[p + ".in_layers.2.bias"], padding=1)
    e = F.linear(F.silu(emb), sd[p + ".emb_layers.1.weight"], sd[p + ".emb_layers.1.bias"])
    e = e[..., None, None]
    if scale_shift:
        scale, shift = e.chunk(2, dim=1)
        h = F.silu(_gn(sd, p + ".out_layers.0", h) * (1 + scale) + shift)
    else:
        h = F.silu(_gn(sd, p + ".out_layers.0", h + e))
    h = F.conv2d(h, sd[p + ".out_layers.3.weight"], sd[p + ".out_layers.3.bias"], padding=1)
    if p + ".skip_connection.weight" in sd:
        x = F.conv2d(x, sd[p + ".skip_connection.weight"], sd[p + ".skip_connection.bias"])
    return x + h


def adm_attention(sd, p, x, heads, new_order=False):
    b, c, *spatial = x.shape
    x = x.reshape(b, c, -1)
    qkv = F.conv1d(_gn(sd, p + ".norm", x), sd[p + ".qkv.weight"], sd[p + ".qkv.bias"])
    bs, width, length = qkv.shape
    ch = width // (3 * heads)
    if new_order:  # QKVAttention
        q, k, v = (u.reshape(bs * heads, ch, length) for u in qkv.chunk(3, dim=1))
    else:  # QKVAttentionLegacy
        q, k, v = qkv.reshape(bs * heads, ch * 3, length).split(ch, dim=1)
    scale = 1 / math.sqrt(math.sqrt(ch))
    w = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
    a = torch.einsum("bts,bcs->bct", w, v).reshape(bs, -1, length)
    h = F.conv1d(a, sd[p + ".proj_out.weight"], sd[p + ".proj_out.bias"])
    return (x + h).reshape(b, c, *spatial)


def adm_timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def adm_forward(sd, f, x, t, y=None):
    """guided_diffusion UNetModel.forward on the state dict (dtype of the sd)."""
    dt = x.dtype
    ss, updown, new = f["use_scale_shift_norm"], f["resblock_updown"], f["use_new_attention_order"]
    attn_ds = {f["image_size"] // int(r) for r in f["attention_resolutions"].split(",")}

    def heads(c, up=False):
        if f["num_head_channels"] > 0:
            return c // f["num_head_channels"]
        return f["num_heads_upsample"] if up and f["num_heads_upsample"] > 0 else f["num_heads"]

    def resample(p, h, up):
        if updown:
            return adm_resblock(sd, p, h, emb, ss, up=up, down=not up)
        if up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            return F.conv2d(h, sd[p + ".conv.weight"], sd[p + ".conv.bias"], padding=1)
        return F.conv2d(h, sd[p + ".op.weight"], sd[p + ".op.bias"], stride=2, padding=1)

    emb = adm_timestep_embedding(t, f["num_channels"]).to(dt)
    emb = F.linear(emb, sd["time_embed.0.weight"], sd["time_embed.0.bias"])
    emb = F.linear(F.silu(emb), sd["time_embed.2.weight"], sd["time_embed.2.bias"])
    if y is not None:
        emb = emb + sd["label_emb.weight"][y]
    h = F.conv2d(x, sd["input_blocks.0.0.weight"], sd["input_blocks.0.0.bias"], padding=1)
    hs, ds, i, n = [h], 1, 1, len(f["channel_mult"])
    for level in range(n):
        for _ in range(f["num_res_blocks"]):
            h = adm_resblock(sd, f"input_blocks.{i}.0", h, emb, ss)
            if ds in attn_ds:
                h = adm_attention(sd, f"input_blocks.{i}.1", h, heads(h.shape[1]), new)
            hs.append(h)
            i += 1
        if level != n - 1:
            h = resample(f"input_blocks.{i}.0", h, up=False)
            hs.append(h)
            i, ds = i + 1, ds * 2
    h = adm_resblock(sd, "middle_block.0", h, emb, ss)
    h = adm_attention(sd, "middle_block.1", h, heads(h.shape[1]), new)
    h = adm_resblock(sd, "middle_block.2", h, emb, ss)
    k = 0
    for level in reversed(range(n)):
        for j in range(f["num_res_blocks"] + 1):
            h = adm_resblock(sd, f"output_blocks.{k}.0", torch.cat([h, hs.pop()], 1), emb, ss)
            nxt = 1
            if ds in attn_ds:
                h = adm_attention(sd, f"output_blocks.{k}.1", h, heads(h.shape[1], up=True), new)
                nxt = 2
            if level and j == f["num_res_blocks"]:
                h = resample(f"output_blocks.{k}.{nxt}", h, up=True)
                ds //= 2
            k += 1
    h = F.silu(_gn(sd, "out.0", h))
    return F.conv2d(h, sd["out.2.weight"], sd["out.2.bias"], padding=1)


# ----------------------------------------------------------------------------- helpers
def _rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def _settings(f, **extra):
    """The settings a user passes (a JSON/YAML mapping): what the weights cannot tell."""
    keys = ("image_size", "num_heads", "num_head_channels", "num_heads_upsample",
            "use_new_attention_order")
    return {**{k: f[k] for k in keys}, "noise_schedule": "linear", "diffusion_steps": 1000,
            **extra}


def _save(tmp_path, f, seed=5, dtype=None, name="adm.pt"):
    sd = adm_state_dict(f, seed=seed)
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    torch.save(sd, tmp_path / name)
    return sd, tmp_path / name


CASES = {"updown-scaleshift-legacy": TINY, "conv-additive-neworder-fixedheads": TINY_ALT,
         "classcond-halfmult-fixedheads-upheads": COND}


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", list(CASES))
def test_infer_from_weights(name):
    f = CASES[name]
    got = infer_adm(adm_state_dict(f))
    assert got["model_channels"] == f["num_channels"]
    assert got["channel_mult"] == tuple(f["channel_mult"])
    assert got["num_res_blocks"] == f["num_res_blocks"]
    assert set(got["attention_ds"]) == {f["image_size"] // int(r)
                                        for r in f["attention_resolutions"].split(",")}
    assert got["out_channels"] == (6 if f["learn_sigma"] else 3)
    assert got["resblock_updown"] == f["resblock_updown"]
    assert got["use_scale_shift_norm"] == f["use_scale_shift_norm"]
    assert got["num_classes"] == (NUM_CLASSES if f["class_cond"] else None)


@pytest.mark.parametrize("name", list(CASES))
def test_full_network_matches_adm_forward(name, tmp_path):
    f = CASES[name]
    sd, path = _save(tmp_path, f)
    model = load_model(path, config=_settings(f))
    assert isinstance(model, UNetDenoiser) and model.image_size == 32 and model.channels == 3
    assert isinstance(model.unet, EpsOnly) == f["learn_sigma"]
    assert model.prediction == "eps" and model.time_input == "discrete"
    assert model.num_classes == (NUM_CLASSES if f["class_cond"] else None)
    model = model.double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    k = torch.tensor([0, 617])
    y = torch.tensor([3, 7]) if f["class_cond"] else None
    with torch.no_grad():
        got = model(x, (k + 1) / 1000, class_labels=y)
        ref = adm_forward({n: v.double() for n, v in sd.items()}, f, x, k.double(), y)
    assert got.shape == (2, 3, 32, 32)
    assert _rel_err(got, ref[:, :3]) < 1e-10
    if f["class_cond"]:  # the label matters, and is required
        with torch.no_grad():
            other = model(x, (k + 1) / 1000, class_labels=torch.tensor([4, 4]))
        assert _rel_err(other, ref[:, :3]) > 1e-3
        with pytest.raises(ValueError, match="class-conditional"):
            model(x, (k + 1) / 1000)


def test_qkv_order_and_heads_matter(tmp_path):
    """The settings the weights cannot tell change the output: a wrong one is never silent."""
    f = COND
    sd, path = _save(tmp_path, f)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t, y = torch.tensor([0.4]), torch.tensor([1])
    with torch.no_grad():
        ref = adm_forward(sd, f, x, torch.tensor([399.0]), y)[:, :3]
        good = load_model(path, config=_settings(f))(x, t, class_labels=y)
        legacy = load_model(path, config=_settings(f, use_new_attention_order=False))(
            x, t, class_labels=y)
        heads = load_model(path, config=_settings(f, num_heads_upsample=4))(x, t, class_labels=y)
    assert _rel_err(good, ref) < 1e-5
    assert _rel_err(legacy, ref) > 1e-3 and _rel_err(heads, ref) > 1e-3


def test_fp16_weights_load_exactly(tmp_path):
    sd, path = _save(tmp_path, TINY, dtype=torch.float16)
    model = load_model(path, config=_settings(TINY)).double()
    assert model.meta["weights_dtype"] == "float16"
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        ref = adm_forward({k: v.double() for k, v in sd.items()}, TINY, x, torch.tensor([99.0]))
        got = model(x, torch.tensor([0.1]))
    assert _rel_err(got, ref[:, :3]) < 1e-10


DPS_MODEL = """# Defaults for image training.
image_size: 32
num_channels: 32
num_res_blocks: 1
channel_mult: "1,2"
learn_sigma: True
class_cond: False
use_checkpoint: False
attention_resolutions: 16
num_heads: 4
num_head_channels: 16
num_heads_upsample: -1
use_scale_shift_norm: True
dropout: 0.0
resblock_updown: True
use_fp16: False
use_new_attention_order: False
model_path: models/tiny.pt
"""
DPS_DIFFUSION = """sampler: ddpm
steps: 1000
noise_schedule: linear
model_mean_type: epsilon
model_var_type: learned_range
dynamic_threshold: False
clip_denoised: True
rescale_timesteps: False
timestep_respacing: 1000
"""
DDRM_YML = """data:
    dataset: "ImageNet"
    image_size: 32
    channels: 3
model:
    type: "openai"
    in_channels: 3
    out_channels: 3
    num_channels: 32
    num_heads: 2
    num_res_blocks: 1
    attention_resolutions: "16"
    dropout: 0.0
    resamp_with_conv: True
    learn_sigma: False
    use_scale_shift_norm: false
    use_fp16: false
    resblock_updown: false
    num_heads_upsample: -1
    var_type: 'fixedsmall'
    num_head_channels: -1
    image_size: 32
    class_cond: false
    use_new_attention_order: true
diffusion:
    beta_schedule: linear
    beta_start: 0.0001
    beta_end: 0.02
    num_diffusion_timesteps: 500
"""


def test_dps_yaml_pair(tmp_path):
    sd, path = _save(tmp_path, TINY)
    (tmp_path / "model_config.yaml").write_text(DPS_MODEL)
    (tmp_path / "diffusion_config.yaml").write_text(DPS_DIFFUSION)
    model = load_model(path, config=[tmp_path / "model_config.yaml",
                                     tmp_path / "diffusion_config.yaml"])
    assert model.clip_x0 == (-1.0, 1.0) and model.prediction == "eps"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert _rel_err(model(x, torch.tensor([0.5])),
                        adm_forward(sd, TINY, x, torch.tensor([499.0]))[:, :3]) < 1e-5
    # the model config alone lacks the schedule: refused, naming it
    with pytest.raises(ValueError, match="noise_schedule and diffusion_steps"):
        load_model(path, config=[tmp_path / "model_config.yaml"])


def test_ddrm_nested_yaml_and_explicit_betas(tmp_path):
    sd, path = _save(tmp_path, TINY_ALT)
    (tmp_path / "imagenet.yml").write_text(DDRM_YML)
    model = load_model(path, config=[tmp_path / "imagenet.yml"])
    ab = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 500, dtype=torch.float64), 0)
    assert torch.allclose(torch.tensor(model.schedule.table, dtype=torch.float64), ab, rtol=1e-12)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():  # 500 steps: t = (k + 1) / 500
        assert _rel_err(model(x, torch.tensor([0.5])),
                        adm_forward(sd, TINY_ALT, x, torch.tensor([249.0]))) < 1e-5


def test_flags_string_and_file(tmp_path):
    sd, path = _save(tmp_path, COND)
    flags = ("--attention_resolutions 16,8 --class_cond True --image_size 32 --learn_sigma True "
             "--num_channels 64 --num_heads 4 --num_heads_upsample 2 --num_res_blocks 2 "
             "--resblock_updown True --use_scale_shift_norm True --use_new_attention_order True "
             "--noise_schedule cosine --diffusion_steps 4000")
    # a shell file as guided-diffusion's README writes it
    (tmp_path / "flags.sh").write_text(f'MODEL_FLAGS="{flags}"\nSAMPLE_FLAGS="--batch_size 4"\n')
    for cfg in (flags, str(tmp_path / "flags.sh")):
        model = load_model(path, config=cfg)
        assert model.num_classes == NUM_CLASSES and len(model.schedule.table) == 4000
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f((i + 1) / 4000) / f(i / 4000), 0.999) for i in range(4000)]
    assert model.schedule.table[-1] == pytest.approx(math.prod(1 - b for b in betas), rel=1e-9)
    assert adm_alphas_cumprod("cosine", 4000) == model.schedule.table
    x, y = torch.randn(1, 3, 32, 32), torch.tensor([2])
    with torch.no_grad():  # t = 1000/4000: step 999
        assert _rel_err(model(x, torch.tensor([0.25]), class_labels=y),
                        adm_forward(sd, COND, x, torch.tensor([999.0]), y)[:, :3]) < 1e-5
    # flags left out take guided-diffusion's defaults, and say so; but never the image size
    short = flags.replace("--use_new_attention_order True ", "")
    m = load_model(path, config=short)
    assert any("use_new_attention_order = False (guided-diffusion default" in a
               for a in m.meta["assumed"])
    with pytest.raises(ValueError, match="image_size not in the weights"):
        load_model(path, config=flags.replace("--image_size 32 ", ""))
    with pytest.raises(ValueError, match="super-resolution model"):
        load_model(path, config=flags + " --large_size 32 --small_size 8")


def test_sidecar_beside_checkpoint(tmp_path):
    sd, path = _save(tmp_path, TINY, name="ffhq_tiny.pt")
    (tmp_path / "ffhq_tiny.yaml").write_text(DPS_MODEL + "noise_schedule: linear\n"
                                             "diffusion_steps: 1000\n")
    model = load_model(path)
    assert model.image_size == 32 and "ffhq_tiny.yaml" in model.meta["settings_from"]


@pytest.mark.parametrize("settings, msg", [
    (None, "image_size, num_head_channels \\(or num_heads\\), use_new_attention_order, "
           "noise_schedule and diffusion_steps"),
    ({"image_size": 32, "num_head_channels": 16, "noise_schedule": "linear",
      "diffusion_steps": 1000}, "use_new_attention_order not in the weights"),
    (dict(_settings(TINY), num_channels=64), "num_channels = 64 but the weights have 32"),
    (dict(_settings(TINY), attention_resolutions="8"), "attention_resolutions"),
    (dict(_settings(TINY), num_head_channels=24), "num_head_channels 24 does not divide"),
    (dict(_settings(TINY), image_size=31), "not divisible"),
    (dict(_settings(TINY), noise_schedule="sigmoid"), "unsupported ADM noise schedule"),
    (dict(_settings(TINY), dynamic_threshold=True), "dynamic_threshold"),
])
def test_ambiguous_or_contradicting_settings_are_refused(tmp_path, settings, msg):
    sd, path = _save(tmp_path, TINY)
    with pytest.raises(ValueError, match=msg):
        load_model(path, config=() if settings is None else settings)


def test_trailing_grid_feeds_training_steps(tmp_path):
    sd, path = _save(tmp_path, TINY)
    model = load_model(path, config=_settings(TINY))
    for n in (100, 30):  # 30 does not divide 1000: steps round(i 1000/30) - 1
        g = model.schedule.grid(n)
        ks = model.timesteps(g.t[1:])
        want = torch.round(torch.arange(1, n + 1, dtype=torch.float64) * 1000 / n) - 1
        assert torch.equal(ks, want)
        ab = torch.tensor(model.schedule.table, dtype=torch.float64)
        assert torch.equal(g.a[1:] ** 2, ab[want.long()].sqrt() ** 2)


def test_converted_model_saves_as_ccdf_folder(tmp_path):
    sd, path = _save(tmp_path, COND)
    model = load_model(path, config=_settings(COND))
    save_model(model, tmp_path / "folder")
    again = load_model(tmp_path / "folder")
    assert isinstance(again.unet, EpsOnly) and again.channels == 3 and again.num_classes == 10
    x = torch.randn(2, 3, 32, 32)
    t = torch.tensor([0.3, 0.9], dtype=torch.float64)
    y = torch.tensor([0, 9])
    with torch.no_grad():
        torch.testing.assert_close(again(x, t, class_labels=y), model(x, t, class_labels=y),
                                   rtol=0, atol=0)
    assert again.schedule == model.schedule and again.meta["family"] == "guided-diffusion (ADM)"


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"input_blocks.0.0.weight": torch.zeros(1), "x": _Payload(marker)}, path)
    with pytest.raises(ValueError, match="refusing to load .*pickled code is never executed"):
        load_model(path)
    with pytest.raises(ValueError, match="refusing to load"):
        load_adm_checkpoint(path)
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    live = tmp_path / "live"
    torch.save({"x": _Payload(live)}, tmp_path / "live.pt")
    torch.load(tmp_path / "live.pt", weights_only=False)
    assert live.exists()
    # a pickle of plain, non-tensor data is refused too
    torch.save({"a": [1, 2]}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="neither a guided-diffusion state dict"):
        load_model(tmp_path / "plain.pt")
