"""score_sde_pytorch / score-MRI checkpoints (Song et al., ICLR 2021; Chung & Ye 2022).

A checkpoint is ``torch.save({'optimizer', 'model', 'ema', 'step'})``: ``model`` the state
dict of the ``DataParallel``-wrapped network (keys ``module.all_modules.N...``), ``ema`` the
``ExponentialMovingAverage`` state (``decay``, ``num_updates``, ``shadow_params``: one tensor
per trainable parameter, in ``parameters()`` order).  It is read with ``weights_only=True``
(nested dicts, lists, tensors and numbers; no code), and the EMA weights are used unless
``ema=False`` -- score_sde samples and evaluates with them.

The network and the SDE come from the run's config, given as

* score_sde's Python config file (``configs/ve/..._continuous.py``), read by
  :func:`read_config_py` without executing it: the file's ``get_config()`` is interpreted
  statement by statement -- assignments of literals (numbers, strings, tuples, lists, dicts,
  ``-x``, arithmetic), ``ml_collections.ConfigDict()``, attribute chains on local names and
  calls of ``get_config`` / ``get_default_configs`` functions of the file or of the modules it
  imports (``from configs.default_lsun_configs import get_default_configs``, found by walking
  up from the file).  Any other expression (e.g. ``torch.device(...)``) yields an opaque value,
  which is an error only if a field ccdf needs holds one; any other statement is an error.
* or a JSON of its fields, nested like the config: ``{"data": {...}, "model": {...},
  "training": {...}}`` (``config.to_dict()``).

Supported: ``model.name = 'ncsnpp'`` (NCSN++ and DDPM++, ``models.ncsnpp``) with
``training.sde`` 'vesde' (continuous: the network takes sigma and returns the score;
discrete: it takes the label round((1 - t)(N - 1)) of the N descending sigmas) or 'vpsde'
(continuous: 999 t, discrete: the DDPM step of betas linspace(beta_min/N, beta_max/N, N);
either way the output is eps, score = -out / std).  'subvpsde' (its marginal std is
1 - alpha_bar, not a VP schedule) and the other architectures are refused.  Data: in [0, 1]
unless ``data.centered`` (then [-1, 1]); the network maps [0, 1] data to [-1, 1] itself.
"""

from __future__ import annotations

import ast
import json
import operator as _op
from pathlib import Path

import torch
from torch import Tensor

from .. import io
from ..schedules import VESchedule, VPSchedule
from .ncsnpp import NCSNpp
from .unet import UNetDenoiser

__all__ = ["read_config_py", "read_score_sde_config", "score_sde_settings", "load_score_sde"]


class _Opaque:
    """A value the config interpreter does not compute (e.g. ``torch.device(...)``)."""

    def __init__(self, what: str):
        self.what = what

    def __repr__(self):
        return f"<not evaluated: {self.what}>"


