"""Tests over two ``jax.distributed`` processes on localhost, 2 CPU devices each.

A test calls :func:`run_workers` with a worker module, which starts with
``launch.force_host_devices(LOCAL_DEVICES)`` (before jax is imported) and
runs :func:`worker_main` under ``if __name__ == "__main__"``.
"""

import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_PROCESSES = 2
LOCAL_DEVICES = 2


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def run_workers(module: str, tmp_path, timeout: float = 300) -> list:
  """Runs ``python -m module`` as every process; returns their saved arrays."""
  port = str(_free_port())
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # the worker sets its own device count
  outs = [tmp_path / f"out{i}.npz" for i in range(NUM_PROCESSES)]
  procs = [subprocess.Popen(
      [sys.executable, "-m", module, str(i), port, str(out)], cwd=ROOT,
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
           for i, out in enumerate(outs)]
  for p in procs:
    log, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, log.decode()[-3000:]
  return [np.load(out, allow_pickle=True) for out in outs]  # our own files


def worker_main(compute) -> None:
  """Joins the processes (argv: PROCESS_ID PORT OUT.npz) and saves
  ``compute(process_id)`` (a dict of arrays) to OUT.npz."""
  import jax  # pylint: disable=g-import-not-at-top
  process_id, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
  jax.distributed.initialize(f"localhost:{port}", num_processes=NUM_PROCESSES,
                             process_id=process_id)
  assert jax.local_device_count() == LOCAL_DEVICES
  assert jax.device_count() == NUM_PROCESSES * LOCAL_DEVICES
  np.savez(out, **compute(process_id))
  jax.distributed.shutdown()
