"""NCSN++ and DDPM++ (Song et al., "Score-Based Generative Modeling through Stochastic
Differential Equations", ICLR 2021, sec. H / appendix H.1), as score_sde_pytorch builds them.

One class, ``NCSNpp``, for both: score_sde names both ``ncsnpp`` and tells them apart by the
config (DDPM++: BigGAN-type residual blocks without FIR, no pyramids, positional time
embedding; NCSN++: FIR resampling, an input pyramid, Fourier features of log sigma).  The
modules sit in one flat ``all_modules`` list in score_sde's order with its parameter names,
so a score_sde / score-MRI state dict loads with ``strict=True`` and its EMA ``shadow_params``
(a list in ``parameters()`` order) map one to one.

The maths, for images (B, C, H, W):

* time embedding: Gaussian Fourier features [sin(2 pi W log sigma) | cos(...)] of nf fixed
  frequencies W (``embedding_type='fourier'``), or the transformer sinusoid
  [sin(t f_j) | cos(t f_j)], f_j = 10000^(-j/(nf/2 - 1)) (``'positional'``); then
  Dense(nf*4), act, Dense(nf*4) when ``conditional``;
* FIR resampling (StyleGAN2; ``fir``): the separable kernel k = k1 k1^T / sum^2 (k1 =
  ``fir_kernel``, e.g. [1, 3, 3, 1]); ``upfirdn2d`` = zero-insertion by ``up``, zero padding,
  correlation with the flipped kernel, keeping every ``down``-th sample.  Up-sampling
  multiplies k by 4 and pads (2, 1); down-sampling pads (1, 1).  A down-sampling convolution
  is the FIR padded by 2, then a stride-2 3x3 conv.  (score_sde_pytorch's stand-alone
  Upsample layer runs only as FIR without a conv; configs needing it otherwise are refused:
  no checkpoint can have them);
* residual blocks: DDPM-type (GN, act, conv, + Dense(temb), GN, act, dropout, conv, skip via
  NIN) or BigGAN-type (GN, act, [up/down-sample h and x], conv, + Dense(temb), GN, act,
  dropout, conv; skip via a 1x1 conv after resampling); ``skip_rescale`` divides the sum by
  sqrt 2;
* attention: one head over the C channels, softmax(q^T k / sqrt C) v with NIN (1x1 dense)
  projections, residual (/ sqrt 2 with skip_rescale);
* progressive input (``input_skip`` / ``residual``): a pyramid of the input image,
  down-sampled beside the features and combined with them at every level; progressive output
  (``output_skip`` / ``residual``): a pyramid of image-space outputs up-sampled and summed;
* data not ``centered`` (in [0, 1]) is mapped to 2 x - 1 first; ``scale_by_sigma`` divides
  the output by sigma (VE: the output is the score).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NCSNpp", "upfirdn2d", "fir_kernel_2d"]


# ----------------------------------------------------------------------------- FIR resampling
def fir_kernel_2d(k1, gain: float = 1.0) -> Tensor:
    """The separable FIR kernel outer(k1, k1), normalised to sum ``gain`` (float32)."""
    k = np.asarray(k1, dtype=np.float32)
    k = np.outer(k, k) if k.ndim == 1 else k
    return torch.from_numpy(k / k.sum() * gain)


def upfirdn2d(x: Tensor, k: Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> Tensor:
    """Zero-insert by ``up``, pad (pad0 before, pad1 after, both axes), correlate every
    channel with flip(k), keep every ``down``-th sample: (B, C, H, W) -> (B, C, H', W')."""
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    p0, p1 = pad
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    kk = torch.flip(k, [0, 1]).to(x)[None, None].expand(c, 1, *k.shape)
    x = F.conv2d(x, kk, groups=c)
    return x[:, :, ::down, ::down]


def _fir_up(x: Tensor, k1) -> Tensor:
    k = fir_kernel_2d(k1, 4.0)
    p = k.shape[0] - 2
    return upfirdn2d(x, k, up=2, pad=((p + 1) // 2 + 1, p // 2))


def _fir_down(x: Tensor, k1) -> Tensor:
    k = fir_kernel_2d(k1)
    p = k.shape[0] - 2
    return upfirdn2d(x, k, down=2, pad=((p + 1) // 2, p // 2))


class FIRDownConv(nn.Module):
    """A stride-2 3x3 conv after FIR filtering (score_sde's ``up_or_down_sampling.Conv2d`` with
    ``down=True``: parameters ``weight`` (out, in, 3, 3) and ``bias``): the FIR padded by
    (K - 2 + 2) / 2 on each side, then the conv without padding."""

    def __init__(self, cin: int, cout: int, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.fir_kernel = tuple(fir_kernel)

    def forward(self, x: Tensor) -> Tensor:
        k = fir_kernel_2d(self.fir_kernel)
        p = (k.shape[0] - 2) + (self.weight.shape[-1] - 1)
        x = F.conv2d(upfirdn2d(x, k, pad=((p + 1) // 2, p // 2)), self.weight, stride=2)
        return x + self.bias.reshape(1, -1, 1, 1)


# ----------------------------------------------------------------------------- layers
def _gn(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(ch // 4, 32), ch, eps=1e-6)


def _conv3(cin: int, cout: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=padding)


class NIN(nn.Module):
    """A 1x1 dense layer on channels: y_d = sum_c x_c W[c, d] + b_d (parameters W, b)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(cin, cout))
        self.b = nn.Parameter(torch.zeros(cout))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bchw,cd->bdhw", x, self.W) + self.b[None, :, None, None]