class _Node(dict):
    """A ConfigDict: attribute access over a dict."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None

    def __setattr__(self, k, v):
        self[k] = v


_BINOPS = {ast.Add: _op.add, ast.Sub: _op.sub, ast.Mult: _op.mul, ast.Div: _op.truediv,
           ast.Pow: _op.pow, ast.FloorDiv: _op.floordiv, ast.Mod: _op.mod}


class _Interpreter:
    """Runs the assignments of a score_sde config file's ``get_config()`` without exec."""

    def __init__(self, path: Path, depth: int = 0):
        self.path = path
        if depth > 8:
            raise ValueError(f"{path}: config imports nest too deeply")
        try:
            self.tree = ast.parse(path.read_text(), filename=str(path))
        except SyntaxError as e:
            raise ValueError(f"{path}: not valid Python ({e.msg}, line {e.lineno})") from None
        self.depth = depth
        self.functions: dict = {}
        self.modules: dict = {}       # local name -> module path (for `module.func()`)
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef):
                self.functions[node.name] = ("local", node)
            elif isinstance(node, ast.ImportFrom):
                for a in node.names:
                    self.functions[a.asname or a.name] = ("import", node.module, a.name)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    self.modules[a.asname or a.name] = a.name

    def _find_module(self, dotted: str | None) -> Path | None:
        if not dotted:
            return None
        rel = Path(*dotted.split(".")).with_suffix(".py")
        for d in [self.path.parent, *self.path.parents]:
            if (d / rel).is_file():
                return d / rel
        return None

    def call(self, name: str, line: int):
        f = self.functions.get(name)
        if f is None:
            return _Opaque(f"{name}() at line {line}")
        if f[0] == "import":
            mod = self._find_module(f[1])
            if mod is None:
                raise ValueError(f"{self.path}: line {line}: cannot find module {f[1]!r} (looked "
                                 f"for {Path(*f[1].split('.'))}.py above the file)")
            return _Interpreter(mod, self.depth + 1).call(f[2], line)
        node = f[1]
        if node.args.args:
            raise ValueError(f"{self.path}: {name}() takes arguments, which ccdf does not "
                             "evaluate; give the config as JSON")
        env: dict = {}
        for st in node.body:
            if isinstance(st, ast.Return):
                return self.eval(st.value, env)
            self.run(st, env)
        return None

    def run(self, st, env: dict) -> None:
        if isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant):
            return  # a docstring
        if isinstance(st, (ast.Import, ast.ImportFrom, ast.Pass)):
            return
        if isinstance(st, ast.Assign):
            v = self.eval(st.value, env)
            for t in st.targets:
                self.assign(t, v, env)
            return
        if isinstance(st, ast.AugAssign):
            cur = self.eval(st.target, env)
            val = self.eval(st.value, env)
            fn = _BINOPS.get(type(st.op))
            new = fn(cur, val) if fn and not isinstance(cur, _Opaque) and \
                not isinstance(val, _Opaque) else _Opaque(f"line {st.lineno}")
            self.assign(st.target, new, env)
            return
        raise ValueError(f"{self.path}: line {st.lineno}: ccdf reads config files without "
                         f"running them and does not follow a {type(st).__name__} statement; "
                         "give the config as JSON")

    def assign(self, target, v, env: dict) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = v
        elif isinstance(target, ast.Attribute):
            obj = self.eval(target.value, env)
            if isinstance(obj, _Node):
                obj[target.attr] = v
            elif not isinstance(obj, _Opaque):
                raise ValueError(f"{self.path}: line {target.lineno}: cannot set "
                                 f"{target.attr} on a {type(obj).__name__}")
        elif isinstance(target, ast.Subscript):
            obj = self.eval(target.value, env)
            key = self.eval(target.slice, env)
            if isinstance(obj, (_Node, dict)) and not isinstance(key, _Opaque):
                obj[key] = v
        else:
            raise ValueError(f"{self.path}: line {target.lineno}: unsupported assignment")

    def eval(self, e, env: dict):
        if isinstance(e, ast.Constant):
            return e.value
        if isinstance(e, (ast.Tuple, ast.List)):
            vals = [self.eval(x, env) for x in e.elts]
            return tuple(vals) if isinstance(e, ast.Tuple) else vals
        if isinstance(e, ast.Dict):
            return {self.eval(k, env): self.eval(v, env) for k, v in zip(e.keys, e.values)}
        if isinstance(e, ast.Name):
            if e.id in env:
                return env[e.id]
            return {"True": True, "False": False, "None": None}.get(e.id, _Opaque(e.id))
        if isinstance(e, ast.Attribute):
            obj = self.eval(e.value, env)
            if isinstance(obj, _Node):
                if e.attr not in obj:
                    raise ValueError(f"{self.path}: line {e.lineno}: config has no field "
                                     f"{e.attr!r} yet")
                return obj[e.attr]
            return _Opaque(ast.unparse(e))
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, (ast.USub, ast.UAdd)):
            v = self.eval(e.operand, env)
            if isinstance(v, (int, float)):
                return -v if isinstance(e.op, ast.USub) else v
            return _Opaque(ast.unparse(e))
        if isinstance(e, ast.BinOp) and type(e.op) in _BINOPS:
            a, b = self.eval(e.left, env), self.eval(e.right, env)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                return _BINOPS[type(e.op)](a, b)
            return _Opaque(ast.unparse(e))
        if isinstance(e, ast.Call) and not e.args and not e.keywords:
            fn = e.func
            if isinstance(fn, ast.Attribute) and fn.attr == "ConfigDict":
                return _Node()
            if isinstance(fn, ast.Name):
                if fn.id == "ConfigDict":
                    return _Node()
                return self.call(fn.id, e.lineno)
        return _Opaque(ast.unparse(e))


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_plain(x) for x in v)
    return v


def read_config_py(path) -> dict:
    """score_sde's Python config file -> nested dict of its fields (``get_config()``), without
    executing it (see the module docstring for what is followed)."""
    path = Path(path)
    it = _Interpreter(path)
    if "get_config" not in it.functions:
        raise ValueError(f"{path}: no get_config() function (a score_sde config file has one)")
    cfg = it.call("get_config", 0)
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: get_config() does not return a config")
    return _plain(cfg)


