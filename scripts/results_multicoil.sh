#!/usr/bin/env bash
# Regenerates the README's multi-coil MRI results (docs/results/mc-*): 8 simulated birdcage
# coils on complex 256x256 slices, ESPIRiT maps estimated from the fully sampled centre
# (crop 0.95, so pixels no coil sees are measured zeros: the support constraint), CG-SENSE start,
# zero-filled RSS, sigpy TV / L1-wavelet with lambda chosen on the validation slices, the full
# run (t0 = 1, N = 20 and 100; N = 1000 on the first slice at x4) and CCDF with the projection
# and (x4) the DDS conjugate-gradient consistency (the gradient step trails both by ~6 dB in
# `ccdf bench --task mri --coils 8 --quick`), from the SENSE start and from the compressed-
# sensing start (the better CS row on validation).
# One torch thread; on a 2-core machine next to a training run (~2-3 s per NFE per slice).
set -euo pipefail
mkdir -p docs/results
MC="--coils 8 --n-images 2 --grid 0.05,0.1,0.2 --sweep-steps 100 --restorer none --no-checks --threads 1"
ccdf bench --task mri --pattern uniform1d --accel 4 --data mri:heldout256-complex $MC \
  --consistency projection,cg --full-steps 20,100,1000 --full-images 1 \
  --out docs/results/mc4-256 > docs/results/mc4-256.log 2>&1
# x8 and out of distribution: the projection only (the x4 bench compares the consistencies)
ccdf bench --task mri --pattern random1d --accel 8 --data mri:heldout256-complex $MC \
  --consistency projection --full-steps 20 --out docs/results/mc8-256 > docs/results/mc8-256.log 2>&1
ccdf bench --task mri --pattern uniform1d --accel 4 --data mri:ood256-complex $MC \
  --consistency projection --full-steps 20 --out docs/results/mc4-ood256 > docs/results/mc4-ood256.log 2>&1
