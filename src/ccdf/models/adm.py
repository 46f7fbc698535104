"""openai guided-diffusion ("ADM", Dhariwal & Nichol 2021) checkpoints, loaded exactly.

``ADMUNet`` computes what ``guided_diffusion.unet.UNetModel`` computes, with the same module
names, so a released ``.pt`` state dict loads with ``load_state_dict(strict=True)`` and no
key mapping:

* time embedding: sinusoid [cos | sin] of the (possibly fractional) timestep over
  ``model_channels`` frequencies 10000^(-j/half), then ``time_embed`` = Linear, SiLU, Linear;
  class-conditional models add ``label_emb(y)`` (an Embedding of ``num_classes`` rows);
* ``input_blocks``: a 3x3 conv to int(channel_mult[0] C) channels, then per level
  ``num_res_blocks`` x [ResBlock (+ AttentionBlock where the downsampling rate ds is in
  ``attention_resolutions``)] and, except at the last level, a down-sampler (a ResBlock with
  2x2 average pooling inside if ``resblock_updown``, else a stride-2 3x3 conv ``op``);
  ``middle_block`` = ResBlock, AttentionBlock, ResBlock; ``output_blocks`` mirror them on the
  concatenated skips, with ``num_res_blocks + 1`` blocks per level and nearest-neighbour
  up-sampling (in a ResBlock, or before a 3x3 ``conv``); ``out`` = GroupNorm, SiLU, conv;
* ResBlock: GroupNorm(32) -> SiLU -> conv3x3, plus the embedding: h + W e, or with
  ``use_scale_shift_norm`` GroupNorm(h) (1 + scale) + shift (FiLM); -> SiLU -> conv3x3;
  skip = identity or a 1x1 conv when the width changes;
* AttentionBlock: GroupNorm, a 1x1 ``qkv`` conv to 3C channels, softmax(q^T k / sqrt(ch)) v
  per head, a 1x1 ``proj_out``, residual.  The heads: C // ``num_head_channels``, or a fixed
  ``num_heads`` (``num_heads_upsample`` in the output blocks) when num_head_channels = -1.
  The 3C rows are read per head as [q k v] (``QKVAttentionLegacy``, the default) or as
  [q of all heads | k | v] with ``use_new_attention_order``;
* ``learn_sigma`` models output 2 C channels (eps, then the variance interpolation).

What the weights do not tell -- the image size (hence which feature-map sizes
``attention_resolutions`` names), the heads, the qkv order, the noise schedule, x0 or eps
prediction -- comes from the settings the user already has (:func:`read_adm_settings`): a
guided-diffusion flags string (``MODEL_FLAGS``; flags left out take guided-diffusion's
defaults, as its scripts do), or a YAML/JSON such as DPS's ``configs/model_config.yaml`` +
``diffusion_config.yaml`` or DDRM's ``configs/imagenet_256_cc.yml`` (there every such setting
must be present).  Settings the weights do tell are read off them and cross-checked.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from .. import io
from ..schedules import VPSchedule
from .unet import EpsOnly, UNetDenoiser

__all__ = ["ADMUNet", "EpsOnly", "infer_adm", "read_adm_settings", "resolve_adm",
           "adm_alphas_cumprod", "load_adm_checkpoint", "GD_DEFAULTS", "auto_channel_mult"]

#: guided-diffusion's ``model_and_diffusion_defaults()`` (what its scripts' flags default to)
GD_DEFAULTS = dict(
    image_size=64, num_channels=128, num_res_blocks=2, num_heads=4, num_heads_upsample=-1,
    num_head_channels=-1, attention_resolutions="16,8", channel_mult="", dropout=0.0,
    class_cond=False, use_checkpoint=False, use_scale_shift_norm=True, resblock_updown=False,
    use_fp16=False, use_new_attention_order=False, learn_sigma=False, diffusion_steps=1000,
    noise_schedule="linear", timestep_respacing="", use_kl=False, predict_xstart=False,
    rescale_timesteps=False, rescale_learned_sigmas=False,
)
_BOOL = {"class_cond", "use_checkpoint", "use_scale_shift_norm", "resblock_updown", "use_fp16",
         "use_new_attention_order", "learn_sigma", "use_kl", "predict_xstart",
         "rescale_timesteps", "rescale_learned_sigmas", "clip_denoised", "dynamic_threshold"}
_INT = {"image_size", "num_channels", "num_res_blocks", "num_heads", "num_heads_upsample",
        "num_head_channels", "diffusion_steps", "in_channels", "out_channels", "large_size",
        "small_size"}
_FLOAT = {"beta_start", "beta_end", "dropout"}
_STR = {"noise_schedule", "timestep_respacing", "attention_resolutions", "channel_mult",
        "model_mean_type", "model_var_type"}
# other spellings of the same settings in DPS / DDRM configs
_ALIASES = {"steps": "diffusion_steps", "num_diffusion_timesteps": "diffusion_steps",
            "beta_schedule": "noise_schedule", "var_type": "model_var_type"}


def auto_channel_mult(image_size: int) -> tuple:
    """guided-diffusion's channel_mult for ``channel_mult=""`` (``script_util.create_model``)."""
    table = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4),
             64: (1, 2, 3, 4)}
    if image_size not in table:
        raise ValueError(f"guided-diffusion has no default channel_mult for image_size "
                         f"{image_size} (it knows 64, 128, 256, 512): give channel_mult")
    return table[image_size]


