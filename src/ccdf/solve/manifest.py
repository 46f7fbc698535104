"""The state of an output folder across runs: lock, settings, manifest and metrics.

Files in ``--out`` besides the outputs:

* ``.ccdf.lock``: "pid PID on HOST", held with ``flock`` by the one process that owns the
  run (rank 0).  A second run on the same folder is refused; the kernel drops the lock of a
  process that died, so a stale lock file is simply taken over.
* ``settings.json``: what makes the results (``config.settings``).  Resuming with other
  settings is refused unless ``--overwrite``.
* ``manifest.jsonl``: one JSON line per input, ``{"input", "status": "ok" | "failed",
  "outputs", "seed", "t0", "nfe", "psnr" (when known), "images": [per item], "finished"}``
  or ``{"input", "status": "failed", "reason", "finished"}``.  During a torchrun run each
  rank R appends to ``manifest.rank{R}.jsonl``; rank 0 merges them at the end.
* ``metrics.json``: rebuilt from the manifest at the end of every run, so a resumed run
  reports every input.

Commit order per input: its outputs (each written atomically), then its manifest line (one
``O_APPEND`` write).  An input is done when its latest line (by ``finished``) says "ok" and
its outputs exist; anything else is redone.  A torn last line (a kill mid-write) is skipped
when read and cut off before the next append.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from pathlib import Path

import numpy as np

from .. import io

LOCK, SETTINGS, MANIFEST, METRICS = ".ccdf.lock", "settings.json", "manifest.jsonl", "metrics.json"
# io.atomic_write's temporaries (.ccdf-XXXXXXXX.tmp): a killed run's are removed, nothing else
_TEMPORARY = re.compile(re.escape(io.TMP_PREFIX) + r"[a-z0-9_]{8}" + re.escape(io.TMP_SUFFIX))


# ----------------------------------------------------------------------------- the folder
def open_out(out: Path, settings: dict, overwrite: bool) -> tuple[int, dict]:
    """Rank 0, before any work: create ``out``, take its lock, check and record the settings,
    remove the temporaries a killed run of ccdf left (``.ccdf-XXXXXXXX.tmp``; no other file
    is touched).  Returns (lock fd, the latest entry per input)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = _lock(out)
    except OSError as e:
        raise io.InputError(f"cannot write to --out {out}: {e.strerror or e}") from None
    try:
        _settings(out, settings, overwrite)
        for p in out.iterdir():
            if _TEMPORARY.fullmatch(p.name) and p.is_file():
                p.unlink()
        return fd, ({} if overwrite else read_entries(out))
    except BaseException as e:
        close_out(out, fd)
        if isinstance(e, OSError):
            raise io.InputError(f"cannot write to --out {out}: {e.strerror or e}") from None
        raise


def close_out(out: Path, fd: int) -> None:
    """Release the lock taken by ``open_out`` (the lock file is removed)."""
    with contextlib.suppress(OSError):
        os.unlink(out / LOCK)
    os.close(fd)


def _lock(out: Path) -> int:
    path = out / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "pid unknown"
            os.close(fd)
            raise io.InputError(f"another ccdf solve ({holder}) is writing to {out}; wait for "
                                "it to finish or choose another --out") from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file between our open and flock: try again
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    return fd


def _settings(out: Path, settings: dict, overwrite: bool) -> None:
    path = out / SETTINGS
    settings = json.loads(json.dumps(settings))                  # as it reads back
    if path.exists() and not overwrite:
        try:
            old = io.read_json(path)["settings"]
        except (ValueError, KeyError, TypeError):
            raise io.InputError(f"{path} is unreadable; use --overwrite to redo the run") from None
        diff = [f"{k}: {old.get(k)!r} there, {settings.get(k)!r} now"
                for k in dict.fromkeys([*old, *settings]) if old.get(k) != settings.get(k)]
        if diff:
            raise io.InputError(f"--out {out} holds a run with other settings ({'; '.join(diff)})"
                                "; rerun with its settings to resume, add --overwrite to redo "
                                "it, or choose another --out")
    if overwrite:
        for p in [out / MANIFEST, out / METRICS, *out.glob("manifest.rank*.jsonl")]:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    io.write_json(path, {"format": "ccdf-solve", "version": 1, "settings": settings})


# ----------------------------------------------------------------------------- entries
def read_entries(out: Path) -> dict:
    """{input name: its latest entry} from manifest.jsonl and any rank parts (unparsable
    lines, such as a torn last line, are skipped)."""
    latest: dict = {}
    for path in [out / MANIFEST, *sorted(out.glob("manifest.rank*.jsonl"))]:
        if not path.exists():
            continue
        for e in io.read_jsonl(path):
            try:
                name, when = e["input"], float(e["finished"])
            except (ValueError, KeyError, TypeError):
                continue
            if name not in latest or when >= latest[name]["finished"]:
                latest[name] = e
    return latest


def part(out: Path, rank: int, world: int) -> Path:
    """The manifest file a rank appends to: manifest.jsonl itself for a single process."""
    return out / (MANIFEST if world == 1 else f"manifest.rank{rank}.jsonl")