def read_score_sde_config(sources) -> tuple[dict, str]:
    """(nested config dict, source name) from the first source: a .py or .json path or a dict;
    later sources update it section by section."""
    cfg: dict = {}
    names = []
    for src in sources:
        if isinstance(src, dict):
            d, name = src, "settings"
        else:
            p = Path(str(src))
            if not p.is_file():
                raise FileNotFoundError(f"model config not found: {p}")
            if p.suffix == ".py":
                d = read_config_py(p)
            elif p.suffix == ".json":
                try:
                    d = io.read_json(p)
                except json.JSONDecodeError as e:
                    raise ValueError(f"cannot parse {p} as JSON: {e}") from None
            else:
                raise ValueError(f"{p}: a score_sde config is a .py config file or a .json of "
                                 "its fields")
            name = p.name
        if not isinstance(d, dict):
            raise ValueError(f"{name} does not hold a mapping of config sections")
        for sec, v in d.items():
            if isinstance(v, dict) and isinstance(cfg.get(sec), dict):
                cfg[sec].update(v)
            else:
                cfg[sec] = v
        names.append(name)
    return cfg, ", ".join(names)


_NET_FIELDS = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "resamp_with_conv",
               "conditional", "fir", "fir_kernel", "skip_rescale", "resblock_type", "progressive",
               "progressive_input", "progressive_combine", "embedding_type", "nonlinearity",
               "scale_by_sigma", "num_scales", "sigma_min", "sigma_max")


def score_sde_settings(cfg: dict, name: str = "config") -> tuple[dict, dict, list]:
    """(NCSNpp kwargs, UNetDenoiser kwargs, assumed notes) from a score_sde config dict."""
    def opaque(v) -> bool:
        return isinstance(v, _Opaque) or (isinstance(v, (list, tuple)) and any(map(opaque, v)))

    def get(sec, key):
        section = cfg.get(sec) or {}
        if key not in section:
            raise ValueError(f"{name}: config.{sec}.{key} is missing")
        if opaque(section[key]):
            raise ValueError(f"{name}: config.{sec}.{key} is set by an expression ccdf does not "
                             "evaluate (give a literal, or the config as JSON)")
        return section[key]

    mname = str(get("model", "name")).lower()
    if mname != "ncsnpp":
        raise ValueError(f"{name}: model.name {mname!r} is not supported (ncsnpp: NCSN++ and "
                         "DDPM++)")
    norm = str((cfg.get("model") or {}).get("normalization", "GroupNorm"))
    if norm.lower() != "groupnorm":
        raise ValueError(f"{name}: model.normalization {norm!r} is not supported (GroupNorm)")
    for key, want in (("attention_type", "ddpm"), ("conv_size", 3)):
        v = (cfg.get("model") or {}).get(key, want)
        if v != want:
            raise ValueError(f"{name}: model.{key} {v!r} is not supported ({want!r})")
    net = {k: get("model", k) for k in _NET_FIELDS}
    net.update(image_size=get("data", "image_size"), num_channels=get("data", "num_channels"),
               centered=get("data", "centered"))
    sde = str(get("training", "sde")).lower()
    continuous = bool(get("training", "continuous"))
    n = int(net["num_scales"])
    assumed = [f"score_sde {sde} ({'continuous' if continuous else 'discrete'} time)"]
    if sde == "vesde":
        den = dict(schedule=VESchedule(float(net["sigma_min"]), float(net["sigma_max"])),
                   prediction="score", time_input="sigma" if continuous else "ve_index",
                   num_scales=None if continuous else n)
    elif sde == "vpsde":
        b0, b1 = float(get("model", "beta_min")), float(get("model", "beta_max"))
        if continuous:
            sched = VPSchedule(beta="linear", beta_min=b0, beta_max=b1)
        else:
            betas = torch.linspace(b0 / n, b1 / n, n, dtype=torch.float64)
            sched = VPSchedule(beta="table", table=tuple(torch.cumprod(1 - betas, 0).tolist()),
                               spacing="trailing")
            assumed.append("grid on training steps with 'trailing' spacing")
        den = dict(schedule=sched, prediction="eps",
                   time_input="t999" if continuous else "discrete")
    elif sde == "subvpsde":
        raise ValueError(f"{name}: training.sde 'subvpsde' is not supported (its marginal "
                         "std 1 - alpha_bar is not a VP schedule)")
    else:
        raise ValueError(f"{name}: training.sde {sde!r} is not supported (vesde, vpsde)")
    den["data_range"] = (-1.0, 1.0) if net["centered"] else (0.0, 1.0)
    return net, den, assumed