# ----------------------------------------------------------------------------- the network
def timestep_embedding(t: Tensor, dim: int, dtype) -> Tensor:
    """[cos(t f_j) | sin(t f_j)], f_j = 10000^(-j / half), j < half = dim // 2: (B, dim),
    computed in float32 as guided-diffusion does, then cast to ``dtype``."""
    half = dim // 2
    j = torch.arange(half, dtype=torch.float32, device=t.device)
    arg = t.float()[:, None] * torch.exp(-math.log(10000.0) * j / half)[None]
    out = torch.cat([arg.cos(), arg.sin()], 1)
    return (F.pad(out, (0, 1)) if dim % 2 else out).to(dtype)


class _Res(nn.Module):
    """ADM's ResBlock (keys in_layers.{0,2}, emb_layers.1, out_layers.{0,3}, skip_connection)."""

    def __init__(self, cin: int, emb: int, cout: int, scale_shift: bool, up=False, down=False):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(32, cin), nn.SiLU(),
                                       nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * cout if scale_shift else cout))
        self.out_layers = nn.Sequential(nn.GroupNorm(32, cout), nn.SiLU(), nn.Identity(),
                                        nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)
        self.scale_shift, self.up, self.down = scale_shift, up, down

    def _resample(self, v: Tensor) -> Tensor:
        if self.up:
            return F.interpolate(v, scale_factor=2, mode="nearest")
        return F.avg_pool2d(v, 2) if self.down else v

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers[1](self.in_layers[0](x))
        h, x = self._resample(h), self._resample(x)
        h = self.in_layers[2](h)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        norm, rest = self.out_layers[0], self.out_layers[1:]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = rest(norm(h) * (1 + scale) + shift)
        else:
            h = rest(norm(h + e))
        return self.skip_connection(x) + h


class _Attention(nn.Module):
    """ADM's AttentionBlock (keys norm, qkv, proj_out); ``heads`` heads of C / heads channels."""

    def __init__(self, channels: int, heads: int, new_order: bool):
        super().__init__()
        if heads < 1 or channels % heads:
            raise ValueError(f"{heads} attention heads do not divide {channels} channels")
        self.norm = nn.GroupNorm(32, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        self.heads, self.new_order = heads, new_order

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))                      # (B, 3C, T)
        n, ch, length = self.heads, c // self.heads, x.shape[-1]
        if self.new_order:                                # [q heads | k heads | v heads]
            q, k, v = (u.reshape(b * n, ch, length) for u in qkv.chunk(3, dim=1))
        else:                                             # per head [q k v]
            q, k, v = qkv.reshape(b * n, 3 * ch, length).split(ch, dim=1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2))     # (B n, T, ch)
        h = self.proj_out(a.transpose(1, 2).reshape(b, c, length))
        return (x + h).reshape(b, c, *spatial)


