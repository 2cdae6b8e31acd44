#!/usr/bin/env bash
# Sahu et al. at CPU scale, 3 seeds x 2 ratios (configs/sahu_mnist.py), then
# the report. Seeds 1 and 2 start their calibration from seed 0's lambda.
#   bash experiments/dp_train/run_sahu.sh /tmp/sahu [extra flags for every run]
# (about 1 h on the 2-core machine with other work on it)
set -euo pipefail
ROOT="${1:-/tmp/sahu}"
shift || true
SEEDS="${SEEDS:-0 1 2}"
RATIOS="${RATIOS:-0.001 0.0005}"
CONFIG="${CONFIG:-experiments/dp_train/configs/sahu_mnist.py}"
source "$(dirname "$0")/retry.sh"   # run(): retried on an XLA:CPU hang
dense=""
for ratio in $RATIOS; do
  start=0.0
  for seed in $SEEDS; do
    workdir="$ROOT/ratio=$ratio/$seed"
    run --config="$CONFIG:$ratio$dense" \
      --config.seed="$seed" --config.calibration_start="$start" \
      --workdir="$workdir" "$@"
    start=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['threshold'])" \
      "$workdir/ef_threshold_calibrated/calibration.json")
  done
  dense=",no_dense"   # the dense baseline does not depend on the ratio
done
python -m experiments.dp_train.report --root="$ROOT" --out="$ROOT/report"