class Fourier(nn.Module):
    """Gaussian Fourier features [sin(2 pi s W) | cos(2 pi s W)] (W fixed, not trained)."""

    def __init__(self, n: int):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(n), requires_grad=False)

    def forward(self, s: Tensor) -> Tensor:
        a = s[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([a.sin(), a.cos()], -1)


def positional_embedding(t: Tensor, dim: int) -> Tensor:
    """[sin(t f_j) | cos(t f_j)], f_j = 10000^(-j / (dim/2 - 1)) (float32, zero-padded if odd)."""
    half = dim // 2
    f = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device)
                  * -(math.log(10000) / (half - 1)))
    a = t.float()[:, None] * f[None]
    out = torch.cat([a.sin(), a.cos()], 1)
    return F.pad(out, (0, 1)) if dim % 2 else out


class Combine(nn.Module):
    def __init__(self, dim1: int, dim2: int, method: str):
        super().__init__()
        self.Conv_0 = nn.Conv2d(dim1, dim2, 1)
        self.method = method

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.Conv_0(x)
        return torch.cat([h, y], 1) if self.method == "cat" else h + y


class Attention(nn.Module):
    def __init__(self, ch: int, skip_rescale: bool):
        super().__init__()
        self.GroupNorm_0 = _gn(ch)
        self.NIN_0, self.NIN_1, self.NIN_2, self.NIN_3 = (NIN(ch, ch) for _ in range(4))
        self.skip_rescale = skip_rescale

    def forward(self, x: Tensor) -> Tensor:
        b, c, hh, ww = x.shape
        h = self.GroupNorm_0(x)
        q, k, v = (m(h).reshape(b, c, hh * ww).transpose(1, 2)
                   for m in (self.NIN_0, self.NIN_1, self.NIN_2))
        a = F.scaled_dot_product_attention(q, k, v)            # (B, HW, C), one head
        h = self.NIN_3(a.transpose(1, 2).reshape(b, c, hh, ww))
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class Resample(nn.Module):
    """score_sde's layerspp Downsample (average pooling or FIR, with an optional conv: ``Conv_0``,
    or ``Conv2d_0`` after the FIR) and Upsample (FIR without a conv: the only form
    score_sde_pytorch runs)."""

    def __init__(self, cin: int, cout: int | None, up: bool, with_conv: bool, fir: bool,
                 fir_kernel):
        super().__init__()
        cout = cout or cin
        if up and (with_conv or not fir):
            raise ValueError(
                "this NCSN++ config up-samples with layerspp.Upsample "
                f"({'with a conv' if with_conv else 'without FIR'}: resblock_type 'ddpm' or a "
                "progressive output pyramid), which score_sde_pytorch cannot run (upsample_conv_2d "
                "slices with a negative step; F.interpolate gets 'nearest' as scale_factor), so "
                "no checkpoint has it")
        if with_conv and fir:
            self.Conv2d_0 = FIRDownConv(cin, cout, fir_kernel)
        elif with_conv:
            self.Conv_0 = _conv3(cin, cout, stride=2, padding=0)
        self.up, self.with_conv, self.fir, self.fir_kernel = up, with_conv, fir, tuple(fir_kernel)

    def forward(self, x: Tensor) -> Tensor:
        if self.up:
            return _fir_up(x, self.fir_kernel)
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else _fir_down(x, self.fir_kernel)
        if self.with_conv:
            return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, 2, stride=2)