class _Down(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class _Up(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Block(nn.Sequential):
    """guided-diffusion's TimestepEmbedSequential: ResBlocks also get the embedding."""

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for m in self:
            h = m(h, emb) if isinstance(m, _Res) else m(h)
        return h


class ADMUNet(nn.Module):
    """guided-diffusion's ``UNetModel`` (2-D, conv resampling): (B, in, H, W), timesteps (B,)
    [, class labels (B,)] -> (B, out, H, W).  ``attention_ds``: the downsampling rates with
    attention (guided-diffusion's ``attention_resolutions`` after image_size // res)."""

    arch = "adm"  # a ccdf model folder's "arch" (``formats.ARCHS``)

    def __init__(self, image_size: int, in_channels: int, model_channels: int,
                 out_channels: int, num_res_blocks: int, attention_ds, channel_mult,
                 num_classes: int | None = None, num_heads: int = 1, num_head_channels: int = -1,
                 num_heads_upsample: int = -1, use_scale_shift_norm: bool = False,
                 resblock_updown: bool = False, use_new_attention_order: bool = False):
        super().__init__()
        self.kwargs = dict(
            image_size=int(image_size), in_channels=int(in_channels),
            model_channels=int(model_channels), out_channels=int(out_channels),
            num_res_blocks=int(num_res_blocks), attention_ds=sorted(int(d) for d in attention_ds),
            channel_mult=[float(m) if m != int(m) else int(m) for m in channel_mult],
            num_classes=None if num_classes is None else int(num_classes),
            num_heads=int(num_heads), num_head_channels=int(num_head_channels),
            num_heads_upsample=int(num_heads_upsample),
            use_scale_shift_norm=bool(use_scale_shift_norm), resblock_updown=bool(resblock_updown),
            use_new_attention_order=bool(use_new_attention_order))
        k = self.kwargs
        mc, emb = k["model_channels"], 4 * k["model_channels"]
        ss, updown, attn_ds = k["use_scale_shift_norm"], k["resblock_updown"], set(k["attention_ds"])
        up_heads = k["num_heads_upsample"] if k["num_heads_upsample"] != -1 else k["num_heads"]

        def attention(ch, heads):
            if k["num_head_channels"] != -1:
                if k["num_head_channels"] < 1 or ch % k["num_head_channels"]:
                    raise ValueError(f"num_head_channels {k['num_head_channels']} does not "
                                     f"divide the {ch} channels of an attention layer")
                heads = ch // k["num_head_channels"]
            return _Attention(ch, heads, k["use_new_attention_order"])

        self.image_size, self.in_channels, self.out_channels = \
            k["image_size"], k["in_channels"], k["out_channels"]
        self.model_channels, self.num_classes = mc, k["num_classes"]
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        if self.num_classes is not None:
            self.label_emb = nn.Embedding(self.num_classes, emb)
        widths = [int(m * mc) for m in k["channel_mult"]]
        ch = widths[0]
        self.input_blocks = nn.ModuleList([_Block(nn.Conv2d(k["in_channels"], ch, 3, padding=1))])
        skips, ds = [ch], 1
        for level, w in enumerate(widths):
            for _ in range(k["num_res_blocks"]):
                layers = [_Res(ch, emb, w, ss)]
                ch = w
                if ds in attn_ds:
                    layers.append(attention(ch, k["num_heads"]))
                self.input_blocks.append(_Block(*layers))
                skips.append(ch)
            if level != len(widths) - 1:
                self.input_blocks.append(_Block(_Res(ch, emb, ch, ss, down=True) if updown
                                                else _Down(ch)))
                skips.append(ch)
                ds *= 2
        self.middle_block = _Block(_Res(ch, emb, ch, ss), attention(ch, k["num_heads"]),
                                   _Res(ch, emb, ch, ss))
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(widths))):
            w = widths[level]
            for i in range(k["num_res_blocks"] + 1):
                layers = [_Res(ch + skips.pop(), emb, w, ss)]
                ch = w
                if ds in attn_ds:
                    layers.append(attention(ch, up_heads))
                if level and i == k["num_res_blocks"]:
                    layers.append(_Res(ch, emb, ch, ss, up=True) if updown else _Up(ch))
                    ds //= 2
                self.output_blocks.append(_Block(*layers))
        self.out = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(),
                                 nn.Conv2d(widths[0], k["out_channels"], 3, padding=1))

    def config_dict(self) -> dict:
        return dict(self.kwargs)

    def forward(self, x: Tensor, timesteps: Tensor, class_labels: Tensor | None = None) -> Tensor:
        if (class_labels is None) != (self.num_classes is None):
            raise ValueError("this ADM model is class-conditional: it needs a class label"
                             if class_labels is None else
                             "this ADM model is not class-conditional: no class label")
        dt = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps.reshape(-1), self.model_channels, dt))
        if class_labels is not None:
            emb = emb + self.label_emb(class_labels.reshape(-1).long())
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], 1), emb)
        return self.out(h)


