"""Networks wrapped to the denoiser contract: ``UNetDenoiser``, a small diffusers UNet
(``build_unet``) and ``EpsOnly`` (the eps channels of a learn_sigma network).

``UNetDenoiser.config_dict`` is what a ccdf model folder's ``config.json`` holds:
``{"format": "ccdf-model", "unet": <UNet2DModel config>, "schedule": {...},
"prediction": "eps", "time_input": "t1000", "input_scaling": true, "image_size": 32,
"channels": 1, "data_range": [-1, 1], "trained_on": "...", "extra": {...}}``; a port of
another family's network (ADM, NCSN++: a class with an ``arch`` name) has ``"arch": "adm",
"net": {...}`` in place of ``"unet"`` and keeps its original state-dict keys.  Reading and
writing model files (every family): ``models.formats``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

FORMAT = "ccdf-model"
TIME_INPUTS = ("t1000", "t999", "discrete", "discrete_rescaled", "sigma", "ve_index")


def build_unet(image_size: int = 32, channels: int = 1, block_out_channels=(32, 64, 64),
               layers_per_block: int = 1, attention: bool = False, in_channels: int | None = None):
    """A small diffusers UNet2DModel: (B, in_channels, H, W) -> (B, channels, H, W)."""
    from diffusers import UNet2DModel

    n = len(block_out_channels)
    return UNet2DModel(
        sample_size=image_size, in_channels=in_channels or channels, out_channels=channels,
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
        add_attention=attention, norm_num_groups=min(8, block_out_channels[0]),
    )


def pad_to_multiple(h: Tensor, m: int):
    """Reflect-pad (B, C, H, W) to multiples of m (replicate where too small to reflect);
    returns (padded, crop) with crop(out) cutting an output back to H x W."""
    hw = h.shape[-2:]
    ph, pw = -hw[0] % m, -hw[1] % m
    if ph or pw:
        mode = "reflect" if min(hw) > max(ph, pw) else "replicate"
        h = torch.nn.functional.pad(h, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)

    def crop(out: Tensor) -> Tensor:
        return out[..., ph // 2:ph // 2 + hw[0], pw // 2:pw // 2 + hw[1]]

    return h, crop


class EpsOnly(nn.Module):
    """A learn_sigma network (2 C outputs) seen as an eps (or x0) network: the first C channels.

    Works for a diffusers UNet2DModel (``.sample`` output, ``.config``) and a plain network."""

    def __init__(self, unet: nn.Module, channels: int):
        super().__init__()
        self.unet = unet
        self.eps_channels = int(channels)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_") or "unet" not in self.__dict__.get("_modules", {}):
                raise
            return getattr(self._modules["unet"], name)  # config, image_size, num_classes ...

    def forward(self, sample: Tensor, timestep, *args, **kwargs):
        out = self.unet(sample, timestep, *args, **kwargs)
        return getattr(out, "sample", out)[:, : self.eps_channels]


class UNetDenoiser(nn.Module):
    """``model(x_t, t)`` on a network (the contract of ``models.denoiser``).

    unet: a diffusers UNet2DModel, or one of ccdf's faithful ports of other families'
    networks (``formats.ARCHS``: ADM, NCSN++/DDPM++), maybe in ``EpsOnly``.
    time_input: what the network is fed as its timestep
      't1000'      1000 t (models trained by ccdf),
      't999'       999 t (score_sde's continuous VP models),
      'discrete'   K t - 1 for a K-step discrete DDPM checkpoint (an integer on a spaced grid),
      'discrete_rescaled'  (K t - 1) 1000 / K (guided-diffusion's rescale_timesteps),
      'sigma'      sigma(t) for VE score models (diffusers' NCSN++, score_sde continuous VE),
      've_index'   round((1 - t)(num_scales - 1)): score_sde's discrete VE (SMLD) label.
    input_scaling: divide x_t by sqrt(a^2 + b^2) before the network (EDM's c_in; 1 for VP).
    data_range, clip_x0: see ``models.denoiser``; variance: the ancestral sampler's variance
    ('small' posterior / 'large' beta), None for the sampler's default.
    class_label: the label a class-conditional network gets when a call passes none.
    """

    def __init__(self, unet: nn.Module, schedule, prediction: str = "eps",
                 time_input: str = "t1000", input_scaling: bool = True, meta: dict | None = None,
                 data_range=(-1.0, 1.0), clip_x0=None, variance: str | None = None,
                 num_scales: int | None = None, class_label: int | None = None):
        super().__init__()
        if time_input not in TIME_INPUTS:
            raise ValueError(f"time_input must be one of {TIME_INPUTS}, got {time_input!r}")
        if time_input == "ve_index" and not num_scales:
            raise ValueError("time_input 've_index' needs num_scales")
        self.unet = unet
        self.schedule = schedule
        self.prediction = prediction
        self.time_input = time_input
        self.input_scaling = input_scaling
        self.meta = dict(meta or {})
        self.data_range = (float(data_range[0]), float(data_range[1]))
        self.clip_x0 = None if clip_x0 is None else (float(clip_x0[0]), float(clip_x0[1]))
        self.variance = variance
        self.num_scales = None if num_scales is None else int(num_scales)
        self.class_label = class_label

    @property
    def any_size(self) -> bool:
        """True for a fully convolutional prior trained on patches: it takes any H x W."""
        return bool(self.meta.get("any_size"))

    @property
    def complex(self) -> bool:
        """True for a complex-image prior: channels are (real, imaginary), background 0."""
        return bool(self.meta.get("complex"))

    @property
    def image_size(self) -> int | None:
        if self.any_size:
            return None
        s = getattr(self.unet, "image_size", None)
        if s is None:
            s = self.unet.config.sample_size
        return int(s[0] if isinstance(s, (tuple, list)) else s)

    @property
    def channels(self) -> int:
        # a learn_sigma network wrapped in ``EpsOnly`` returns only ``eps_channels``
        v = getattr(self.unet, "eps_channels", None)
        if v is None and "out_channels" in self.unet.__dict__:  # ccdf's ports of other nets
            v = self.unet.out_channels
        return int(v if v is not None else self.unet.config.out_channels)

    @property
    def num_classes(self) -> int | None:
        """Classes of a class-conditional network (None: unconditional)."""
        n = getattr(self.unet, "num_classes", None)
        if n is None and hasattr(self.unet, "config") and "num_class_embeds" in self.unet.config:
            n = self.unet.config.num_class_embeds
        return None if n is None else int(n)

    def timesteps(self, t: Tensor) -> Tensor:
        if self.time_input == "t1000":
            return 1000.0 * t
        if self.time_input == "t999":
            return 999.0 * t
        if self.time_input in ("discrete", "discrete_rescaled"):
            k = len(self.schedule.table)
            s = (k * t - 1).clamp_min(0)
            s = torch.where((s - s.round()).abs() < 1e-6, s.round(), s)  # a spaced grid's steps
            return s * (1000.0 / k) if self.time_input == "discrete_rescaled" else s
        if self.time_input == "ve_index":
            return ((1 - t) * (self.num_scales - 1)).round()
        return (self.schedule.b(t) ** 2 + self.schedule.sigma_min**2).sqrt()

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None,
                class_labels: Tensor | None = None) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).expand(x.shape[0])
        p = next(self.unet.parameters())
        h = x
        if self.input_scaling:
            c = (self.schedule.a(t) ** 2 + self.schedule.b(t) ** 2).rsqrt()
            h = h * c.to(x.dtype).reshape(-1, 1, 1, 1)
        if cond is not None:
            h = torch.cat([h, cond], 1)
        kw = {}
        if self.num_classes is not None:
            if class_labels is None and self.class_label is None:
                raise ValueError(f"this model is class-conditional ({self.num_classes} classes): "
                                 "give a class label (--class-label N)")
            if class_labels is None:
                class_labels = torch.full((x.shape[0],), int(self.class_label))
            kw["class_labels"] = torch.as_tensor(class_labels, device=x.device).reshape(-1) \
                .expand(x.shape[0]).long()
        elif class_labels is not None:
            raise ValueError("this model is not class-conditional: it takes no class label")
        crop = None
        if self.any_size:  # reflect-pad to a multiple of the UNet's total downsampling
            h, crop = pad_to_multiple(h, 2 ** (len(self.unet.config.block_out_channels) - 1))
        out = self.unet(h.to(p.dtype), self.timesteps(t).to(p.dtype), **kw)
        out = getattr(out, "sample", out)
        return (crop(out) if crop else out).to(x.dtype)

    def config_dict(self) -> dict:
        net = getattr(self.unet, "unet", self.unet)  # inside EpsOnly
        arch = getattr(type(net), "arch", None)  # ccdf's ports of other families' networks
        if arch is None:
            body = {"unet": {k: v for k, v in dict(net.config).items() if not k.startswith("_")}}
        else:
            body = {"arch": arch, "net": net.config_dict()}
        extra = {k: v for k, v in (("clip_x0", self.clip_x0 and list(self.clip_x0)),
                                   ("variance", self.variance), ("num_scales", self.num_scales))
                 if v is not None}
        return {
            "format": FORMAT, "version": 1, **body,
            "schedule": self.schedule.to_dict(), "prediction": self.prediction,
            "time_input": self.time_input, "input_scaling": self.input_scaling,
            "image_size": self.image_size, "channels": self.channels,
            "data_range": list(self.data_range), **extra,
            **{k: v for k, v in self.meta.items() if k != "weights_dtype"},
        }
