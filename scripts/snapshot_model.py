"""Copy a training run's EMA model into the package assets with a quality report.

    python scripts/snapshot_model.py runs/default-image default-image --samples 36 --steps 50

Writes src/ccdf/assets/models/NAME/{model.safetensors, config.json, train_log.jsonl,
samples.png, REPORT.md}.  The samples are unconditional (t0 = 1) DDIM draws.
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from ccdf import datasets

p = argparse.ArgumentParser()
p.add_argument("run")
p.add_argument("name")
p.add_argument("--samples", type=int, default=36)
p.add_argument("--steps", type=int, default=50)
a = p.parse_args()
run, dst = Path(a.run), datasets.ASSETS / "models" / a.name
dst.mkdir(parents=True, exist_ok=True)
for f in ("model.safetensors", "config.json", "train_log.jsonl"):
    shutil.copy(run / f, dst / f)
cfg = json.loads((dst / "config.json").read_text())
log = [json.loads(ln) for ln in (dst / "train_log.jsonl").read_text().splitlines() if ln.strip()]
last = log[-1]
tail = log[-200:]
cmd = [sys.executable, "-m", "ccdf", "sample", "--model", str(dst), "--n", str(a.samples),
       "--steps", str(a.steps), "--sampler", "ddim", "--out", str(dst / "samples.png")]
subprocess.run(cmd, check=True)
report = f"""# {a.name}

Trained on: {cfg.get('trained_on')}  
Training command: `{cfg.get('extra', {}).get('command', '?')}`  
Snapshot at step {last['step']} ({last['time'] / 3600:.2f} h of CPU training), mean loss over
the last {len(tail)} steps {sum(r['loss'] for r in tail) / len(tail):.4f}; the loss of every
step is in `train_log.jsonl`.

Unconditional samples (DDIM, {a.steps} steps, made with
`ccdf sample --model {a.name} --n {a.samples} --steps {a.steps} --sampler ddim`):

![samples](samples.png)
"""
(dst / "REPORT.md").write_text(report)
print(f"snapshot of {run} at step {last['step']} written to {dst}")
