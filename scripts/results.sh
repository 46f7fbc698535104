#!/usr/bin/env bash
# Regenerates the README's super-resolution results (docs/results/sr4) on the embedded models,
# with one torch thread.  The auto-t0 calibrations it uses are committed beside the priors
# (autot0.json), made by `ccdf calibrate-t0 --task sr --factor 4` and `ccdf calibrate-t0
# --task inpaint --mask box` (validation splits only).  The MRI results: scripts/results_mri.sh.
set -euo pipefail
mkdir -p docs/results
ccdf bench --task sr --factor 4 --peers --n-images 16 --threads 1 \
  --out docs/results/sr4 > docs/results/sr4.log 2>&1
