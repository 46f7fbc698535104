#!/usr/bin/env bash
# Regenerates the README's multi-coil MRI results (docs/results/mc-*): 8 simulated birdcage
# coils on complex 256x256 slices, ESPIRiT maps estimated from the fully sampled centre
# (crop 0.95, so pixels no coil sees are measured zeros: the support constraint), CG-SENSE start,
# zero-filled RSS, sigpy TV / L1-wavelet with lambda chosen on the validation slices, the full
# run (t0 = 1, N = 20 and 100) and CCDF with the projection and DDS conjugate-gradient consistencies
# (the gradient step trails both by ~6 dB in `ccdf bench --task mri --coils 8 --quick`).
# One torch thread; on a 2-core machine next to a training run (~2-3 s per NFE per slice).
set -euo pipefail
mkdir -p docs/results
MC="--coils 8 --n-images 2 --grid 0.05,0.1,0.2 --sweep-steps 100 --restorer none --no-checks --threads 1"
ccdf bench --task mri --pattern uniform1d --accel 4 --data mri:heldout256-complex $MC \
  --consistency projection,cg --full-steps 20,100 \
  --out docs/results/mc4-256 > docs/results/mc4-256.log 2>&1
ccdf bench --task mri --pattern random1d --accel 8 --data mri:heldout256-complex $MC \
  --consistency projection,cg --full-steps 20 --out docs/results/mc8-256 > docs/results/mc8-256.log 2>&1
ccdf bench --task mri --pattern uniform1d --accel 4 --data mri:ood256-complex $MC \
  --consistency projection,cg --full-steps 20 --out docs/results/mc4-ood256 > docs/results/mc4-ood256.log 2>&1