def infer_adm(sd: dict) -> dict:
    """What an ADM state dict says about its network: in/out channels, model_channels,
    channel_mult, num_res_blocks, attention_ds, num_classes, use_scale_shift_norm,
    resblock_updown (``UNetModel``'s argument names)."""
    try:
        conv_in = sd["input_blocks.0.0.weight"]
        mc = int(sd["time_embed.0.weight"].shape[1])
        out_rows = int(sd["out.2.weight"].shape[0])
    except KeyError as e:
        raise ValueError(f"not a guided-diffusion (ADM) UNet state dict (no {e.args[0]!r})") from None

    def count(prefix: str) -> int:
        idx = {int(k.split(".")[1]) for k in sd if k.startswith(prefix)}
        return max(idx) + 1 if idx else 0

    n_in, n_out = count("input_blocks."), count("output_blocks.")

    def children(prefix: str) -> set[int]:
        return {int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)}

    def is_upsampler(k: int) -> bool:
        for c in children(f"output_blocks.{k}."):
            p = f"output_blocks.{k}.{c}."
            if f"{p}conv.weight" in sd or (c > 0 and f"{p}in_layers.0.weight" in sd):
                return True
        return False

    ups = [k for k in range(n_out) if is_upsampler(k)]
    nrb = ups[0] if ups else n_out - 1
    levels = len(ups) + 1
    if nrb < 1 or levels * (nrb + 1) != n_out or n_in != levels * (nrb + 1):
        raise ValueError(f"unrecognised ADM block structure: {n_in} input blocks, {n_out} "
                         f"output blocks, up-samplers at {ups}")
    mult, attn_ds, updown, i = [], [], True, 1
    for lvl in range(levels):
        try:
            m = int(sd[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0]) / mc
        except KeyError:
            raise ValueError(f"unrecognised ADM block structure at input block {i}") from None
        mult.append(int(m) if m == int(m) else m)
        if f"input_blocks.{i}.1.qkv.weight" in sd:
            attn_ds.append(2**lvl)
        i += nrb
        if lvl < levels - 1:
            if f"input_blocks.{i}.0.op.weight" in sd:
                updown = False
            i += 1
    rows = int(sd["input_blocks.1.0.emb_layers.1.weight"].shape[0])
    width = int(sd["input_blocks.1.0.out_layers.3.weight"].shape[0])
    return dict(in_channels=int(conv_in.shape[1]), out_channels=out_rows, model_channels=mc,
                channel_mult=tuple(mult), num_res_blocks=nrb, attention_ds=tuple(attn_ds),
                num_classes=int(sd["label_emb.weight"].shape[0]) if "label_emb.weight" in sd
                else None, use_scale_shift_norm=rows == 2 * width, resblock_updown=updown)


# ----------------------------------------------------------------------------- the settings
def _flags_string(text: str) -> dict:
    """``--name value`` / ``--name=value`` pairs of a guided-diffusion command line, also inside
    shell lines such as ``MODEL_FLAGS="--image_size 256 ..."`` (``--channel_mult ""``: empty)."""
    out: dict = {}

    def walk(tokens: list) -> None:
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            i += 1
            if not tok.startswith("--") or any(c.isspace() for c in tok):
                if "--" in tok:  # NAME="--a 1 --b 2" or a quoted group of flags
                    walk(shlex.split(tok[tok.index("--"):]))
                continue
            key = tok[2:]
            if "=" in key:
                key, val = key.split("=", 1)
            elif i < len(tokens) and not tokens[i].startswith("--"):
                val, i = tokens[i], i + 1
            else:
                continue  # a flag without a value: not a guided-diffusion setting
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                out[key] = val

    try:
        walk(shlex.split(text, comments=True))
    except ValueError as e:
        raise ValueError(f"cannot read the guided-diffusion flags: {e}") from None
    return out


def _flatten(d: dict) -> dict:
    """DDRM-style nested YAML (``model:``, ``diffusion:``, ``data:`` sections) -> one level."""
    out = {k: v for k, v in d.items() if not isinstance(v, dict)}
    for sec in ("data", "diffusion", "model"):
        if isinstance(d.get(sec), dict):
            out.update({k: v for k, v in d[sec].items() if not isinstance(v, dict)})
    return out


