"""Two ``jax.distributed`` processes on localhost run the same simulation."""

import numpy as np

from tests import multihost
from tests.federated import problem


def test_two_processes_match_one_device(tmp_path):
  outs = multihost.run_workers("tests.federated.multihost_worker", tmp_path)
  want = problem.multihost_run(mesh=None)  # vmap on this process's device
  assert want["totals"][2] > 0 and want["totals"][3] > 0  # rejected, dropped
  for got in outs:
    for k in ("clients", "uplink_bits", "totals"):
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    for k in ("w", "b", "train_loss"):
      np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6,
                                 err_msg=k)
