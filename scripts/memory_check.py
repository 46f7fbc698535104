"""Peak memory of ``ccdf solve`` over a folder: it streams, so 1000 images cost what 100 do.

    python scripts/memory_check.py [--n 100,1000] [--model PATH]

Makes a folder of 32x32 PNGs and a tiny random 32x32 model (or uses --model, e.g.
src/ccdf/assets/models/default-image), runs ``ccdf solve --task sr --steps 10 --t0 0.1`` over
the first n images in a fresh process for each n, and prints that process's peak RSS
(``resource.getrusage``).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import resource, sys
from ccdf import cli
code = cli.main(sys.argv[1:])
print("maxrss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "code", code)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="100,1000", help="folder sizes, comma separated")
    p.add_argument("--model", default=None, help="a model folder (default: tiny random 32x32)")
    a = p.parse_args()
    sizes = [int(v) for v in a.n.split(",")]

    import torch

    from ccdf import io
    from ccdf.models.formats import save_model
    from ccdf.models.unet import UNetDenoiser, build_unet
    from ccdf.schedules import VPSchedule

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = a.model
        if model is None:
            torch.manual_seed(0)
            model = tmp / "model"
            save_model(UNetDenoiser(build_unet(32, 1, (8, 16)), VPSchedule()), model)
        g = torch.Generator().manual_seed(0)
        for i in range(max(sizes)):
            img = torch.rand(1, 32, 32, generator=g)
            for n in sizes:
                if i < n:
                    io.write_image(tmp / f"in{n}" / f"im{i:05d}.png", img)
        for n in sizes:
            tic = time.perf_counter()
            r = subprocess.run(
                [sys.executable, "-c", CHILD, "solve", "--task", "sr", "--factor", "4",
                 "--input", str(tmp / f"in{n}"), "--out", str(tmp / f"out{n}"), "--model",
                 str(model), "--steps", "10", "--t0", "0.1", "--threads", "1", "--no-progress"],
                capture_output=True, text=True)
            line = [x for x in r.stdout.splitlines() if x.startswith("maxrss_kib")]
            if r.returncode != 0 or not line:
                sys.exit(f"solve over {n} images failed:\n{r.stderr}")
            kib = int(line[0].split()[1])
            print(f"{n:6d} images: peak RSS {kib / 1024:.0f} MiB "
                  f"({time.perf_counter() - tic:.0f} s)")


if __name__ == "__main__":
    main()
