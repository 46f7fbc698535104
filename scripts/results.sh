#!/usr/bin/env bash
# Regenerates the README's Results section (docs/results/): the full SR x4 and MRI x4 benches
# on the embedded models, run side by side with one torch thread each on a 2-core machine.
# The auto-t0 calibrations they use are committed beside the priors (autot0.json); they were
# made by `ccdf calibrate-t0 --task sr --factor 4`, `ccdf calibrate-t0 --task inpaint --mask box`
# and `ccdf calibrate-t0 --task mri --pattern uniform1d --accel 4` (validation splits only).
set -euo pipefail
mkdir -p docs/results
ccdf bench --task sr --factor 4 --peers --n-images 16 --threads 1 \
  --out docs/results/sr4 > docs/results/sr4.log 2>&1 &
sr=$!
ccdf bench --task mri --pattern uniform1d --accel 4 --peers --n-images 8 --threads 1 \
  --out docs/results/mri4 > docs/results/mri4.log 2>&1 &
mri=$!
wait $sr
wait $mri
