"""``solve(cfg)``: one run of ``ccdf solve`` over a file or a folder (see the package docstring)."""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from .. import autot0, init, io
from ..assets import TASK_DEFAULTS, parse_t0
from ..ood import OODCheck
from ..operators import make_operator
from . import manifest
from .batch import Sampling, solve_batch
from .config import (
    DeviceModel,
    SolveConfig,
    check_config,
    read_class_labels,
    resolve_init,
    resolve_model,
    settings,
)
from .dist import Ranks
from .readers import Reader, Source, check_names, list_inputs
from .writers import magnitude, write_source


class OutputError(OSError):
    """Outputs cannot be written (disk full, folder gone): the run stops, finished work stays."""


@dataclass
class SolveResult:
    images: list | None      # metrics.json's per-item records (None on ranks other than 0)
    summary: dict | None     # metrics.json's summary (None on ranks other than 0)
    out: Path
    n_failed: int            # inputs that failed in this run, over all ranks
    rank: int = 0


def solve(cfg: SolveConfig, progress: bool = False, log=None) -> SolveResult:
    """Run ``ccdf solve``.  ``log(str)`` receives notes: resumed inputs, each failed input
    with its reason, the auto t0 rule.  Raises (ValueError / OSError, one line) for bad
    settings, model or out folder, and for a single input file that cannot be solved."""
    log = log or (lambda msg: None)
    check_config(cfg)
    task = _task(cfg)
    inputs = list_inputs(Path(cfg.input))
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise io.InputError(f"--out {out} exists and is not a folder")
    if Path(cfg.input).is_dir() and out.exists() and out.resolve() == Path(cfg.input).resolve():
        raise io.InputError("--out must not be the input folder (outputs would be read as "
                            "inputs next time)")
    check_names(inputs, out)
    ranks = Ranks(cfg.device)
    model, model_name = resolve_model(cfg.model, task["task"], cfg.model_config, cfg.class_label)
    model = model.to(ranks.device)
    net = resolve_init(cfg.init, task, model.image_size, cfg.cs_lambda)
    if net is not None and hasattr(net, "to"):  # (not the compressed-sensing start)
        net = net.to(ranks.device)
    size, params = model.image_size, {k: v for k, v in task.items() if k != "task"}
    if getattr(model, "complex", False):
        params["complex_image"] = True
    # checks the task; a prior of any size gets its operators per input size from the Reader
    op = make_operator(task["task"], (1 if getattr(model, "complex", False) else model.channels,
                                      size or 64, size or 64), **params)
    op = op if size else None
    if cfg.compile or cfg.half:
        model = DeviceModel(model, ranks.device, cfg.compile, cfg.half)
    reader = Reader(model, op, ranks.device, task=cfg.task, out=out, seed=cfg.seed,
                    input_kind=cfg.input_kind, sigma_y=cfg.sigma_y, axis=cfg.axis,
                    slices=cfg.slices, coil_maps=cfg.coil_maps)
    work = _Work(cfg, model, net, reader, out, log)
    cfg = work.cfg  # with N resolved
    # a single input file is read and checked before anything is written, like the flags
    first = work.prepare(inputs[0]) if Path(cfg.input).is_file() else None
    ranks.start()
    try:
        return _run(cfg, task, model_name, inputs, first, work, ranks, progress, log)
    finally:
        ranks.close()


def _run(cfg, task, model_name, inputs, first, work, ranks, progress, log) -> SolveResult:
    """Rank 0 opens --out (lock, settings, what is done); every rank solves its shard; rank 0
    merges the manifest parts and writes metrics.json."""
    out, names = Path(cfg.out), [p.name for p in inputs]
    lock, state = None, {"error": None, "done": []}
    if ranks.rank == 0:
        try:
            lock, entries = manifest.open_out(out, settings(cfg, task), cfg.overwrite)
            state["done"] = sorted(manifest.done(out, entries) & set(names))
        except (ValueError, OSError) as e:
            state["error"] = str(e)
    state = ranks.broadcast(state)
    if state["error"]:
        raise io.InputError(state["error"])
    try:
        done = set(state["done"])
        if ranks.rank == 0 and done:
            log(f"resuming: {len(done)} of {len(inputs)} input(s) already done in {out}")
        todo = [p for p in ranks.shard(inputs) if p.name not in done]
        part = manifest.part(out, ranks.rank, ranks.size)
        statuses = ranks.gather(work.run(todo, first, part, progress and ranks.rank == 0))
        error = next((s["error"] for s in statuses if s["error"]), None)
        n_failed = sum(s["failed"] for s in statuses)
        images = summary = None
        if ranks.rank == 0 and error is None:
            try:
                entries = manifest.merge(out, names)
                m = manifest.build_metrics(entries, _report(cfg, task, model_name, work.ood))
                io.write_json(out / manifest.METRICS, m)
                images, summary = m["images"], m["summary"]
            except OSError as e:
                error = f"cannot write the manifest and metrics to {out}: {e.strerror or e}"
        ranks.barrier()
    finally:
        if lock is not None:
            manifest.close_out(out, lock)
    if error:
        raise OutputError(error)
    if summary is not None and summary.get("t0_reason"):
        log(f"auto t0: {summary['t0_reason']}")
    if summary is not None and summary.get("n_ood"):
        log(f"ccdf solve: warning: {summary['n_ood']} of {summary['n_images']} image(s) look "
            f"unlike the data the prior was trained on ({summary['ood']['trained_on']}); their "
            "reconstructions may carry the prior's textures (\"ood\": true in metrics.json)")
    return SolveResult(images, summary, out, n_failed, ranks.rank)


