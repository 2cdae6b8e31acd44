"""One process of the two-process data-parallel test (run by the test).

Each process feeds its half of the batch to the global 4-device mesh and
saves the final params and its counters (:mod:`tests.multihost`).
"""

from experiments import launch
from tests import multihost

launch.force_host_devices(multihost.LOCAL_DEVICES)

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np

from tests.parallel import dp_problem


def compute(process_id):
  half = dp_problem.BATCH // 2
  params, stats = dp_problem.train(
      num_devices=4, process_rows=(process_id * half, (process_id + 1) * half))
  return {"w": np.asarray(params["w"]), "b": np.asarray(params["b"]),
          "bits": stats}


if __name__ == "__main__":
  multihost.worker_main(compute)
