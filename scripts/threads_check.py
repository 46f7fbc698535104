"""How torch's CPU threads behave when other jobs share the CPU: one short `ccdf solve` per
setting (4 Fashion-MNIST test images, SR x4 on the embedded prior, full runs t0 = 1, N = 30,
120 network evaluations per image), timed as seconds per image.

    python scripts/threads_check.py                 # 1 thread; 2 threads spinning; 2 passive
    python scripts/threads_check.py --busy          # the same beside one busy-looping process
    python scripts/threads_check.py --settings 4:default,4:PASSIVE

A setting is THREADS:WAIT, WAIT = default (torch's libgomp: spin, then sleep) or PASSIVE
(OMP_WAIT_POLICY=PASSIVE, what ccdf sets for more than one thread).  Each runs in its own
process (OpenMP reads its environment when torch is imported), at most --timeout seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io as _io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(threads: int, wait: str, inp: str, out: str) -> None:
    if wait == "default":
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ["OMP_WAIT_POLICY"] = wait
    import torch  # noqa: F401 -- libgomp reads OMP_WAIT_POLICY here, before ccdf sets it

    from ccdf import cli

    buf = _io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(["solve", "--task", "sr", "--factor", "4", "--input", inp, "--out", out,
                       "--overwrite", "--t0", "1", "--steps", "30", "--threads", str(threads),
                       "--no-progress", "--json"])
    if rc == 0:
        print(json.loads(buf.getvalue())["seconds_per_image"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", default="1:default,2:default,2:PASSIVE")
    p.add_argument("--busy", action="store_true", help="run beside one busy-looping process")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        return one(int(a.one[0]), a.one[1], a.one[2], a.one[3])
    from ccdf import datasets, io

    tmp = Path(tempfile.mkdtemp(prefix="ccdf-threads-"))
    for i, x in enumerate(datasets.sample("fashion-mnist")[:4]):
        io.write_image(tmp / "in" / f"fm{i}.png", x)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if a.busy else None
    try:
        print(f"{'threads':>7} {'wait':>8} {'s/image':>8}  load (1 min)   busy: {a.busy}")
        for s in a.settings.split(","):
            threads, wait = s.split(":")
            tic = time.time()
            try:
                r = subprocess.run([sys.executable, __file__, "--one", threads, wait,
                                    str(tmp / "in"), str(tmp / "out")], env=env,
                                   capture_output=True, text=True, timeout=a.timeout,
                                   check=False)
                spi = f"{float(r.stdout.split()[-1]):.2f}" if r.stdout.strip() else "failed"
            except subprocess.TimeoutExpired:
                spi = f"> {a.timeout / 4:.0f}"   # 4 images, not finished in the time
            load = Path("/proc/loadavg").read_text().split()[0]
            print(f"{threads:>7} {wait:>8} {spi:>8}  {load}   ({time.time() - tic:.0f} s wall)")
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


if __name__ == "__main__":
    main()
