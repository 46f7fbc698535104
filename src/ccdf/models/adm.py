"""openai guided-diffusion ("ADM") UNet checkpoints -> diffusers ``UNet2DModel``.

The unconditional ADM checkpoints that ILVR, DPS, DDRM and DiffPIR use (e.g. DPS's FFHQ 256
model ``ffhq_10m.pt``: image_size 256, num_channels 128, num_res_blocks 1, channel_mult
(1,1,2,2,4,4), attention_resolutions "16", num_head_channels 64, resblock_updown,
use_scale_shift_norm, learn_sigma) are plain ``torch.save``'d state dicts of
``guided_diffusion.unet.UNetModel``.  Their layout maps one to one onto a diffusers
``UNet2DModel`` built by :func:`adm_unet_config`:

===========================================  ==============================================
ADM key (prefix)                             UNet2DModel key (prefix)
===========================================  ==============================================
time_embed.0 / time_embed.2                  time_embedding.linear_1 / linear_2
input_blocks.0.0                             conv_in
input_blocks.{i}.0 (ResBlock)                down_blocks.{l}.resnets.{j}
input_blocks.{i}.1 (AttentionBlock)          down_blocks.{l}.attentions.{j}
input_blocks.{i}.0 (ResBlock, down=True)     down_blocks.{l}.downsamplers.0   (resblock_updown)
input_blocks.{i}.0.op (Downsample conv)      down_blocks.{l}.downsamplers.0.conv  (otherwise)
middle_block.0 / .1 / .2                     mid_block.resnets.0 / attentions.0 / resnets.1
output_blocks.{k}.0 (ResBlock on the concat) up_blocks.{u}.resnets.{j}
output_blocks.{k}.1 (AttentionBlock)         up_blocks.{u}.attentions.{j}
output_blocks.{k}.{1|2} (ResBlock, up=True)  up_blocks.{u}.upsamplers.0        (resblock_updown)
output_blocks.{k}.{1|2}.conv (Upsample)      up_blocks.{u}.upsamplers.0.conv   (otherwise)
out.0 / out.2                                conv_norm_out / conv_out
-------------------------------------------  ----------------------------------------------
ResBlock: in_layers.0 / in_layers.2          norm1 / conv1
          emb_layers.1                       time_emb_proj
          out_layers.0 / out_layers.3        norm2 / conv2
          skip_connection (1x1 conv)         conv_shortcut
AttentionBlock: norm                         group_norm
          qkv (1x1 Conv1d, 3C x C)           to_q, to_k, to_v (Linear C x C, split per head)
          proj_out (1x1 Conv1d)              to_out.0 (Linear)
===========================================  ==============================================

Block indices: ``i`` runs 1, 2, ... over ADM's ``input_blocks`` (``num_res_blocks`` ResBlocks per
level ``l``, then one down-sampling block except at the last level); ``k`` runs over
``output_blocks`` (``num_res_blocks + 1`` per level, deepest level first, up-block ``u = L-1-l``,
the up-sampler sits in the last block of every level but the shallowest).  The skip
concatenations need no re-mapping: ADM's ``input_block_chans`` stack and diffusers'
``down_block_res_samples`` are the same sequence (conv_in, every ResBlock/attention output,
every down-sampler output).

qkv: ADM's default ``QKVAttentionLegacy`` reshapes the (B, 3C, T) qkv to (B*heads, 3*ch, T) and
then splits q, k, v, so the 3C output rows are ordered [head0: q k v, head1: q k v, ...];
diffusers' ``to_q`` rows are [head0 q, head1 q, ...].  ``use_new_attention_order=True``
(``QKVAttention``) orders them [q: all heads, k: all heads, v: all heads].  Both scale q k by
ch^-1/2 overall, as diffusers does.

learn_sigma: the network outputs 2 C channels (eps, then the variance interpolation); the
denoiser keeps only the first C (:class:`EpsOnly`).
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

from ..schedules import VPSchedule
from .unet import UNetDenoiser

__all__ = ["adm_unet_config", "convert_adm_state_dict", "load_adm_checkpoint", "EpsOnly",
           "infer_adm_flags", "adm_alphas_cumprod", "ADM_DEFAULTS"]

# guided-diffusion's defaults for the 256x256 unconditional models (DPS / ILVR / DiffPIR FFHQ).
ADM_DEFAULTS = dict(
    image_size=256, num_channels=128, num_res_blocks=1, channel_mult=(1, 1, 2, 2, 4, 4),
    attention_resolutions="16", num_heads=4, num_head_channels=64, learn_sigma=True,
    resblock_updown=True, use_scale_shift_norm=True, use_new_attention_order=False,
    in_channels=3, diffusion_steps=1000, noise_schedule="linear",
)

_AUTO_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4),
              64: (1, 2, 3, 4)}


class EpsOnly(nn.Module):
    """A learn_sigma UNet (2C outputs) seen as an eps network: returns the first C channels.

    ``.config`` is the wrapped UNet2DModel's; the call signature and the ``.sample`` output
    are the UNet2DModel's.
    """

    def __init__(self, unet: nn.Module, channels: int):
        super().__init__()
        self.unet = unet
        self.eps_channels = int(channels)

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self):
        return self.unet.dtype

    def forward(self, sample: Tensor, timestep, *args, **kwargs):
        from diffusers.models.unets.unet_2d import UNet2DOutput

        out = self.unet(sample, timestep, *args, **kwargs).sample
        return UNet2DOutput(sample=out[:, : self.eps_channels])


def _parse_ints(v, name: str) -> tuple:
    if isinstance(v, str):
        v = [p for p in v.replace(" ", "").split(",") if p]
    try:
        return tuple(float(p) if float(p) != int(float(p)) else int(float(p)) for p in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be comma-separated numbers, got {v!r}") from None


def _attention_levels(image_size: int, n_levels: int, attention_resolutions) -> list[bool]:
    """ADM's attention_resolutions are feature-map sizes (image_size // ds) in pixels."""
    res = set(_parse_ints(attention_resolutions, "attention_resolutions"))
    return [image_size // 2**lvl in res for lvl in range(n_levels)]


def adm_unet_config(image_size: int = 256, num_channels: int = 128, num_res_blocks: int = 1,
                    channel_mult=(1, 1, 2, 2, 4, 4), attention_resolutions="16",
                    num_head_channels: int = 64, num_heads: int = 4, learn_sigma: bool = True,
                    resblock_updown: bool = True, use_scale_shift_norm: bool = True,
                    in_channels: int = 3) -> dict:
    """``UNet2DModel(**kwargs)`` with the layout of ADM's ``UNetModel`` for these flags.

    Flags are guided-diffusion's (``script_util.create_model``): attention_resolutions
    "32,16,8" are feature-map sizes; num_head_channels -1 means ``num_heads`` heads everywhere
    (then every attention layer must have the same head size, as UNet2DModel has one
    ``attention_head_dim``); channel_mult "" picks ADM's default for image_size.
    With resblock_updown the levels use ResnetDownsampleBlock2D / ResnetUpsampleBlock2D
    (plain DownBlock2D / UpBlock2D can only down/up-sample with a conv) and AttnDown/UpBlock2D
    with ``downsample_type = upsample_type = "resnet"``.
    """
    if channel_mult in ("", None, ()):
        if image_size not in _AUTO_MULT:
            raise ValueError(f"no default channel_mult for image_size {image_size}")
        channel_mult = _AUTO_MULT[image_size]
    mult = _parse_ints(channel_mult, "channel_mult")
    if mult[0] != 1:
        raise ValueError(f"channel_mult must start with 1 for UNet2DModel (its time embedding is "
                         f"sized by the first level), got {mult}")
    chans = [int(m * num_channels) for m in mult]
    n = len(chans)
    attn = _attention_levels(image_size, n, attention_resolutions)
    attn_chans = {c for c, a in zip(chans, attn) if a} | {chans[-1]}  # the middle block too
    if num_head_channels is not None and num_head_channels > 0:
        head_dim = int(num_head_channels)
        bad = sorted(c for c in attn_chans if c % head_dim)
        if bad:
            raise ValueError(f"num_head_channels {head_dim} does not divide channels {bad}")
    else:
        dims = {c // num_heads for c in attn_chans}
        if len(dims) != 1 or any(c % num_heads for c in attn_chans):
            raise ValueError(f"num_heads={num_heads} gives different head sizes over the attention "
                             f"channels {sorted(attn_chans)}; UNet2DModel needs one head size")
        head_dim = dims.pop()
    if resblock_updown:
        down = tuple("AttnDownBlock2D" if a else "ResnetDownsampleBlock2D" for a in attn)
        up = tuple("AttnUpBlock2D" if a else "ResnetUpsampleBlock2D" for a in reversed(attn))
    else:
        down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn)
        up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn))
    return dict(
        sample_size=int(image_size), in_channels=int(in_channels),
        out_channels=int(in_channels) * (2 if learn_sigma else 1), center_input_sample=False,
        time_embedding_type="positional", freq_shift=0, flip_sin_to_cos=True,
        down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2D",
        block_out_channels=tuple(chans), layers_per_block=int(num_res_blocks),
        mid_block_scale_factor=1, downsample_padding=1,
        downsample_type="resnet" if resblock_updown else "conv",
        upsample_type="resnet" if resblock_updown else "conv",
        dropout=0.0, act_fn="silu", attention_head_dim=head_dim, norm_num_groups=32,
        # UNetMidBlock2D drops the attention GroupNorm for scale_shift unless told; ADM has it.
        attn_norm_num_groups=32, norm_eps=1e-5,
        resnet_time_scale_shift="scale_shift" if use_scale_shift_norm else "default",
        add_attention=True,
    )