def done(out: Path, entries: dict) -> set:
    """Inputs whose latest entry is ok and whose outputs all exist."""
    return {n for n, e in entries.items() if e.get("status") == "ok"
            and all((out / o).exists() for o in e.get("outputs", []))}


#: appends entries to one manifest file, one ``O_APPEND`` write per line; a torn last line
#: (a kill mid-write) is cut off when it is opened
ManifestWriter = io.JsonlWriter


def merge(out: Path, names: list) -> list:
    """Rank 0 at the end: rewrite manifest.jsonl with the latest entry of each current input,
    in input order, and remove the rank parts.  Returns the entries."""
    latest = read_entries(out)
    entries = [latest[n] for n in names if n in latest]
    io.write_jsonl(out / MANIFEST, entries)
    for p in out.glob("manifest.rank*.jsonl"):
        p.unlink()
    return entries


def ok_entry(src, outputs: list, seed: int, auto: bool, ood=None) -> dict:
    """The manifest line of a solved and written Source (``ood``: the run's ``OODCheck``)."""
    from .. import metrics
    from .config import item_seed
    from .writers import magnitude

    images = []
    for it in src.items:
        rec = {"name": it.name, "seed": item_seed(seed, it.name)}
        if it.x is not None:
            xr, x0, ref = magnitude(it.result.x), magnitude(it.x0_hat), magnitude(it.x)
            rec.update(psnr=float(metrics.psnr(xr, ref)), ssim=float(metrics.ssim(xr, ref)),
                       init_psnr=float(metrics.psnr(x0, ref)))
        rec.update(nfe=int(it.result.nfe), seconds=it.seconds, t0=it.t0)
        if it.class_label is not None:
            rec["class_label"] = it.class_label
        if auto:
            rec["t0_reason"] = it.reason
        if it.ood is not None:
            rec.update(ood_score=round(it.ood, 4), ood=bool(ood is not None and ood.flagged(it.ood)))
        images.append(rec)

    def one_or_all(k):
        v = [i[k] for i in images]
        return v[0] if len(set(v)) == 1 else v

    e = {"input": src.path.name, "status": "ok", "outputs": outputs,
         "seed": one_or_all("seed"), "t0": one_or_all("t0"), "nfe": one_or_all("nfe")}
    psnrs = [i["psnr"] for i in images if "psnr" in i]
    if psnrs:
        e["psnr"] = float(np.mean(psnrs))
    if src.kind in ("kspace", "fastmri"):
        e["kspace"] = {k: v for k, v in src.meta.items()
                       if k in ("scale", "mask", "real_image", "n_slices", "coils", "coil_maps",
                                "calibration_width", "crop", "target_kind")}
    if "fastmri_metrics" in src.meta:  # fastMRI's NMSE / PSNR / SSIM of the volume
        e["fastmri"] = src.meta["fastmri_metrics"]
    return {**e, "images": images, "finished": time.time()}


def failed_entry(name: str, reason: str) -> dict:
    return {"input": name, "status": "failed", "reason": reason, "finished": time.time()}


# ----------------------------------------------------------------------------- metrics.json
def build_metrics(entries: list, run: dict) -> dict:
    """metrics.json from manifest entries: {"images": [per item], "summary": {...}}; ``run``
    holds the run's settings to report (t0, steps, sampler, model ...)."""
    ok = [e for e in entries if e["status"] == "ok"]
    images = [i for e in ok for i in e["images"]]

    def mean(k):
        v = [i[k] for i in images if k in i]
        return float(np.mean(v)) if v else None

    nfes = [i["nfe"] for i in images]
    summary = {
        "psnr_mean": mean("psnr"), "ssim_mean": mean("ssim"),
        "nfe": (nfes[0] if len(set(nfes)) == 1 else float(np.mean(nfes))) if nfes else None,
        "t0": run["t0"], "steps": run["steps"], "seconds_per_image": mean("seconds"),
        "init_psnr_mean": mean("init_psnr"), "n_images": len(images),
        "n_with_reference": sum("psnr" in i for i in images), **run,
        "n_inputs": len(entries), "n_failed": len(entries) - len(ok),
        "failed": [{"input": e["input"], "reason": e["reason"]} for e in entries
                   if e["status"] != "ok"],
    }
    if run["t0"] == "auto" and images:
        summary["t0_mean"] = mean("t0")
        summary["t0_reason"] = images[0]["t0_reason"]
    scored = [i for i in images if "ood_score" in i]
    if scored:
        summary["n_ood"] = sum(bool(i["ood"]) for i in scored)
        summary["ood"] = {**run.get("ood", {}), "n_scored": len(scored)}
    kspace = {e["input"]: e["kspace"] for e in ok if "kspace" in e}
    if kspace:
        summary["kspace"] = kspace
    vols = [e["fastmri"] for e in ok if "fastmri" in e]
    if vols:  # fastMRI's figures: the mean over volumes (``metrics.fastmri_mean``)
        from ..metrics import fastmri_mean

        summary["fastmri"] = {"n_volumes": len(vols), **fastmri_mean(vols)}
    return {"images": images, "summary": summary}
