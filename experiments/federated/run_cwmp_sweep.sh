#!/usr/bin/env bash
# CWMP against the energy-matched top-k on CIFAR-10 (configs/cwmp_cifar10_cpu.py).
# For each transmit energy per bit e_tx (extremes first) and seed: the
# energy-matched top-k and CWMP p=1, p=2 at every energy level; then dense
# FedAvg per seed (the accuracy reference); then the report. Each e_tx is
# complete over seeds before the next starts, so its verdict comes early.
#
#   nice -n 5 nohup experiments/federated/run_cwmp_sweep.sh > /tmp/cwmp_runs.log 2>&1 &
#
# Environment: OUT (/tmp/cwmp_runs), SEEDS ("0 1 2"), ETX ("0 20 2", pJ/bit),
# LEVELS (0.01: fractions of the dense energy, comma-separated), CONFIG,
# PYTHON (.venv/bin/python if there, else python).
# Extra arguments go to every run (e.g. --config.eval_every=15). Rerunning
# resumes every run; rerunning with LEVELS=0.05 adds that level's methods.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/cwmp_runs}
SEEDS=${SEEDS:-"0 1 2"}
ETX=${ETX:-"0 20 2"}
LEVELS=${LEVELS:-0.01}
CONFIG=${CONFIG:-experiments/federated/configs/cwmp_cifar10_cpu.py}
[[ -x .venv/bin/python ]] && PYTHON=${PYTHON:-.venv/bin/python}
PYTHON=${PYTHON:-python}
# XLA:CPU constant-folds the selection kernel's index tables for minutes.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_disable_hlo_passes=constant_folding"
run() {
  echo "== $(date +%T) $*"
  "$PYTHON" -m experiments.federated.main "$@" || echo "== FAILED ($?): $*"
}
for e in $ETX; do
  for s in $SEEDS; do
    run --config="$CONFIG:$LEVELS" --config.seed="$s" \
        --config.tx_pj_per_bit="$e" --workdir="$OUT/etx$e/seed$s" "$@"
  done
done
for s in $SEEDS; do
  run --config="$CONFIG:dense" --config.seed="$s" \
      --workdir="$OUT/dense/seed$s" "$@"
done
roots=$(for e in $ETX; do printf '%s,' "$OUT/etx$e"; done)
"$PYTHON" -m experiments.federated.cwmp_report --roots="${roots%,}" \
    --dense="$OUT/dense" --out="$OUT/report"
echo "== $(date +%T) done: $OUT/report/report.md"
