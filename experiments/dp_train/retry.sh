# Sourced by the dp_train run scripts: `run <flags>` runs
# experiments.dp_train.main and retries it if it aborts.
#
# XLA:CPU's all-reduce over 8 forced host devices can deadlock on a loaded
# 2-core machine: a device never joins the rendezvous (seen at varying steps
# of several compressors' runs). The collective timeout is cut to 1 minute
# (a step takes ~50 ms) so such a run aborts early; it is then retried,
# resuming from its last checkpoint and caches, so nothing finished is redone
# and the results are the same.
export XLA_FLAGS="${XLA_FLAGS:---xla_force_host_platform_device_count=8 \
--xla_cpu_multi_thread_eigen=false \
--xla_cpu_collective_call_terminate_timeout_seconds=60}"
ATTEMPTS="${ATTEMPTS:-8}"
run() {
  for attempt in $(seq "$ATTEMPTS"); do
    python -m experiments.dp_train.main "$@" && return 0
    echo "== run failed (attempt $attempt of $ATTEMPTS): $*" >&2
  done
  return 1
}
