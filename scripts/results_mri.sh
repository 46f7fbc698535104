#!/usr/bin/env bash
# Regenerates the README's MRI-on-real-sizes results (docs/results/mri-*): the size-independent
# complex prior (default-mri) and the any-mask start (restorer-mri) at 256x256 on complex
# slices, run two at a time with one torch thread each on a 2-core machine.
#   1. auto-t0 calibrations on the validation slices (mri:val256-complex, never evaluated);
#   2. benches: uniform 1-D x4 on the held-out band and on the out-of-distribution set, random
#      1-D x8 on the held-out band (4 images each, spread over the set; the 1000-step full
#      run on the first image only: it costs ~10 min per 256x256 slice here);
#   3. complex prior vs phase absorbed in the operator (scripts/complex_vs_phase.py).
set -euo pipefail
mkdir -p docs/results
CAL="--model src/ccdf/assets/models/default-mri --input mri:val256-complex --n-images 2 --grid 0.02,0.03,0.05,0.1,0.2,0.3,0.5 --threads 1"
ccdf calibrate-t0 --task mri --pattern uniform1d --accel 4 $CAL > docs/results/cal-mri4.log 2>&1 &
a=$!
ccdf calibrate-t0 --task mri --pattern random1d --accel 8 $CAL > docs/results/cal-mri8.log 2>&1 &
b=$!
wait $a; wait $b

BENCH="--n-images 4 --grid 0.02,0.05,0.1,0.2 --sweep-steps 100 --no-checks --threads 1"
ccdf bench --task mri --pattern uniform1d --accel 4 --data mri:heldout256-complex $BENCH \
  --full-steps 20,1000 --full-images 1 --out docs/results/mri4-256 > docs/results/mri4-256.log 2>&1 &
a=$!
ccdf bench --task mri --pattern uniform1d --accel 4 --data mri:ood256-complex $BENCH \
  --full-steps 20 --out docs/results/mri4-ood256 > docs/results/mri4-ood256.log 2>&1
ccdf bench --task mri --pattern random1d --accel 8 --data mri:heldout256-complex $BENCH \
  --full-steps 20 --out docs/results/mri8-256 > docs/results/mri8-256.log 2>&1
python scripts/complex_vs_phase.py --data mri:heldout256-complex --n-images 4 --t0 0.05 0.1 0.2 \
  --threads 1 --out docs/results/complex-vs-phase > docs/results/complex-vs-phase.log 2>&1
wait $a
