"""One process of the two-process data-parallel test (run by the test).

Usage: python multihost_worker.py PROCESS_ID PORT OUT.npz
Each process has 2 CPU devices; the global mesh has 4. Writes the final
params and per-process counters to OUT.npz.
"""

import os
import sys

os.environ["XLA_FLAGS"] = (
    "--xla_force_host_platform_device_count=2 "
    "--xla_cpu_multi_thread_eigen=false "
    "--xla_cpu_collective_call_terminate_timeout_seconds=600")

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from tests.parallel import dp_problem  # pylint: disable=g-import-not-at-top


def main():
  process_id, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
  jax.distributed.initialize(f"localhost:{port}", num_processes=2,
                             process_id=process_id)
  assert jax.device_count() == 4 and jax.local_device_count() == 2
  params, stats = dp_problem.train(num_devices=4, process_rows=(
      process_id * dp_problem.BATCH // 2, (process_id + 1) * dp_problem.BATCH // 2))
  np.savez(out, w=np.asarray(params["w"]), b=np.asarray(params["b"]),
           bits=stats)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
