"""score_sde / score-MRI checkpoints (NCSN++, DDPM++): ccdf's port against an independent
functional reference, and the checkpoint, EMA and config handling.

The reference below is written from the paper (Song et al. 2021, appendix H) and score_sde's
module layout, as plain functions of a state dict with score_sde's key names; it shares no
code with ``ccdf.models.ncsnpp``: FIR resampling is done with explicit per-axis matrices
(the definition of upfirdn2d), attention with an explicit softmax, NIN as a 1x1 conv.
A random state dict is built in score_sde's layout, saved the way score_sde saves a
checkpoint ({'optimizer', 'model' (DataParallel 'module.' keys), 'ema', 'step'}).
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from ccdf.models.formats import load_model
from ccdf.models.score_sde import read_config_py

BASE = dict(nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,),
            resamp_with_conv=True, conditional=True, fir=True, fir_kernel=[1, 3, 3, 1],
            skip_rescale=True, resblock_type="biggan", progressive="none",
            progressive_input="residual", progressive_combine="sum", embedding_type="fourier",
            nonlinearity="swish", scale_by_sigma=True, num_scales=1000, sigma_min=0.01,
            sigma_max=50.0, beta_min=0.1, beta_max=20.0, name="ncsnpp", normalization="GroupNorm",
            attention_type="ddpm", init_scale=0.0, fourier_scale=16, conv_size=3, dropout=0.0,
            ema_rate=0.999)
# (model overrides, data overrides, training) -- score-MRI's NCSN++ first
CASES = {
    "ncsnpp-ve-fir-residual-input": ({}, dict(num_channels=1, centered=False),
                                     dict(sde="vesde", continuous=True)),
    "ncsnpp-outputskip-inputskip-cat": (dict(progressive="output_skip",
                                             progressive_input="input_skip",
                                             progressive_combine="cat", num_res_blocks=2,
                                             attn_resolutions=(16, 8)),
                                        dict(num_channels=3, centered=False),
                                        dict(sde="vesde", continuous=True)),
    "ddpm-blocks-fir-outputskip-vediscrete": (dict(resblock_type="ddpm", resamp_with_conv=False,
                                                   progressive="output_skip",
                                                   progressive_input="input_skip",
                                                   embedding_type="positional", skip_rescale=False,
                                                   num_scales=10),
                                              dict(num_channels=3, centered=False),
                                              dict(sde="vesde", continuous=False)),
    "ddpmpp-vp-continuous": (dict(fir=False, progressive_input="none", scale_by_sigma=False,
                                  embedding_type="positional"),
                             dict(num_channels=3, centered=True),
                             dict(sde="vpsde", continuous=True)),
    "ddpmpp-vp-discrete-unconditional-noskip": (dict(fir=False, scale_by_sigma=False,
                                                     embedding_type="positional",
                                                     conditional=False, skip_rescale=False,
                                                     num_scales=50),
                                                dict(num_channels=1, centered=True),
                                                dict(sde="vpsde", continuous=False)),
}
SIZE = 32


def config_of(name):
    m, d, t = CASES[name]
    return {"model": {**BASE, **m}, "data": {"image_size": SIZE, **d}, "training": dict(t)}


# ----------------------------------------------------------------------------- the layout
def layout(cfg):
    """[(kind, spec)] in score_sde's all_modules order (NCSNpp.__init__)."""
    m, d = cfg["model"], cfg["data"]
    nf, mult, nrb = m["nf"], m["ch_mult"], m["num_res_blocks"]
    res = [d["image_size"] // 2**i for i in range(len(mult))]
    C, L = d["num_channels"], []
    biggan = m["resblock_type"] == "biggan"

    def block(cin, cout=None, up=False, down=False):
        L.append(("biggan" if biggan else "ddpmres", dict(cin=cin, cout=cout or cin, up=up,
                                                          down=down, temb=4 * nf)))

    if m["embedding_type"] == "fourier":
        L.append(("fourier", dict(n=nf)))
        e = 2 * nf
    else:
        e = nf
    if m["conditional"]:
        L += [("dense", dict(cin=e, cout=4 * nf)), ("dense", dict(cin=4 * nf, cout=4 * nf))]
    L.append(("conv3", dict(cin=C, cout=nf)))
    hs, ch, pin = [nf], nf, C
    for i in range(len(mult)):
        for _ in range(nrb):
            block(ch, nf * mult[i])
            ch = nf * mult[i]
            if res[i] in m["attn_resolutions"]:
                L.append(("attn", dict(c=ch)))
            hs.append(ch)
        if i != len(mult) - 1:
            if biggan:
                block(ch, down=True)
            else:
                L.append(("down", dict(cin=ch, cout=ch, conv=m["resamp_with_conv"], fir=m["fir"])))
            if m["progressive_input"] == "input_skip":
                L.append(("combine", dict(cin=pin, cout=ch)))
                if m["progressive_combine"] == "cat":
                    ch *= 2
            elif m["progressive_input"] == "residual":
                L.append(("down", dict(cin=pin, cout=ch, conv=True, fir=m["fir"])))
                pin = ch
            hs.append(ch)
    ch = hs[-1]
    block(ch)
    L.append(("attn", dict(c=ch)))
    block(ch)
    for i in reversed(range(len(mult))):
        for _ in range(nrb + 1):
            block(ch + hs.pop(), nf * mult[i])
            ch = nf * mult[i]
        if res[i] in m["attn_resolutions"]:
            L.append(("attn", dict(c=ch)))
        if m["progressive"] == "output_skip":
            L += [("gn", dict(c=ch)), ("conv3", dict(cin=ch, cout=C))]
        if i != 0:
            if biggan:
                block(ch, up=True)
            else:
                L.append(("up", {}))
    if m["progressive"] != "output_skip":
        L += [("gn", dict(c=ch)), ("conv3", dict(cin=ch, cout=C))]
    return L


def param_specs(kind, s):
    """[(name, shape)] in registration order."""
    def gn(p, c):
        return [(f"{p}weight", (c,)), (f"{p}bias", (c,))]

    def conv(p, cin, cout, k):
        return [(f"{p}weight", (cout, cin, k, k)), (f"{p}bias", (cout,))]

    def nin(p, cin, cout):
        return [(f"{p}.W", (cin, cout)), (f"{p}.b", (cout,))]

    if kind == "fourier":
        return [("W", (s["n"],))]
    if kind == "dense":
        return [("weight", (s["cout"], s["cin"])), ("bias", (s["cout"],))]
    if kind == "conv3":
        return conv("", s["cin"], s["cout"], 3)
    if kind == "gn":
        return gn("", s["c"])
    if kind == "attn":
        return gn("GroupNorm_0.", s["c"]) + sum((nin(f"NIN_{j}", s["c"], s["c"])
                                                 for j in range(4)), [])
    if kind in ("biggan", "ddpmres"):
        cin, cout = s["cin"], s["cout"]
        out = gn("GroupNorm_0.", cin) + conv("Conv_0.", cin, cout, 3) + \
            [("Dense_0.weight", (cout, s["temb"])), ("Dense_0.bias", (cout,))] + \
            gn("GroupNorm_1.", cout) + conv("Conv_1.", cout, cout, 3)
        if kind == "biggan" and (cin != cout or s["up"] or s["down"]):
            out += conv("Conv_2.", cin, cout, 1)
        if kind == "ddpmres" and cin != cout:
            out += nin("NIN_0", cin, cout)
        return out
    if kind == "down":
        if not s["conv"]:
            return []
        return conv("Conv2d_0." if s["fir"] else "Conv_0.", s["cin"], s["cout"], 3)
    if kind == "combine":
        return conv("Conv_0.", s["cin"], s["cout"], 1)
    return []  # up


def random_state(cfg, seed=0):
    """(state dict with score_sde's keys, [trainable params in parameters() order])."""
    g = torch.Generator().manual_seed(seed)
    sd, trainable = {}, []
    for idx, (kind, s) in enumerate(layout(cfg)):
        for name, shape in param_specs(kind, s):
            key = f"all_modules.{idx}.{name}"
            last = name.rsplit(".", 1)[-1]
            if kind == "fourier":
                v = 16 * torch.randn(shape, generator=g, dtype=torch.float64)
            elif len(shape) > 1:
                fan = math.prod(shape[1:]) if last != "W" else shape[0]
                v = torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(fan)
            elif ("GroupNorm" in name or kind == "gn") and last == "weight":
                v = 1 + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)
            else:
                v = 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)
            sd[key] = v
            if kind != "fourier":
                trainable.append(key)
    m = cfg["model"]
    sd["sigmas"] = torch.exp(torch.linspace(math.log(m["sigma_max"]), math.log(m["sigma_min"]),
                                            m["num_scales"], dtype=torch.float64))
    return sd, trainable