def _read_source(src) -> tuple[dict, str, str]:
    """(settings, kind 'flags' | 'file', name) of one source: a dict, a flags string, or a
    path to a YAML / JSON / flags text file."""
    if isinstance(src, dict):
        return _flatten(src), "file", "settings"
    text = str(src)
    if text.lstrip().startswith("--"):
        return _flags_string(text), "flags", "flags string"
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"model config not found: {path}")
    body = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            d = yaml.safe_load(body)
        except yaml.YAMLError as e:
            raise ValueError(f"cannot parse {path} as YAML: {str(e).splitlines()[0]}") from None
    elif path.suffix.lower() == ".json":
        try:
            d = json.loads(body)
        except json.JSONDecodeError as e:
            raise ValueError(f"cannot parse {path} as JSON: {e}") from None
    else:
        flags = _flags_string(body)
        if not flags:
            raise ValueError(f"{path} holds no --flag value pairs (guided-diffusion flags), "
                             "and is not .yaml/.yml/.json")
        return flags, "flags", path.name
    if not isinstance(d, dict):
        raise ValueError(f"{path} does not hold a mapping of settings")
    return _flatten(d), "file", path.name


def _typed(name: str, v, where: str):
    try:
        if name in _BOOL:
            if isinstance(v, str):
                if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return v.lower() in ("true", "1", "yes")
            return bool(v)
        if name in _INT:
            f = float(v)
            if f != int(f):
                raise ValueError
            return int(f)
        if name in _FLOAT:
            return float(v)
        if name in ("attention_resolutions", "channel_mult"):
            if isinstance(v, (list, tuple)):
                return ",".join(str(p) for p in v)
            return "" if v is None else str(v).strip()
        return str(v)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} = {v!r} is not a valid value") from None


def read_adm_settings(sources=(), **overrides) -> tuple[dict, dict]:
    """Merge settings sources in order (later ones win): dicts, flags strings, or files
    (YAML / JSON / flags text).  Returns (settings, where each came from).

    Keys are guided-diffusion's flag names; DPS/DDRM spellings (``steps``,
    ``num_diffusion_timesteps``, ``beta_schedule``, ``var_type``) are mapped to them.  When a
    flags string is among the sources, guided-diffusion's defaults (``GD_DEFAULTS``) fill
    what no source gives, as guided-diffusion's scripts do."""
    settings, origin, flags = {}, {}, False
    for src in list(sources) + ([overrides] if overrides else []):
        d, kind, name = _read_source(src)
        flags |= kind == "flags"
        for key, v in d.items():
            key = _ALIASES.get(key, key)
            if key == "type" and str(v) != "openai":
                raise ValueError(f"{name}: model type {v!r} is not a guided-diffusion "
                                 "('openai') model")
            if key in _BOOL | _INT | _FLOAT | _STR:
                settings[key] = _typed(key, v, name)
                origin[key] = name
    if flags:
        for key, v in GD_DEFAULTS.items():
            if key not in settings and key != "image_size":  # the one the user must say
                settings[key] = v
                origin[key] = "guided-diffusion default"
    return settings, origin


def _mult_tuple(s: str) -> tuple:
    vals = []
    for p in s.replace(" ", "").split(","):
        if p:
            f = float(p)
            vals.append(int(f) if f == int(f) else f)
    return tuple(vals)


