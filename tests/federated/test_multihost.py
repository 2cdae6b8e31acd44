"""Two ``jax.distributed`` processes on localhost run the same simulation."""

import os
import socket
import subprocess
import sys

import numpy as np

from tests.federated import problem

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_device(tmp_path):
  port = str(_free_port())
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  procs = [subprocess.Popen(
      [sys.executable, "-m", "tests.federated.multihost_worker", str(i), port,
       str(tmp_path / f"out{i}.npz")], cwd=ROOT, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
  for p in procs:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out.decode()[-3000:]
  want = problem.multihost_run(mesh=None)  # vmap on this process's device
  assert want["totals"][2] > 0 and want["totals"][3] > 0  # rejected, dropped
  for i in range(2):
    got = np.load(tmp_path / f"out{i}.npz", allow_pickle=True)
    for k in ("clients", "uplink_bits", "totals"):
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    for k in ("w", "b", "train_loss"):
      np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6,
                                 err_msg=k)