class ResBlockDDPM(nn.Module):
    """score_sde's ResnetBlockDDPMpp."""

    def __init__(self, act, cin: int, cout: int | None, temb_dim: int, skip_rescale: bool):
        super().__init__()
        cout = cout or cin
        self.GroupNorm_0 = _gn(cin)
        self.Conv_0 = _conv3(cin, cout)
        self.Dense_0 = nn.Linear(temb_dim, cout)
        self.GroupNorm_1 = _gn(cout)
        self.Dropout_0 = nn.Dropout(0.0)
        self.Conv_1 = _conv3(cout, cout)
        if cin != cout:
            self.NIN_0 = NIN(cin, cout)
        self.act, self.skip_rescale, self.cout = act, skip_rescale, cout

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self.Conv_0(self.act(self.GroupNorm_0(x)))
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if x.shape[1] != self.cout:
            x = self.NIN_0(x)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class ResBlockBigGAN(nn.Module):
    """score_sde's ResnetBlockBigGANpp (optionally up- or down-sampling)."""

    def __init__(self, act, cin: int, cout: int | None, temb_dim: int, skip_rescale: bool,
                 up: bool = False, down: bool = False, fir: bool = False, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        cout = cout or cin
        self.GroupNorm_0 = _gn(cin)
        self.up, self.down, self.fir, self.fir_kernel = up, down, fir, tuple(fir_kernel)
        self.Conv_0 = _conv3(cin, cout)
        self.Dense_0 = nn.Linear(temb_dim, cout)
        self.GroupNorm_1 = _gn(cout)
        self.Dropout_0 = nn.Dropout(0.0)
        self.Conv_1 = _conv3(cout, cout)
        if cin != cout or up or down:
            self.Conv_2 = nn.Conv2d(cin, cout, 1)
        self.act, self.skip_rescale, self.cin, self.cout = act, skip_rescale, cin, cout

    def _resample(self, v: Tensor) -> Tensor:
        if self.up:
            return _fir_up(v, self.fir_kernel) if self.fir else \
                F.interpolate(v, scale_factor=2, mode="nearest")
        if self.down:
            return _fir_down(v, self.fir_kernel) if self.fir else F.avg_pool2d(v, 2, stride=2)
        return v

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self.act(self.GroupNorm_0(x))
        h, x = self._resample(h), self._resample(x)
        h = self.Conv_0(h)
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if self.cin != self.cout or self.up or self.down:
            x = self.Conv_2(x)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


_ACTS = {"swish": nn.SiLU, "silu": nn.SiLU, "elu": nn.ELU, "relu": nn.ReLU,
         "lrelu": lambda: nn.LeakyReLU(0.2)}


# ----------------------------------------------------------------------------- the network
class NCSNpp(nn.Module):
    """score_sde's ``NCSNpp(config)``, with the config's fields as keyword arguments:
    (B, C, H, W), time_cond (B,) (sigma for 'fourier', the timestep label for 'positional')
    -> (B, C, H, W)."""

    arch = "ncsnpp"  # a ccdf model folder's "arch" (``formats.ARCHS``)

    def __init__(self, image_size: int, num_channels: int = 3, centered: bool = False,
                 nf: int = 128, ch_mult=(1, 2, 2, 2), num_res_blocks: int = 4,
                 attn_resolutions=(16,), resamp_with_conv: bool = True, conditional: bool = True,
                 fir: bool = True, fir_kernel=(1, 3, 3, 1), skip_rescale: bool = True,
                 resblock_type: str = "biggan", progressive: str = "none",
                 progressive_input: str = "residual", progressive_combine: str = "sum",
                 embedding_type: str = "fourier", nonlinearity: str = "swish",
                 scale_by_sigma: bool = True, num_scales: int = 1000, sigma_min: float = 0.01,
                 sigma_max: float = 50.0):
        super().__init__()
        self.kwargs = dict(
            image_size=int(image_size), num_channels=int(num_channels), centered=bool(centered),
            nf=int(nf), ch_mult=[int(m) for m in ch_mult], num_res_blocks=int(num_res_blocks),
            attn_resolutions=[int(r) for r in attn_resolutions],
            resamp_with_conv=bool(resamp_with_conv), conditional=bool(conditional),
            fir=bool(fir), fir_kernel=[float(v) for v in fir_kernel],
            skip_rescale=bool(skip_rescale), resblock_type=str(resblock_type).lower(),
            progressive=str(progressive).lower(),
            progressive_input=str(progressive_input).lower(),
            progressive_combine=str(progressive_combine).lower(),
            embedding_type=str(embedding_type).lower(), nonlinearity=str(nonlinearity).lower(),
            scale_by_sigma=bool(scale_by_sigma), num_scales=int(num_scales),
            sigma_min=float(sigma_min), sigma_max=float(sigma_max))
        k = self.kwargs
        for key, allowed in (("progressive", ("none", "output_skip", "residual")),
                             ("progressive_input", ("none", "input_skip", "residual")),
                             ("embedding_type", ("fourier", "positional")),
                             ("resblock_type", ("ddpm", "biggan")),
                             ("progressive_combine", ("sum", "cat")),
                             ("nonlinearity", tuple(_ACTS))):
            if k[key] not in allowed:
                raise ValueError(f"NCSN++ {key} {k[key]!r} is not one of {', '.join(allowed)}")
        self.act = act = _ACTS[k["nonlinearity"]]()
        sig = np.exp(np.linspace(np.log(k["sigma_max"]), np.log(k["sigma_min"]), k["num_scales"]))
        self.register_buffer("sigmas", torch.tensor(sig, dtype=torch.float32))
        nf, n_res = k["nf"], len(k["ch_mult"])
        self.image_size, self.in_channels = k["image_size"], k["num_channels"]
        self.out_channels = k["num_channels"]
        self.resolutions = [k["image_size"] // 2**i for i in range(n_res)]
        attn = set(k["attn_resolutions"])
        fk, fir, temb_dim = k["fir_kernel"], k["fir"], 4 * nf
        prog, prog_in, combine = k["progressive"], k["progressive_input"], k["progressive_combine"]

        def res(cin, cout=None, up=False, down=False):
            if k["resblock_type"] == "ddpm":
                return ResBlockDDPM(act, cin, cout, temb_dim, k["skip_rescale"])
            return ResBlockBigGAN(act, cin, cout, temb_dim, k["skip_rescale"], up, down, fir, fk)

        m: list[nn.Module] = []
        if k["embedding_type"] == "fourier":
            m.append(Fourier(nf))
            embed_dim = 2 * nf
        else:
            embed_dim = nf
        if k["conditional"]:
            m += [nn.Linear(embed_dim, temb_dim), nn.Linear(temb_dim, temb_dim)]
        if prog == "output_skip":
            self.pyramid_upsample = Resample(0, None, True, False, fir, fk)
        if prog_in == "input_skip":
            self.pyramid_downsample = Resample(0, None, False, False, fir, fk)
        channels = k["num_channels"]
        m.append(_conv3(channels, nf))
        skips, cin, pyr_in = [nf], nf, channels
        for lvl in range(n_res):
            for _ in range(k["num_res_blocks"]):
                cout = nf * k["ch_mult"][lvl]
                m.append(res(cin, cout))
                cin = cout
                if self.resolutions[lvl] in attn:
                    m.append(Attention(cin, k["skip_rescale"]))
                skips.append(cin)
            if lvl != n_res - 1:
                m.append(Resample(cin, None, False, k["resamp_with_conv"], fir, fk)
                         if k["resblock_type"] == "ddpm" else res(cin, down=True))
                if prog_in == "input_skip":
                    m.append(Combine(pyr_in, cin, combine))
                    if combine == "cat":
                        cin *= 2
                elif prog_in == "residual":
                    m.append(Resample(pyr_in, cin, False, True, fir, fk))
                    pyr_in = cin
                skips.append(cin)
        cin = skips[-1]
        m += [res(cin), Attention(cin, k["skip_rescale"]), res(cin)]
        pyr_ch = 0
        for lvl in reversed(range(n_res)):
            for _ in range(k["num_res_blocks"] + 1):
                cout = nf * k["ch_mult"][lvl]
                m.append(res(cin + skips.pop(), cout))
                cin = cout
            if self.resolutions[lvl] in attn:
                m.append(Attention(cin, k["skip_rescale"]))
            if prog != "none":
                if lvl == n_res - 1:
                    m.append(_gn(cin))
                    m.append(_conv3(cin, channels) if prog == "output_skip" else _conv3(cin, cin))
                    pyr_ch = channels if prog == "output_skip" else cin
                elif prog == "output_skip":
                    m += [_gn(cin), _conv3(cin, channels)]
                    pyr_ch = channels
                else:
                    m.append(Resample(pyr_ch, cin, True, True, fir, fk))
                    pyr_ch = cin
            if lvl != 0:
                m.append(Resample(cin, None, True, k["resamp_with_conv"], fir, fk)
                         if k["resblock_type"] == "ddpm" else res(cin, up=True))
        if prog != "output_skip":
            m += [_gn(cin), _conv3(cin, channels)]
        self.all_modules = nn.ModuleList(m)

    def config_dict(self) -> dict:
        return dict(self.kwargs)

    def forward(self, x: Tensor, time_cond: Tensor) -> Tensor:
        k, m = self.kwargs, iter(self.all_modules)
        time_cond = time_cond.reshape(-1)
        if k["embedding_type"] == "fourier":
            temb = next(m)(torch.log(time_cond))
        else:
            temb = positional_embedding(time_cond, k["nf"]).to(x.dtype)
        if k["conditional"]:
            dense0 = next(m)
            dense1 = next(m)
            temb = dense1(self.act(dense0(temb)))
        else:
            temb = None
        if not k["centered"]:
            x = 2 * x - 1.0
        attn, n_res = set(k["attn_resolutions"]), len(k["ch_mult"])
        prog, prog_in = k["progressive"], k["progressive_input"]
        biggan = k["resblock_type"] == "biggan"
        pyramid_in = x if prog_in != "none" else None
        hs = [next(m)(x)]
        for lvl in range(n_res):
            for _ in range(k["num_res_blocks"]):
                h = next(m)(hs[-1], temb)
                if self.resolutions[lvl] in attn:
                    h = next(m)(h)
                hs.append(h)
            if lvl != n_res - 1:
                h = next(m)(hs[-1], temb) if biggan else next(m)(hs[-1])
                if prog_in == "input_skip":
                    pyramid_in = self.pyramid_downsample(pyramid_in)
                    h = next(m)(pyramid_in, h)
                elif prog_in == "residual":
                    pyramid_in = next(m)(pyramid_in)
                    pyramid_in = (pyramid_in + h) / math.sqrt(2.0) if k["skip_rescale"] \
                        else pyramid_in + h
                    h = pyramid_in
                hs.append(h)
        h = hs[-1]
        h = next(m)(h, temb)
        h = next(m)(h)
        h = next(m)(h, temb)
        pyramid = None
        for lvl in reversed(range(n_res)):
            for _ in range(k["num_res_blocks"] + 1):
                h = next(m)(torch.cat([h, hs.pop()], 1), temb)
            if self.resolutions[lvl] in attn:
                h = next(m)(h)
            if prog != "none":
                if lvl == n_res - 1:
                    pyramid = self._norm_act_conv(m, h)
                elif prog == "output_skip":
                    pyramid = self.pyramid_upsample(pyramid) + self._norm_act_conv(m, h)
                else:
                    pyramid = next(m)(pyramid)
                    pyramid = (pyramid + h) / math.sqrt(2.0) if k["skip_rescale"] else pyramid + h
                    h = pyramid
            if lvl != 0:
                h = next(m)(h, temb) if biggan else next(m)(h)
        h = pyramid if prog == "output_skip" else self._norm_act_conv(m, h)
        if k["scale_by_sigma"]:
            used = time_cond if k["embedding_type"] == "fourier" else \
                self.sigmas[time_cond.long()]
            h = h / used.to(h.dtype).reshape(-1, 1, 1, 1)
        return h

    def _norm_act_conv(self, m, h: Tensor) -> Tensor:
        norm = next(m)
        conv = next(m)
        return conv(self.act(norm(h)))