# ----------------------------------------------------------------------------- the reference
def _axis_kernel(k1):
    k = torch.tensor(k1, dtype=torch.float64)
    return k / k.sum()


def up_matrix(n, k1):
    """2n x n: zero-insertion, pad (2, 1), 4-tap filter 2 k (per axis of the 2-D gain 4)."""
    kk, M = 2 * _axis_kernel(k1), torch.zeros(2 * n, n, dtype=torch.float64)
    for o in range(2 * n):
        for i in range(n):
            j = 2 * i - o + 2
            if 0 <= j < len(kk):
                M[o, i] = kk[j]
    return M


def down_matrix(n, k1, pad=1, stride=2):
    """Rows o: sum_j xpad[stride o + j] k[j], xpad = x padded by ``pad`` zeros."""
    kk = _axis_kernel(k1)
    n_out = (n + 2 * pad - len(kk)) // stride + 1
    M = torch.zeros(n_out, n, dtype=torch.float64)
    for o in range(n_out):
        for i in range(n):
            j = i + pad - stride * o
            if 0 <= j < len(kk):
                M[o, i] = kk[j]
    return M


def sep(x, M):
    return torch.einsum("ih,bchw,jw->bcij", M, x, M)


def gn(sd, p, x):
    return F.group_norm(x, min(x.shape[1] // 4, 32), sd[p + ".weight"], sd[p + ".bias"], eps=1e-6)


def conv(sd, p, x, stride=1, pad=1):
    return F.conv2d(x, sd[p + ".weight"], sd[p + ".bias"], stride=stride, padding=pad)


def nin(sd, p, x):
    return F.conv2d(x, sd[p + ".W"].T[:, :, None, None], sd[p + ".b"])


def reference(sd, cfg, x, time_cond):
    m, d = cfg["model"], cfg["data"]
    act, k1, fir = F.silu, m["fir_kernel"], m["fir"]
    rs = math.sqrt(2.0) if m["skip_rescale"] else 1.0
    L = layout(cfg)
    it = iter(range(len(L)))

    def P(i):
        return f"all_modules.{i}"

    def resblock(i, x, temb):
        kind, s = L[i]
        p = P(i)
        h = act(gn(sd, p + ".GroupNorm_0", x))
        if kind == "biggan" and (s["up"] or s["down"]):
            n = x.shape[-1]
            if s["up"]:
                U = up_matrix(n, k1) if fir else torch.repeat_interleave(
                    torch.eye(n, dtype=torch.float64), 2, 0)
            else:
                U = down_matrix(n, k1) if fir else torch.repeat_interleave(
                    torch.eye(n // 2, dtype=torch.float64), 2, 1) / 2
            h, x = sep(h, U), sep(x, U)
        h = conv(sd, p + ".Conv_0", h)
        if temb is not None:
            h = h + F.linear(act(temb), sd[p + ".Dense_0.weight"], sd[p + ".Dense_0.bias"])[..., None, None]
        h = conv(sd, p + ".Conv_1", act(gn(sd, p + ".GroupNorm_1", h)))
        if p + ".Conv_2.weight" in sd:
            x = conv(sd, p + ".Conv_2", x, pad=0)
        if p + ".NIN_0.W" in sd:
            x = nin(sd, p + ".NIN_0", x)
        return (x + h) / rs

    def attn(i, x):
        p, (b, c, hh, ww) = P(i), x.shape
        h = gn(sd, p + ".GroupNorm_0", x)
        q, k, v = (nin(sd, f"{p}.NIN_{j}", h).reshape(b, c, -1) for j in range(3))
        w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(c), dim=-1)
        h = nin(sd, p + ".NIN_3", torch.einsum("bts,bcs->bct", w, v).reshape(b, c, hh, ww))
        return (x + h) / rs

    def down(i, x):
        s, p, n = L[i][1], P(i), x.shape[-1]
        if fir:
            if not s["conv"]:
                return sep(x, down_matrix(n, k1))
            return F.conv2d(sep(x, down_matrix(n, k1, pad=2, stride=1)),
                            sd[p + ".Conv2d_0.weight"], sd[p + ".Conv2d_0.bias"], stride=2)
        if not s["conv"]:
            return F.avg_pool2d(x, 2)
        return conv(sd, p + ".Conv_0", F.pad(x, (0, 1, 0, 1)), stride=2, pad=0)

    i = next(it)
    if m["embedding_type"] == "fourier":
        a = torch.log(time_cond)[:, None] * sd[P(i) + ".W"][None] * 2 * math.pi
        temb = torch.cat([a.sin(), a.cos()], 1)
        i = next(it)
    else:
        half = m["nf"] // 2
        f = torch.exp(-math.log(10000) / (half - 1) * torch.arange(half, dtype=torch.float32))
        a = time_cond.float()[:, None] * f[None]
        temb = torch.cat([a.sin(), a.cos()], 1).double()
    if m["conditional"]:
        temb = F.linear(temb, sd[P(i) + ".weight"], sd[P(i) + ".bias"])
        i = next(it)
        temb = F.linear(act(temb), sd[P(i) + ".weight"], sd[P(i) + ".bias"])
        i = next(it)
    else:
        temb = None
    if not d["centered"]:
        x = 2 * x - 1
    res = [d["image_size"] // 2**j for j in range(len(m["ch_mult"]))]
    pyr = x
    hs = [conv(sd, P(i), x)]
    for lv in range(len(m["ch_mult"])):
        for _ in range(m["num_res_blocks"]):
            h = resblock(next(it), hs[-1], temb)
            if res[lv] in m["attn_resolutions"]:
                h = attn(next(it), h)
            hs.append(h)
        if lv != len(m["ch_mult"]) - 1:
            j = next(it)
            h = resblock(j, hs[-1], temb) if L[j][0] == "biggan" else down(j, hs[-1])
            if m["progressive_input"] == "input_skip":
                pyr = sep(pyr, down_matrix(pyr.shape[-1], k1)) if fir else F.avg_pool2d(pyr, 2)
                j = next(it)
                e = conv(sd, P(j) + ".Conv_0", pyr, pad=0)
                h = torch.cat([e, h], 1) if m["progressive_combine"] == "cat" else e + h
            elif m["progressive_input"] == "residual":
                pyr = (down(next(it), pyr) + h) / rs
                h = pyr
            hs.append(h)
    h = resblock(next(it), hs[-1], temb)
    h = attn(next(it), h)
    h = resblock(next(it), h, temb)
    out = None
    for lv in reversed(range(len(m["ch_mult"]))):
        for _ in range(m["num_res_blocks"] + 1):
            h = resblock(next(it), torch.cat([h, hs.pop()], 1), temb)
        if res[lv] in m["attn_resolutions"]:
            h = attn(next(it), h)
        if m["progressive"] == "output_skip":
            jg, jc = next(it), next(it)
            o = conv(sd, P(jc), act(gn(sd, P(jg), h)))
            out = o if out is None else sep(out, up_matrix(out.shape[-1], k1)) + o
        if lv != 0:
            j = next(it)
            h = resblock(j, h, temb) if L[j][0] == "biggan" else \
                sep(h, up_matrix(h.shape[-1], k1))
    if m["progressive"] == "output_skip":
        h = out
    else:
        jg, jc = next(it), next(it)
        h = conv(sd, P(jc), act(gn(sd, P(jg), h)))
    assert next(it, None) is None
    if m["scale_by_sigma"]:
        s = time_cond if m["embedding_type"] == "fourier" else sd["sigmas"][time_cond.long()]
        h = h / s.reshape(-1, 1, 1, 1)
    return h


# ----------------------------------------------------------------------------- files
def save_checkpoint(path, sd, trainable, ema_shift=0.0, step=7):
    """score_sde's save_checkpoint: DataParallel keys, EMA shadow params, an Adam state."""
    model = {"module." + k: v.float() for k, v in sd.items()}
    shadow = [(sd[k] + ema_shift).float() for k in trainable]
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], lr=2e-4)
    p.grad = torch.ones(3)
    opt.step()
    torch.save({"optimizer": opt.state_dict(), "model": model,
                "ema": {"decay": 0.999, "num_updates": step, "shadow_params": shadow},
                "step": step}, path)


def _write_case(tmp_path, name, seed=0, ema_shift=0.0):
    cfg = config_of(name)
    sd, trainable = random_state(cfg, seed)
    path = tmp_path / "checkpoint_5.pth"
    save_checkpoint(path, sd, trainable, ema_shift)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return cfg, sd, path


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", list(CASES))
def test_network_matches_reference(name, tmp_path):
    cfg, sd, path = _write_case(tmp_path, name)
    model = load_model(path, config=[tmp_path / "config.json"])
    net = model.unet.double()
    C = cfg["data"]["num_channels"]
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, C, SIZE, SIZE, dtype=torch.float64, generator=g)
    pos = cfg["model"]["embedding_type"] == "positional"
    tc = torch.tensor([3.0, 8.0] if pos else [0.05, 17.0], dtype=torch.float64)
    sd64 = {k: v.float().double() for k, v in sd.items()}  # the checkpoint holds float32
    with torch.no_grad():
        got, ref = net(x, tc), reference(sd64, cfg, x, tc)
    assert got.shape == (2, C, SIZE, SIZE)
    assert _rel(got, ref) < 1e-10


@pytest.mark.parametrize("name", list(CASES))
def test_denoiser_time_and_prediction(name, tmp_path):
    """model(x, t) = score_sde's score_fn(x, t) in the denoiser's terms."""
    cfg, sd, path = _write_case(tmp_path, name)
    model = load_model(path, config=[tmp_path / "config.json"]).double()
    m, tr = cfg["model"], cfg["training"]
    C = cfg["data"]["num_channels"]
    x = torch.rand(2, C, SIZE, SIZE, dtype=torch.float64)
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    sd64 = {k: v.float().double() for k, v in sd.items()}
    sched = model.schedule
    with torch.no_grad():
        got = model(x, t)
        if tr["sde"] == "vesde":
            assert model.prediction == "score"
            if tr["continuous"]:   # labels = sigma(t) = sigma_min (sigma_max/sigma_min)^t
                lab = m["sigma_min"] * (m["sigma_max"] / m["sigma_min"]) ** t
            else:                  # labels = round((1 - t)(N - 1)) into the descending sigmas
                lab = torch.round((1 - t) * (m["num_scales"] - 1))
            want = reference(sd64, cfg, x, lab)
        else:
            assert model.prediction == "eps"
            n = m["num_scales"]
            if tr["continuous"]:   # labels = 999 t, std of the VP SDE's marginal
                want = reference(sd64, cfg, x, 999 * t)
                lmc = -0.25 * t**2 * (m["beta_max"] - m["beta_min"]) - 0.5 * t * m["beta_min"]
                assert torch.allclose(sched.b(t), (1 - torch.exp(2 * lmc)).sqrt(), rtol=1e-12)
            else:                  # DDPM betas linspace(beta_min/N, beta_max/N, N), step k
                k = torch.round(t * n) - 1
                want = reference(sd64, cfg, x, k)
                ab = torch.cumprod(1 - torch.linspace(m["beta_min"] / n, m["beta_max"] / n, n,
                                                      dtype=torch.float64), 0)
                assert torch.allclose(sched.alpha_bar((k + 1) / n), ab[k.long()], rtol=1e-12)
    assert _rel(got, want) < 1e-10
    assert model.data_range == ((-1.0, 1.0) if cfg["data"]["centered"] else (0.0, 1.0))


def test_ema_weights_by_default(tmp_path):
    cfg, sd, path = _write_case(tmp_path, "ncsnpp-ve-fir-residual-input", ema_shift=0.01)
    _, trainable = random_state(cfg)
    ema_sd = {k: (v + 0.01 if k in trainable else v) for k, v in sd.items()}
    x = torch.rand(1, 1, SIZE, SIZE, dtype=torch.float64)
    tc = torch.tensor([0.7], dtype=torch.float64)
    cfgs = [tmp_path / "config.json"]
    with torch.no_grad():
        ema = load_model(path, config=cfgs).unet.double()(x, tc)
        raw = load_model(path, config=cfgs, ema=False).unet.double()(x, tc)
        ref_ema = reference({k: v.float().double() for k, v in ema_sd.items()}, cfg, x, tc)
        ref_raw = reference({k: v.float().double() for k, v in sd.items()}, cfg, x, tc)
    assert _rel(ema, ref_ema) < 1e-6 and _rel(raw, ref_raw) < 1e-10
    assert _rel(ema, raw) > 1e-4


DEFAULTS_PY = '''import ml_collections
import torch


def get_default_configs():
  config = ml_collections.ConfigDict()
  config.training = training = ml_collections.ConfigDict()
  config.training.batch_size = 1
  training.continuous = True
  training.reduce_mean = False
  config.sampling = sampling = ml_collections.ConfigDict()
  sampling.snr = 0.075
  config.data = data = ml_collections.ConfigDict()
  data.image_size = 256
  data.centered = False
  data.num_channels = 1
  config.model = model = ml_collections.ConfigDict()
  model.sigma_max = 378
  model.sigma_min = 0.01
  model.num_scales = 2000
  model.beta_min = 0.1
  model.beta_max = 20.
  model.dropout = 0.
  model.embedding_type = 'fourier'
  config.optim = optim = ml_collections.ConfigDict()
  optim.lr = 2e-4
  config.seed = 42
  config.device = torch.device('cuda:0') if torch.cuda.is_available() else torch.device('cpu')
  return config
'''
CONFIG_PY = '''# coding=utf-8
"""Training NCSN++ on fastmri knee with VE SDE."""

from configs.default_tiny_configs import get_default_configs


def get_config():
  config = get_default_configs()
  # training
  training = config.training
  training.sde = 'vesde'
  training.continuous = True
  data = config.data
  data.image_size = 32
  model = config.model
  model.name = 'ncsnpp'
  model.scale_by_sigma = True
  model.nf = 16
  model.ch_mult = (1, 2, 2)
  model.num_res_blocks = 1
  model.attn_resolutions = (8,)
  model.resamp_with_conv = True
  model.conditional = True
  model.fir = True
  model.fir_kernel = [1, 3, 3, 1]
  model.skip_rescale = True
  model.resblock_type = 'biggan'
  model.progressive = 'none'
  model.progressive_input = 'residual'
  model.progressive_combine = 'sum'
  model.attention_type = 'ddpm'
  model.init_scale = 0.
  model.fourier_scale = 16
  model.conv_size = 3
  model.sigma_max = 25 * 2
  model.nonlinearity = 'swish'
  return config
'''


def test_python_config_is_read_without_running_it(tmp_path):
    (tmp_path / "configs" / "ve").mkdir(parents=True)
    (tmp_path / "configs" / "default_tiny_configs.py").write_text(DEFAULTS_PY)
    cfg_file = tmp_path / "configs" / "ve" / "tiny_ncsnpp_continuous.py"
    cfg_file.write_text(CONFIG_PY)
    cfg = read_config_py(cfg_file)
    assert cfg["model"]["sigma_max"] == 50 and cfg["model"]["num_scales"] == 2000
    assert cfg["data"] == {"image_size": 32, "centered": False, "num_channels": 1}
    assert cfg["training"]["sde"] == "vesde" and cfg["model"]["ch_mult"] == (1, 2, 2)
    # the same network as the JSON of score-MRI's fields
    name = "ncsnpp-ve-fir-residual-input"
    ref_cfg, sd, path = _write_case(tmp_path, name)
    a = load_model(path, config=[cfg_file])
    b = load_model(path, config=[tmp_path / "config.json"])
    x = torch.rand(1, 1, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(a(x, torch.tensor([0.5])), b(x, torch.tensor([0.5])))
    assert a.schedule.sigma_max == 50 and a.image_size == 32 and a.channels == 1
    # a sidecar beside the checkpoint is found
    (tmp_path / "checkpoint_5.py").write_text(CONFIG_PY)
    assert load_model(path).meta["settings_from"] == ["checkpoint_5.py"]


def test_config_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = CONFIG_PY.replace("  return config", f"  open({str(marker)!r}, 'w').write('x')\n"
                             "  return config")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default_tiny_configs.py").write_text(DEFAULTS_PY)
    (tmp_path / "evil.py").write_text(evil)
    with pytest.raises(ValueError, match="does not follow a Expr statement"):
        read_config_py(tmp_path / "evil.py")
    loop = CONFIG_PY.replace("  return config", "  for i in range(3):\n    pass\n  return config")
    (tmp_path / "loop.py").write_text(loop)
    with pytest.raises(ValueError, match="For statement"):
        read_config_py(tmp_path / "loop.py")
    assert not marker.exists()


@pytest.mark.parametrize("change, msg", [
    (lambda c: c["training"].update(sde="subvpsde"), "subvpsde"),
    (lambda c: c["model"].update(name="ddpm"), "model.name 'ddpm' is not supported"),
    (lambda c: c["model"].pop("fir"), "config.model.fir is missing"),
    (lambda c: c["model"].update(progressive="residual"), "cannot run"),
    (lambda c: c["model"].update(nf=32), "does not match the NCSN"),
])
def test_unsupported_or_mismatched_configs_are_refused(tmp_path, change, msg):
    cfg, sd, path = _write_case(tmp_path, "ncsnpp-ve-fir-residual-input")
    change(cfg)
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=msg):
        load_model(path, config=[tmp_path / "bad.json"])


def test_missing_config_names_what_to_pass(tmp_path):
    _, _, path = _write_case(tmp_path, "ddpmpp-vp-continuous")
    with pytest.raises(ValueError, match="--model-config CONFIG.py"):
        load_model(path)