class _Work:
    """One rank's pass over its inputs: read -> initial estimate and t0 -> solve in batches of
    consecutive items with the same t0 -> write the outputs and the manifest line, input by
    input.  Only the inputs of the current batch are in memory."""

    def __init__(self, cfg, model, net, reader, out: Path, log):
        self.model, self.net, self.reader, self.out, self.log = model, net, reader, out, log
        self.auto = cfg.t0 == "auto"
        self.cache: dict = {}  # auto t0: the prior-sample error estimate, once per run
        cs = isinstance(net, init.CompressedSensing)
        self.calibration = autot0.find_calibration(model, cfg.task, autot0.start_key(net)) \
            if self.auto or cs else None
        if cfg.steps is None:  # --t0 auto runs on the grid its t0 was calibrated on
            cfg = replace(cfg, steps=autot0.calibrated_steps(self.calibration if self.auto
                                                             else None))
        self.cfg = cfg
        self.sampling = Sampling(steps=cfg.steps, sampler=cfg.sampler, samples=cfg.samples,
                                 sigma_y=cfg.sigma_y, consistency=cfg.consistency,
                                 phase=cfg.phase)
        lam = (self.calibration or {}).get("lambda")
        if cs and net.lam is None and lam is not None:
            self.net = replace(net, lam=float(lam))  # the calibrated lambda, at any t0
        self.n_ok = self.n_failed = self.n_warned = 0
        self.writer = self.bar = None
        self.labels = read_class_labels(cfg.class_label)[1]  # per input, or None
        self.ood = OODCheck(model)

    def prepare(self, path: Path) -> Source:
        """Read an input; give each of its items the initial estimate and t0 (raises)."""
        src = self.reader.read(path)
        for it in src.items:
            if self.labels is not None:
                keys = (it.name, src.path.name, src.stem)
                k = next((self.labels[n] for n in keys if n in self.labels), None)
                if k is None:
                    raise io.InputError(f"{it.name}: no class label for it in --class-label "
                                        f"(looked for {', '.join(dict.fromkeys(keys))})")
                it.class_label = k
            elif getattr(self.model, "class_label", None) is not None:
                it.class_label = int(self.model.class_label)
            if self.net is not None and not hasattr(self.net, "restore"):
                fits = self.net.fits(it.op)
                if fits is not True:
                    raise io.InputError(f"{it.name}: {fits}; use --init classic")
            it.x0_hat = init.estimate(self.net, it.op, it.y, self.cfg.sigma_y)
            if self.auto:
                t0, reason = autot0.choose_t0(
                    self.model, it.op, it.y, it.x0_hat, self.cfg.steps, self.cfg.sigma_y,
                    None if self.net is None else self.net.meta, cache=self.cache,
                    calibration=self.calibration)
                it.t0, it.reason = float(t0), str(reason)
            else:
                it.t0 = parse_t0(self.cfg.t0, auto=False)
        return src

    def run(self, paths: list, first: Source | None, part: Path, progress: bool) -> dict:
        """Solve ``paths``, appending to the manifest file ``part``.  Returns {"error": a
        one-line message when outputs could not be written (the run stopped), "ok", "failed"}."""
        self.writer = manifest.ManifestWriter(part)
        if progress:
            self.bar = tqdm(total=len(paths), desc="solve", unit="file", dynamic_ncols=True,
                            file=sys.stderr, disable=None, leave=False)  # no bar without a TTY
        pending: list = []   # items of the next batch
        opened: list = []    # sources read and not yet written, in order
        error = None
        try:
            for path in paths:
                try:
                    src = first if first is not None and first.path == path else self.prepare(path)
                except Exception as e:  # noqa: BLE001 -- a bad input fails alone
                    self._failed(path.name, _reason(e))
                    continue
                opened.append(src)
                for it in src.items:
                    if pending and (len(pending) == self.cfg.batch_size or pending[0].t0 != it.t0):
                        self._solve(pending, opened)
                        pending = []
                    pending.append(it)
            self._solve(pending, opened)
        except OutputError as e:
            error = str(e)
        finally:
            self.writer.close()
            if self.bar is not None:
                self.bar.close()
        return {"error": error, "ok": self.n_ok, "failed": self.n_failed}

    def _solve(self, items: list, opened: list) -> None:
        """Solve a batch, then write every source whose items are all solved (or failed)."""
        items = [it for it in items if it.source.failed is None]
        if items:
            for it, e in zip(items, solve_batch(self.model, items, self.sampling, self._step)):
                if e is not None and it.source.failed is None:
                    it.source.failed = (f"{it.name}: " if it.source.multi else "") + _reason(e)
            self._score([it for it in items if it.result is not None])
        while opened and (opened[0].failed is not None or
                          all(it.result is not None for it in opened[0].items)):
            self._write(opened.pop(0))

    def _score(self, items: list) -> None:
        """The out-of-distribution score of each solved item (``ood``; one network call)."""
        if not items or not self.ood.active:
            return
        try:
            scores = self.ood.scores(torch.cat([magnitude(it.result.x) for it in items]))
        except Exception:  # noqa: BLE001 -- a check that cannot run never fails the input
            return
        for it, sc in zip(items, scores):
            it.ood = sc

    def _write(self, src: Source) -> None:
        if src.failed is None:
            try:
                outputs = write_source(self.out, src, self.cfg.samples, self.cfg.complex_output)
                entry = manifest.ok_entry(src, outputs, self.cfg.seed, self.auto, self.ood)
            except OSError as e:
                if e.errno not in (errno.ENAMETOOLONG, errno.EILSEQ):
                    raise OutputError(self._cannot_write(src.path.name, e)) from None
                src.failed = f"cannot write its outputs: {e.strerror}; rename it"  # this name only
            except Exception as e:  # noqa: BLE001 -- e.g. a result the output format refuses
                src.failed = _reason(e)
        if src.failed is not None:
            self._failed(src.path.name, src.failed)
            return
        self._append(src.path.name, entry)
        self.n_ok += 1
        self._warn_ood(src)
        if self.bar is not None:
            self.bar.update(1)

    def _warn_ood(self, src: Source) -> None:
        """One warning line per flagged input, for the first few (the end says how many)."""
        bad = [it for it in src.items if self.ood.flagged(it.ood)]
        if bad and self.n_warned < 5:
            self.n_warned += 1
            worst = max(bad, key=lambda it: it.ood)
            self.log(f"ccdf solve: warning: {io.shown(worst.name)} looks unlike the prior's "
                     f"training data ({self.ood.trained_on}): its denoising error is "
                     f"{worst.ood:.1f}x the reference's ({self.ood.source}); the result may "
                     "carry the prior's textures")

    def _failed(self, name: str, reason: str) -> None:
        self.log(f"ccdf solve: {io.shown(name)} failed: {reason}")
        self._append(name, manifest.failed_entry(name, reason))
        self.n_failed += 1
        if self.bar is not None:
            self.bar.update(1)

    def _append(self, name: str, entry: dict) -> None:
        try:
            self.writer.append(entry)
        except OSError as e:
            raise OutputError(self._cannot_write(name, e)) from None

    def _cannot_write(self, name: str, e: OSError) -> str:
        return (f"cannot write the outputs of {name} to {self.out}: {e.strerror or e}; the "
                f"{self.n_ok} input(s) finished before are kept (rerun the same command to "
                "resume)")

    def _step(self, info: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"step {info['n_prime'] - info['i'] + 1}/{info['n_prime']}",
                                     refresh=False)
            self.bar.refresh()


