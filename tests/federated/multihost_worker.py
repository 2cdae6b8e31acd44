"""One process of the two-process federated test (run by the test).

Usage: python -m tests.federated.multihost_worker PROCESS_ID PORT OUT.npz
Each process has 2 CPU devices; the clients mesh spans all 4. Both processes
pass the same data and seed. Writes the final params, the per-client uplink
bits of every round and the ledger totals to OUT.npz.
"""

import os
import sys

os.environ["XLA_FLAGS"] = (
    "--xla_force_host_platform_device_count=2 "
    "--xla_cpu_multi_thread_eigen=false "
    "--xla_cpu_collective_call_terminate_timeout_seconds=600")

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from tests.federated import problem  # pylint: disable=g-import-not-at-top


def main():
  process_id, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
  jax.distributed.initialize(f"localhost:{port}", num_processes=2,
                             process_id=process_id)
  assert jax.device_count() == 4 and jax.local_device_count() == 2
  from sparsejax import federated  # pylint: disable=g-import-not-at-top
  np.savez(out, **problem.multihost_run(federated.client_mesh(4)))
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
