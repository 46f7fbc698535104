"""Solving items together: one network call per reverse step for a batch of items.

With ``batch_size`` B > 1, B items run together: each in its own thread with its own
generator, operator and measurement, and one shared network call per reverse step on the
concatenated batch (``_SharedNetwork``).  Their noise is therefore identical to a
``batch_size`` 1 run; only the floating-point rounding of the batched network convolutions
differs (about 1e-6, which can flip an 8-bit PNG value by one step).  ``batch_size`` 1 is
exactly reproducible whatever else is in the folder.
"""

from __future__ import annotations

import threading
import time

import torch
from torch import Tensor


class _SharedNetwork:
    """The model as seen by B worker threads: each call waits for all B, then ONE network
    call runs on the concatenated inputs and every thread gets its own rows back.

    All B workers must make the same number of calls (same t0, steps, sampler).  Every other
    attribute (schedule, prediction, image_size, ...) is the wrapped model's."""

    def __init__(self, model, parties: int):
        self._model = model
        self._inputs: list = [None] * parties
        self._outputs: list = [None] * parties
        self._local = threading.local()
        self.error: BaseException | None = None
        self.barrier = threading.Barrier(parties, action=self._run)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._model, name)

    def __call__(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        slot = self._local.slot
        self._inputs[slot] = (x, t, class_labels)
        self.barrier.wait()
        out, self._outputs[slot] = self._outputs[slot], None
        return out

    def _run(self) -> None:
        try:
            xs = torch.cat([x for x, _, _ in self._inputs])
            ts = torch.cat([t.reshape(-1).expand(x.shape[0]) for x, t, _ in self._inputs])
            labels = [y for _, _, y in self._inputs]
            kw = {} if all(y is None for y in labels) else {"class_labels": torch.cat(labels)}
            out = self._model(xs, ts, **kw)
            self._outputs = list(torch.split(out, [x.shape[0] for x, _, _ in self._inputs]))
            self._inputs = [None] * len(self._inputs)
        except BaseException as e:
            self.error = e
            raise


def solve_batch(model, items: list, cfg, callback=None) -> list:
    """Solve ``items`` (same t0) together, filling each item's ``result`` and ``seconds``.

    Returns one entry per item: None when solved, else the exception it raised.  When a
    batch fails, its items are retried one by one (from fresh copies of their generators), so
    only the culprit fails and the others give exactly what a batch 1 run gives."""
    try:
        _run_batch(model, items, cfg, callback)
        return [None] * len(items)
    except Exception as e:  # noqa: BLE001 -- a per-item failure, reported by the caller
        if len(items) == 1:
            return [e]
    errors = []
    for it in items:
        try:
            _run_batch(model, [it], cfg, callback)
            errors.append(None)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    return errors


def _run_batch(model, items: list, cfg, callback) -> None:
    """Solve ``items`` (same t0) together; fills each item's ``result``; raises on failure."""
    from ..models.denoiser import WithClassLabel
    from ..reconstruct import reconstruct

    def one(it, net, cb):
        if getattr(it, "class_label", None) is not None:  # this item's class
            net = WithClassLabel(net, it.class_label)
        return reconstruct(net, it.op, it.y, it.x0_hat, t0=it.t0, steps=cfg.steps,
                           sampler=cfg.sampler, samples=cfg.samples, sigma_y=cfg.sigma_y,
                           consistency=cfg.consistency, generator=it.rng(), callback=cb)

    tic = time.perf_counter()
    if len(items) == 1:
        items[0].result = one(items[0], model, callback)
    else:
        net = _SharedNetwork(model, len(items))
        errors: list = [None] * len(items)

        def work(k):
            net._local.slot = k
            try:
                items[k].result = one(items[k], net, callback if k == 0 else None)
            except BaseException as e:  # noqa: BLE001 -- re-raised in the calling thread
                errors[k] = e
                net.barrier.abort()

        threads = [threading.Thread(target=work, args=(k,), daemon=True)
                   for k in range(len(items))]
        for th in threads:
            th.start()
        try:
            for th in threads:
                while th.is_alive():
                    th.join(0.2)
        except BaseException:  # Ctrl-C / SIGTERM: cli.main leaves at once (os._exit)
            net.barrier.abort()
            raise
        if net.error is not None:
            raise net.error
        real = [e for e in errors
                if e is not None and not isinstance(e, threading.BrokenBarrierError)]
        if real:
            raise real[0]
        if any(e is not None for e in errors):
            raise RuntimeError("a batched reconstruction was aborted")
    sec = (time.perf_counter() - tic) / len(items)
    for it in items:
        it.seconds = sec
