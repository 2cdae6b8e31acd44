#!/usr/bin/env bash
# KTA v2 against FedMD, local-only, FedAvg and FedProx (issue #16's runs).
# For each setting (one config, optionally with overrides) and seed: every
# method of the config into OUT/<setting>/seed<s>; then the setting's report
# (experiments.kta.report) into OUT/<setting>/report. Each setting is
# complete over seeds before the next starts, so its verdict comes early.
#
#   nice -n 5 nohup experiments/kta/run_sweep.sh > /tmp/kta_sweep.log 2>&1 &
#
# Environment: OUT (/tmp/kta_sweep), SEEDS ("0 1 2"), SETTINGS (the names
# below, space-separated; the default leaves out the CNN settings
# cifar10_cnn and cifar10_cnn_dir01: 77-97 min for 3 seeds as parallel
# workers on 2 cores), PYTHON (.venv/bin/python if there, else python).
# Extra arguments go to every run. Rerunning resumes every run.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/kta_sweep}
SEEDS=${SEEDS:-"0 1 2"}
SETTINGS=${SETTINGS:-"cifar10 ag_news femnist cifar10_dir01 cifar10_hetero"}
[[ -x .venv/bin/python ]] && PYTHON=${PYTHON:-.venv/bin/python}
PYTHON=${PYTHON:-python}
C=experiments/kta/configs
declare -A ARGS=(
  [cifar10]="--config=$C/cifar10.py"
  [ag_news]="--config=$C/ag_news.py"
  [femnist]="--config=$C/femnist.py"
  [cifar10_dir01]="--config=$C/cifar10.py --config.partition.alpha=0.1"
  [cifar10_hetero]="--config=$C/cifar10_hetero.py"
  [cifar10_cnn]="--config=$C/cifar10_patchconv.py"
  [cifar10_cnn_dir01]="--config=$C/cifar10_patchconv.py --config.partition.alpha=0.1"
)
for setting in $SETTINGS; do
  [[ -n "${ARGS[$setting]:-}" ]] || { echo "unknown setting $setting"; exit 2; }
  workdirs=""
  for s in $SEEDS; do
    echo "== $(date +%T) $setting seed $s"
    # shellcheck disable=SC2086  # ARGS holds several flags
    "$PYTHON" -m experiments.kta.main ${ARGS[$setting]} \
        --config.seeds="($s,)" --workdir="$OUT/$setting/seed$s" "$@" \
      || echo "== FAILED ($?): $setting seed $s"
    workdirs+="$OUT/$setting/seed$s,"
  done
  "$PYTHON" -m experiments.kta.report --workdirs="${workdirs%,}" \
      --out="$OUT/$setting/report" || echo "== report FAILED: $setting"
done