def _adm_key_map(config: dict) -> list[tuple[str, str, str]]:
    """(diffusers prefix, ADM prefix, kind) for every module; kind in plain/res/attn."""
    n = len(config["block_out_channels"])
    nrb = int(config["layers_per_block"])
    updown = config.get("downsample_type") == "resnet"
    m = [("time_embedding.linear_1", "time_embed.0", "plain"),
         ("time_embedding.linear_2", "time_embed.2", "plain"),
         ("conv_in", "input_blocks.0.0", "plain")]
    i = 1
    for lvl in range(n):
        attn = config["down_block_types"][lvl].startswith("Attn")
        for j in range(nrb):
            m.append((f"down_blocks.{lvl}.resnets.{j}", f"input_blocks.{i}.0", "res"))
            if attn:
                m.append((f"down_blocks.{lvl}.attentions.{j}", f"input_blocks.{i}.1", "attn"))
            i += 1
        if lvl < n - 1:
            if updown:
                m.append((f"down_blocks.{lvl}.downsamplers.0", f"input_blocks.{i}.0", "res"))
            else:
                m.append((f"down_blocks.{lvl}.downsamplers.0.conv", f"input_blocks.{i}.0.op",
                          "plain"))
            i += 1
    m += [("mid_block.resnets.0", "middle_block.0", "res"),
          ("mid_block.attentions.0", "middle_block.1", "attn"),
          ("mid_block.resnets.1", "middle_block.2", "res")]
    k = 0
    for u in range(n):
        attn = config["up_block_types"][u].startswith("Attn")
        for j in range(nrb + 1):
            m.append((f"up_blocks.{u}.resnets.{j}", f"output_blocks.{k}.0", "res"))
            nxt = 1
            if attn:
                m.append((f"up_blocks.{u}.attentions.{j}", f"output_blocks.{k}.1", "attn"))
                nxt = 2
            if j == nrb and u < n - 1:
                if updown:
                    m.append((f"up_blocks.{u}.upsamplers.0", f"output_blocks.{k}.{nxt}", "res"))
                else:
                    m.append((f"up_blocks.{u}.upsamplers.0.conv", f"output_blocks.{k}.{nxt}.conv",
                              "plain"))
            k += 1
    m += [("conv_norm_out", "out.0", "plain"), ("conv_out", "out.2", "plain")]
    return m


