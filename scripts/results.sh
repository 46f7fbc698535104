#!/usr/bin/env bash
# Regenerates the README's Results section (docs/results/): the SR x4 and MRI x4 benches on
# the embedded models, run side by side with one torch thread each on a 2-core machine.
set -euo pipefail
mkdir -p docs/results
ccdf bench --task sr --factor 4 --peers --quick --n-images 16 --threads 1 \
  --out docs/results/sr4 > docs/results/sr4.log 2>&1 &
sr=$!
ccdf bench --task mri --pattern uniform1d --accel 4 --peers --quick --n-images 8 --threads 1 \
  --out docs/results/mri4 > docs/results/mri4.log 2>&1 &
mri=$!
wait $sr
wait $mri