def _net_of(ckpt: dict, key: str, path: Path) -> dict:
    sd = ckpt.get(key)
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError(f"{path}: checkpoint[{key!r}] is not a state dict of tensors")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


def load_score_sde(path, config=(), checkpoint: dict | None = None, ema: bool = True):
    """A score_sde / score-MRI ``.pth`` checkpoint as a ``UNetDenoiser`` (EMA weights unless
    ``ema=False``); ``config``: its config file (.py or .json; default: a sidecar
    ``<stem>.py`` / ``<stem>.json`` beside the checkpoint)."""
    path = Path(path)
    ckpt = io.read_checkpoint(path) if checkpoint is None else checkpoint
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path}: not a score_sde checkpoint (no 'model' entry)")
    sources = list(config) or [p for p in (path.with_suffix(".py"), path.with_suffix(".json"))
                               if p.is_file()]
    if not sources:
        raise ValueError(f"score_sde checkpoint {path.name}: its config (the network and the "
                         "SDE) is not in the checkpoint; pass --model-config CONFIG.py (score_sde's "
                         f"config file) or a JSON of its fields, or put {path.stem}.py beside it")
    cfg, cname = read_score_sde_config(sources)
    net_kw, den_kw, assumed = score_sde_settings(cfg, cname)
    net = NCSNpp(**net_kw)
    sd = _net_of(ckpt, "model", path)
    want = net.state_dict()
    sig = sd.pop("sigmas", None)
    missing = sorted(set(want) - set(sd) - {"sigmas"})
    unexpected = sorted(set(sd) - set(want))
    wrong = sorted(k for k in set(sd) & set(want) if sd[k].shape != want[k].shape)
    if missing or unexpected or wrong:
        def show(xs):
            return ", ".join(xs[:6]) + (f" ... (+{len(xs) - 6})" if len(xs) > 6 else "")
        raise ValueError(f"{path.name} does not match the NCSN++ of {cname}: missing "
                         f"[{show(missing)}], unexpected [{show(unexpected)}], shapes "
                         f"[{show(wrong)}]")
    if sig is not None and sig.shape == want["sigmas"].shape:
        sd["sigmas"] = sig
    else:
        sd["sigmas"] = want["sigmas"]
        if net_kw["embedding_type"] == "positional" and net_kw["scale_by_sigma"]:
            raise ValueError(f"{path.name}: its sigmas ({None if sig is None else len(sig)}) do "
                             f"not match num_scales = {net_kw['num_scales']} of {cname}")
        if sig is not None:
            assumed.append(f"the checkpoint's {len(sig)} sigmas are unused (Fourier features "
                           f"take sigma itself); num_scales = {net_kw['num_scales']}")
    net.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    which = "model"
    if ema:
        shadow = (ckpt.get("ema") or {}).get("shadow_params") if isinstance(ckpt.get("ema"),
                                                                           dict) else None
        if shadow is None:
            assumed.append("no EMA in the checkpoint: the raw model weights are used")
        else:
            params = [p for p in net.parameters() if p.requires_grad]
            if len(shadow) != len(params) or any(
                    not isinstance(s, Tensor) or s.shape != p.shape for s, p in zip(shadow, params)):
                raise ValueError(f"{path.name}: its EMA holds {len(shadow)} tensors that do not "
                                 f"match the network's {len(params)} trainable parameters")
            with torch.no_grad():
                for s, p in zip(shadow, params):
                    p.copy_(s.float())
            which = "ema"
    step = ckpt.get("step")
    meta = {"trained_on": f"score_sde checkpoint {path.name}"
                          + (f" (step {int(step)})" if isinstance(step, (int, Tensor)) else ""),
            "family": "score_sde / score-MRI",
            "architecture": ("NCSN++" if net_kw["fir"] or net_kw["progressive_input"] != "none"
                             or net_kw["progressive"] != "none" else "DDPM++")
                            + f" (score_sde ncsnpp, {net_kw['embedding_type']} embedding)",
            "assumed": assumed + [f"weights: {which}"], "settings_from": [cname],
            "extra": {"score_sde_weights": which}}
    return UNetDenoiser(net, input_scaling=False, meta=meta, **den_kw).eval()