_RES = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
        ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))


def _expected_shapes(config: dict) -> dict[str, torch.Size]:
    from diffusers import UNet2DModel

    try:
        with torch.device("meta"):
            net = UNet2DModel(**config)
    except Exception:  # pragma: no cover - meta construction unsupported: build it for real
        net = UNet2DModel(**config)
    return {k: v.shape for k, v in net.state_dict().items()}


def convert_adm_state_dict(sd: dict, config: dict, *, use_new_attention_order: bool = False,
                           expected: dict | None = None) -> dict:
    """Rename / reshape an ADM state dict into a ``UNet2DModel(**config)`` state dict.

    Raises ValueError listing any ADM key left unused, any UNet2DModel key not produced, and
    any shape that disagrees (``expected``: name -> shape, built from ``config`` if omitted).
    """
    head_dim = int(config["attention_head_dim"])
    out: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> Tensor | None:
        if key in sd:
            used.add(key)
            return sd[key]
        return None

    def copy(dst: str, src: str) -> None:
        for p in ("weight", "bias"):
            v = take(f"{src}.{p}")
            if v is not None:
                out[f"{dst}.{p}"] = v

    for dst, src, kind in _adm_key_map(config):
        if kind == "plain":
            copy(dst, src)
        elif kind == "res":
            for d, s in _RES:
                copy(f"{dst}.{d}", f"{src}.{s}")
        else:
            copy(f"{dst}.group_norm", f"{src}.norm")
            w, b = take(f"{src}.qkv.weight"), take(f"{src}.qkv.bias")
            if w is not None:
                c = w.shape[1]
                heads = c // head_dim
                w = w.reshape(w.shape[0], c)
                if use_new_attention_order:   # [q | k | v], each head-major
                    wq = w.reshape(3, heads, head_dim, c)
                    bq = b.reshape(3, heads, head_dim) if b is not None else None
                else:                         # per head [q k v] (QKVAttentionLegacy)
                    wq = w.reshape(heads, 3, head_dim, c).transpose(0, 1)
                    bq = b.reshape(heads, 3, head_dim).transpose(0, 1) if b is not None else None
                for idx, name in enumerate(("to_q", "to_k", "to_v")):
                    out[f"{dst}.{name}.weight"] = wq[idx].reshape(c, c).contiguous()
                    if bq is not None:
                        out[f"{dst}.{name}.bias"] = bq[idx].reshape(c).contiguous()
            w, b = take(f"{src}.proj_out.weight"), take(f"{src}.proj_out.bias")
            if w is not None:
                out[f"{dst}.to_out.0.weight"] = w.reshape(w.shape[0], w.shape[1]).contiguous()
            if b is not None:
                out[f"{dst}.to_out.0.bias"] = b

    expected = expected if expected is not None else _expected_shapes(config)
    unexpected = sorted(set(sd) - used)
    missing = sorted(set(expected) - set(out))
    extra = sorted(set(out) - set(expected))
    wrong = sorted(f"{k}: {tuple(out[k].shape)} vs {tuple(expected[k])}"
                   for k in set(out) & set(expected) if out[k].shape != expected[k])
    if unexpected or missing or extra or wrong:
        def show(xs):
            return ", ".join(xs[:12]) + (f" ... (+{len(xs) - 12})" if len(xs) > 12 else "")
        parts = []
        if unexpected:
            parts.append(f"unexpected ADM keys [{show(unexpected)}]")
        if extra:
            parts.append(f"converted keys UNet2DModel lacks [{show(extra)}]")
        if missing:
            parts.append(f"missing UNet2DModel keys [{show(missing)}]")
        if wrong:
            parts.append(f"shape mismatches [{show(wrong)}]")
        raise ValueError("ADM state dict does not match the UNet2DModel layout: "
                         + "; ".join(parts))
    return out


