#!/usr/bin/env bash
# Regenerates the README's MRI-on-real-sizes results (docs/results/mri-*): the size-independent
# complex prior (default-mri) and the any-mask start (restorer-mri) at 256x256 on complex
# slices, one torch thread per run (two runs at a time on a 2-core machine).
#   1. auto-t0 calibrations on the validation slices (mri:val256-complex, never evaluated) for
#      the classic, feed-forward and compressed-sensing (TV, L1 wavelet) starts on the N = 1000
#      grid (at t0 = 0.02 its 20 steps are 20 consistency steps at low noise, where the N = 100
#      grid takes 2), into a copy of the prior (MODEL, default out/default-mri; copy it into the
#      package to publish); auto t0 then runs on N = 1000 (solve and bench);
#   2. benches: uniform 1-D x4 on the held-out band and on the out-of-distribution set (t0
#      sweeps on N = 100 and 1000), random 1-D x8 on the held-out band (sweep on N = 100), 4
#      images each, spread over the set; full runs N = 20 (the 1000-step full run costs ~10 min
#      per 256x256 slice here, see the multi-coil x4 bench).
# Every CCDF run (calibration and bench) absorbs the k-space centre's phase in the operator and
# reconstructs a real image (--phase auto, the default; PHASE=none runs the complex prior on the
# complex image instead). The two are compared by scripts/complex_vs_phase.py (README).
set -euo pipefail
MODEL=${MODEL:-out/default-mri}
PHASE=${PHASE:-auto}
mkdir -p docs/results "$(dirname "$MODEL")"
[ -d "$MODEL" ] || cp -r src/ccdf/assets/models/default-mri "$MODEL"
CAL="--model $MODEL --input mri:val256-complex --n-images 2 --steps 1000 --grid 0.02,0.03,0.05,0.1 --cs tv,l1wavelet --phase $PHASE --threads 1"
ccdf calibrate-t0 --task mri --pattern uniform1d --accel 4 $CAL > docs/results/cal-mri4.log 2>&1 &
a=$!
ccdf calibrate-t0 --task mri --pattern random1d --accel 8 $CAL > docs/results/cal-mri8.log 2>&1
wait $a

BENCH="--model $MODEL --n-images 4 --grid 0.02,0.05,0.1 --sweep-steps 100,1000 --full-steps 20 --no-checks --phase $PHASE --threads 1"
ccdf bench --task mri --pattern uniform1d --accel 4 --data mri:heldout256-complex $BENCH \
  --out docs/results/mri4-256 > docs/results/mri4-256.log 2>&1 &
a=$!
ccdf bench --task mri --pattern uniform1d --accel 4 --data mri:ood256-complex $BENCH \
  --out docs/results/mri4-ood256 > docs/results/mri4-ood256.log 2>&1
# x8: the sweep on N = 100 only (its auto-t0 rows run on N = 1000, the calibration's grid)
ccdf bench --task mri --pattern random1d --accel 8 --data mri:heldout256-complex \
  ${BENCH/--sweep-steps 100,1000/--sweep-steps 100} \
  --out docs/results/mri8-256 > docs/results/mri8-256.log 2>&1
wait $a