def resolve_adm(inferred: dict, settings: dict, origin: dict, name: str = "ADM checkpoint"):
    """(ADMUNet kwargs, model settings, assumed notes) from what the weights say and what the
    user's settings say; ValueError (one line) naming a missing or contradicting setting."""
    s, assumed = dict(settings), []
    if "large_size" in s or "small_size" in s:
        raise ValueError(f"{name}: a guided-diffusion super-resolution model (large_size / "
                         "small_size) is conditioned on a low-resolution image, not a prior")
    hint = ("; give the model's settings with --model-config FILE (guided-diffusion flags, or "
            "a YAML/JSON such as DPS's model_config.yaml) or a sidecar file beside it")
    missing = []
    if "image_size" not in s:
        missing.append("image_size")
    if s.get("num_head_channels", -1) == -1 and "num_heads" not in s:
        missing.append("num_head_channels (or num_heads)")
    if "use_new_attention_order" not in s:
        missing.append("use_new_attention_order")
    if "noise_schedule" not in s or "diffusion_steps" not in s:
        missing.append("noise_schedule and diffusion_steps (the diffusion config)")
    if missing:
        raise ValueError(f"{name}: {', '.join(missing)} not in the weights nor in the settings"
                         f"{hint}")
    size = s["image_size"]
    # cross-check what both the weights and the settings say
    checks = {"num_channels": inferred["model_channels"],
              "num_res_blocks": inferred["num_res_blocks"],
              "learn_sigma": inferred["out_channels"] == 2 * inferred["in_channels"],
              "class_cond": inferred["num_classes"] is not None,
              "use_scale_shift_norm": inferred["use_scale_shift_norm"],
              "resblock_updown": inferred["resblock_updown"],
              "in_channels": inferred["in_channels"], "out_channels": inferred["out_channels"]}
    checks["channel_mult"] = inferred["channel_mult"]
    checks["attention_resolutions"] = inferred["attention_ds"]
    for key, have in checks.items():
        if key not in s or origin.get(key) == "guided-diffusion default":
            continue  # a flag left out: the weights say it
        said = s[key]
        if key == "channel_mult":
            said = _mult_tuple(said) if said else auto_channel_mult(size)
            have = tuple(have)
        elif key == "attention_resolutions":
            said = tuple(sorted(size // int(r) for r in _mult_tuple(said))) if said else ()
            have = tuple(sorted(have))
        if said != have:
            shown = s[key] if key != "attention_resolutions" else (
                f"{s[key]!r} (rates {said} at image_size {size})")
            raise ValueError(f"{name}: the settings say {key} = {shown} but the weights have "
                             f"{have if key != 'attention_resolutions' else tuple(have)} "
                             f"({origin.get(key, 'settings')})")
    for key in ("num_heads", "num_head_channels", "num_heads_upsample", "use_new_attention_order",
                "noise_schedule", "diffusion_steps"):
        if origin.get(key) == "guided-diffusion default":
            assumed.append(f"{key} = {s[key]} (guided-diffusion default: not in the flags)")
    if "num_heads_upsample" not in s:
        s["num_heads_upsample"] = -1
        if s.get("num_head_channels", -1) == -1:
            assumed.append("num_heads_upsample = -1 (guided-diffusion default: = num_heads)")
    s.setdefault("predict_xstart", False)
    s.setdefault("rescale_timesteps", False)
    if s.get("dynamic_threshold"):
        raise ValueError(f"{name}: dynamic_threshold is not supported (ccdf clamps x0 with "
                         "clip_denoised only)")
    mean_type = str(s.get("model_mean_type", "")).lower()
    if mean_type in ("start_x", "xstart", "x_start"):
        s["predict_xstart"] = True
    elif mean_type not in ("", "epsilon", "eps"):
        raise ValueError(f"{name}: model_mean_type {mean_type!r} is not supported (epsilon, "
                         "start_x)")
    kwargs = dict(
        image_size=size, in_channels=inferred["in_channels"],
        model_channels=inferred["model_channels"], out_channels=inferred["out_channels"],
        num_res_blocks=inferred["num_res_blocks"], attention_ds=inferred["attention_ds"],
        channel_mult=inferred["channel_mult"], num_classes=inferred["num_classes"],
        num_heads=s.get("num_heads", 1), num_head_channels=s.get("num_head_channels", -1),
        num_heads_upsample=s["num_heads_upsample"],
        use_scale_shift_norm=inferred["use_scale_shift_norm"],
        resblock_updown=inferred["resblock_updown"],
        use_new_attention_order=s["use_new_attention_order"])
    for d in inferred["attention_ds"]:
        if size % d or size // d < 1:
            raise ValueError(f"{name}: image_size {size} is not divisible by the attention "
                             f"downsampling rate {d}")
    if size % 2 ** (len(inferred["channel_mult"]) - 1):
        raise ValueError(f"{name}: image_size {size} is not divisible by "
                         f"{2 ** (len(inferred['channel_mult']) - 1)}, the network's "
                         "downsampling factor")
    return kwargs, s, assumed


def adm_alphas_cumprod(noise_schedule: str = "linear", diffusion_steps: int = 1000,
                       beta_start: float | None = None, beta_end: float | None = None) -> tuple:
    """guided-diffusion's ``get_named_beta_schedule`` -> alphas_cumprod (float64).

    linear: betas linspace(1e-4 s, 0.02 s, K) with s = 1000 / K (or DDRM's explicit
    beta_start..beta_end); cosine: beta_k = min(1 - f(k+1)/f(k), 0.999),
    f(u) = cos^2((u/K + 0.008) / 1.008 pi/2) (Nichol & Dhariwal 2021, eq. 17)."""
    k = int(diffusion_steps)
    if k < 2:
        raise ValueError(f"diffusion_steps must be >= 2, got {k}")
    if noise_schedule == "linear":
        scale = 1000 / k
        b0 = scale * 1e-4 if beta_start is None else beta_start
        b1 = scale * 0.02 if beta_end is None else beta_end
        betas = torch.linspace(b0, b1, k, dtype=torch.float64)
    elif noise_schedule == "cosine":
        f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f((i + 1) / k) / f(i / k), 0.999) for i in range(k)],
                             dtype=torch.float64)
    else:
        raise ValueError(f"unsupported ADM noise schedule {noise_schedule!r} (linear, cosine)")
    return tuple(torch.cumprod(1 - betas, 0).tolist())


