"""One process of the two-process federated test (run by the test).

The clients mesh spans the 4 devices of both processes, which pass the same
data and seed; saves :func:`tests.federated.problem.multihost_run`'s arrays
(:mod:`tests.multihost`).
"""

from experiments import launch
from tests import multihost

launch.force_host_devices(multihost.LOCAL_DEVICES)

# pylint: disable=g-import-not-at-top,wrong-import-position
from sparsejax import federated
from tests.federated import problem


def compute(process_id):
  del process_id  # every process runs the same simulation
  return problem.multihost_run(federated.client_mesh(4))


if __name__ == "__main__":
  multihost.worker_main(compute)