def infer_adm_flags(sd: dict, image_size: int = 256) -> dict:
    """ADM flags read off a state dict's key structure and shapes.

    Inferred: in_channels, num_channels, channel_mult, num_res_blocks, attention_resolutions
    (needs image_size, default 256: only the downsampling factors are in the weights),
    learn_sigma, resblock_updown, use_scale_shift_norm.  Not inferable (the weights do not
    depend on them): num_head_channels / num_heads (default 64 / 4, ADM's 256px
    unconditional models), use_new_attention_order (default False), the noise schedule.
    """
    try:
        conv_in = sd["input_blocks.0.0.weight"]
        mc = int(sd["time_embed.0.weight"].shape[1])
        out_rows = int(sd["out.2.weight"].shape[0])
    except KeyError as e:
        raise ValueError(f"not an ADM UNet state dict (no {e.args[0]!r})") from None
    if "label_emb.weight" in sd:
        raise ValueError("class-conditional ADM checkpoints (label_emb) are not supported")
    in_ch = int(conv_in.shape[1])

    def count(prefix: str) -> int:
        idx = {int(k.split(".")[1]) for k in sd if k.startswith(prefix)}
        return max(idx) + 1 if idx else 0

    n_in, n_out = count("input_blocks."), count("output_blocks.")

    def block_children(prefix: str) -> set[int]:
        return {int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)}

    def is_upsampler(k: int) -> bool:
        for c in block_children(f"output_blocks.{k}."):
            p = f"output_blocks.{k}.{c}."
            if f"{p}conv.weight" in sd:
                return True
            if c > 0 and f"{p}in_layers.0.weight" in sd:
                return True
        return False

    ups = [k for k in range(n_out) if is_upsampler(k)]
    nrb = ups[0] if ups else n_out - 1
    levels = len(ups) + 1
    if levels * (nrb + 1) != n_out or n_in != levels * (nrb + 1):
        raise ValueError(f"unrecognised ADM block structure: {n_in} input blocks, {n_out} "
                         f"output blocks, up-samplers at {ups}")
    mult, attn_ds, updown = [], [], True
    i = 1
    for lvl in range(levels):
        out_c = int(sd[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0])
        m = out_c / mc
        mult.append(int(m) if m == int(m) else m)
        if f"input_blocks.{i}.1.qkv.weight" in sd:
            attn_ds.append(2**lvl)
        i += nrb
        if lvl < levels - 1:
            if f"input_blocks.{i}.0.op.weight" in sd:
                updown = False
            i += 1
    res_rows = int(sd["input_blocks.1.0.emb_layers.1.weight"].shape[0])
    res_out = int(sd["input_blocks.1.0.out_layers.3.weight"].shape[0])
    return dict(
        image_size=int(image_size), in_channels=in_ch, num_channels=mc, channel_mult=tuple(mult),
        num_res_blocks=nrb,
        attention_resolutions=",".join(str(image_size // d) for d in attn_ds),
        learn_sigma=out_rows == 2 * in_ch, resblock_updown=updown,
        use_scale_shift_norm=res_rows == 2 * res_out,
        num_head_channels=ADM_DEFAULTS["num_head_channels"], num_heads=ADM_DEFAULTS["num_heads"],
        use_new_attention_order=False,
        diffusion_steps=ADM_DEFAULTS["diffusion_steps"],
        noise_schedule=ADM_DEFAULTS["noise_schedule"],
    )


def adm_alphas_cumprod(noise_schedule: str = "linear", diffusion_steps: int = 1000) -> tuple:
    """guided-diffusion's ``get_named_beta_schedule`` -> alphas_cumprod (float64)."""
    k = int(diffusion_steps)
    if noise_schedule == "linear":
        scale = 1000 / k
        betas = torch.linspace(scale * 1e-4, scale * 0.02, k, dtype=torch.float64)
    elif noise_schedule == "cosine":
        f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f((i + 1) / k) / f(i / k), 0.999) for i in range(k)],
                             dtype=torch.float64)
    else:
        raise ValueError(f"unknown ADM noise_schedule {noise_schedule!r} (linear, cosine)")
    return tuple(torch.cumprod(1 - betas, 0).tolist())