def _reason(e: BaseException) -> str:
    """One line saying why an input failed."""
    msg = io.one_line(e)
    if isinstance(e, FloatingPointError):
        return f"sampling diverged ({msg})"
    return msg if isinstance(e, ValueError) else f"{type(e).__name__}: {msg}"


def _task(cfg: SolveConfig) -> dict:
    """The operator's keyword arguments, with inpainting's default mask."""
    task = dict(cfg.task)
    if task["task"] == "inpaint" and task.get("mask") is None:
        if cfg.input_kind == "measurement":
            raise ValueError("--input-kind measurement for inpainting needs --mask (the holes: "
                             "box, random:FRACTION or a mask file)")
        task["mask"] = TASK_DEFAULTS["inpaint"]["mask"]
    return task


def _report(cfg: SolveConfig, task: dict, model_name: str, ood=None) -> dict:
    """The settings reported in metrics.json's summary (and how inputs were checked against
    the prior's training data, ``ccdf.ood``)."""
    check = {} if ood is None else {"ood": {
        "trained_on": ood.trained_on, "reference": ood.source, "reference_q95": ood.q95,
        "t_ref": ood.t, "factor": ood.factor}}
    return {**check, "t0": parse_t0(cfg.t0), "steps": None if cfg.steps is None else int(cfg.steps),
            "sampler": cfg.sampler, "model": model_name, "init": cfg.init, "task": task,
            "samples": cfg.samples, "sigma_y": cfg.sigma_y, "seed": cfg.seed,
            "consistency": cfg.consistency,
            **({"phase": cfg.phase} if task.get("task") == "mri" else {}),
            "batch_size": cfg.batch_size, "input_kind": cfg.input_kind or "clean"}