SIDECAR_SUFFIXES = (".yaml", ".yml", ".json", ".flags", ".txt")


def sidecars(path: Path) -> list[Path]:
    """Settings files beside a checkpoint: same stem, a settings suffix."""
    return [path.with_suffix(s) for s in SIDECAR_SUFFIXES if path.with_suffix(s).is_file()]


def load_adm_checkpoint(path, config=(), state_dict: dict | None = None, **settings):
    """An ADM ``.pt`` state dict as a ``UNetDenoiser`` (DDPM discrete time, VP table schedule).

    ``config``: settings sources (:func:`read_adm_settings`; default: the sidecar files
    beside ``path``); keyword ``settings`` override them.  Raises ValueError naming what is
    missing or contradicts the weights.  The file is read with ``weights_only=True``."""
    path = Path(path)
    sd = io.read_state_dict(path) if state_dict is None else state_dict
    inferred = infer_adm(sd)
    sources = list(config) if config else sidecars(path)
    s, origin = read_adm_settings(sources, **settings)
    kwargs, s, assumed = resolve_adm(inferred, s, origin, f"ADM checkpoint {path.name}")
    net = ADMUNet(**kwargs)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in sd.values()})
    result = net.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        def show(xs):
            return ", ".join(xs[:8]) + (f" ... (+{len(xs) - 8})" if len(xs) > 8 else "")
        raise ValueError(f"ADM checkpoint {path.name} does not match guided-diffusion's UNet for "
                         f"these settings: missing [{show(result.missing_keys)}], unexpected "
                         f"[{show(result.unexpected_keys)}]")
    c = kwargs["in_channels"]
    model_net = EpsOnly(net, c) if kwargs["out_channels"] == 2 * c else net
    table = adm_alphas_cumprod(s["noise_schedule"], s["diffusion_steps"], s.get("beta_start"),
                               s.get("beta_end"))
    if s.get("use_fp16"):
        assumed.append("use_fp16: run in float32 (guided-diffusion's fp16 torso is a precision "
                       "choice; --half runs under autocast)")
    if kwargs["out_channels"] == 2 * c:
        assumed.append("learn_sigma: the learned variance channels are not used; the sampler's "
                       "fixed variance is (DDPM: posterior variance)")
    clip = bool(s.get("clip_denoised", False))
    if "clip_denoised" not in s:
        assumed.append("x0 is not clipped (clip_denoised not given)")
    assumed.append("grid on training steps with 'trailing' spacing: t_i = round(i K/N)/K")
    used = {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()}
    meta = {"trained_on": f"guided-diffusion checkpoint {path.name}",
            "family": "guided-diffusion (ADM)", "architecture": "ADM UNetModel",
            "weights_dtype": ",".join(dtypes), "assumed": assumed,
            "settings_from": sorted({str(v) for v in origin.values()}),
            "extra": {"adm_settings": used}}
    return UNetDenoiser(
        model_net, VPSchedule(beta="table", table=table, spacing="trailing"),
        "x0" if s["predict_xstart"] else "eps",
        "discrete_rescaled" if s["rescale_timesteps"] else "discrete",
        input_scaling=False, meta=meta, clip_x0=(-1.0, 1.0) if clip else None).eval()