def _read_state_dict(path: Path) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"refusing to load {path}: not a plain tensor state dict "
                         "(pickled code is never executed)") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"cannot read {path} as a torch checkpoint: {e}") from None
    if not isinstance(sd, dict) or not sd or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise ValueError(f"refusing to load {path}: not a plain tensor state dict "
                         "(pickled code is never executed)")
    return sd


def load_adm_checkpoint(path, **adm_flags) -> UNetDenoiser:
    """An ADM ``.pt`` checkpoint as an eps ``UNetDenoiser`` (DDPM discrete time, VP table).

    Flags are inferred from the weights (see :func:`infer_adm_flags`); any of them may be
    overridden by keyword (``image_size`` defaults to 256; ``num_head_channels``,
    ``num_heads``, ``use_new_attention_order``, ``noise_schedule`` and ``diffusion_steps``
    cannot be read off the weights and default to ADM's 256px unconditional settings).
    The file is read with ``weights_only=True``: pickled code is refused, never run.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path does not exist: {path}")
    unknown = set(adm_flags) - set(ADM_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown ADM flags {sorted(unknown)}; known: {sorted(ADM_DEFAULTS)}")
    sd = _read_state_dict(path)
    flags = infer_adm_flags(sd, adm_flags.get("image_size", ADM_DEFAULTS["image_size"]))
    flags.update(adm_flags)
    cfg = adm_unet_config(**{k: flags[k] for k in (
        "image_size", "num_channels", "num_res_blocks", "channel_mult", "attention_resolutions",
        "num_head_channels", "num_heads", "learn_sigma", "resblock_updown",
        "use_scale_shift_norm", "in_channels")})
    from diffusers import UNet2DModel

    unet = UNet2DModel(**cfg)
    expected = {k: v.shape for k, v in unet.state_dict().items()}
    new = convert_adm_state_dict(sd, cfg, use_new_attention_order=flags["use_new_attention_order"],
                                 expected=expected)
    unet.load_state_dict({k: v.float() for k, v in new.items()}, strict=True)
    net = EpsOnly(unet, flags["in_channels"]) if flags["learn_sigma"] else unet
    table = adm_alphas_cumprod(flags["noise_schedule"], flags["diffusion_steps"])
    meta = {"trained_on": f"ADM checkpoint {path.name}",
            "extra": {"adm_flags": {k: (list(v) if isinstance(v, tuple) else v)
                                    for k, v in flags.items()}}}
    return UNetDenoiser(net, VPSchedule(beta="table", table=table), "eps", "discrete",
                        input_scaling=False, meta=meta).eval()
