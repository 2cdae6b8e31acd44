#!/usr/bin/env bash
# One dp_train config over several seeds, then the seed report.
#   bash experiments/dp_train/run_seeds.sh CONFIG ROOT [extra flags]
#   e.g. bash experiments/dp_train/run_seeds.sh \
#          experiments/dp_train/configs/compressors_mnist.py /tmp/compressors_mnist
# Environment: SEEDS ("0 1 2"), TARGET (0.95: test accuracy for the
# steps/bytes-to-target table). Runs resume; a hung run is retried (retry.sh).
set -euo pipefail
CONFIG="$1"
ROOT="$2"
shift 2
SEEDS="${SEEDS:-0 1 2}"
source "$(dirname "$0")/retry.sh"
workdirs=()
for seed in $SEEDS; do
  run --config="$CONFIG" --config.seed="$seed" --workdir="$ROOT/$seed" "$@"
  workdirs+=("$ROOT/$seed")
done
python -m experiments.compare_seeds --experiment=dp_train \
  --target="${TARGET:-0.95}" --workdirs="$(IFS=,; echo "${workdirs[*]}")" \
  --out="$ROOT/report"
