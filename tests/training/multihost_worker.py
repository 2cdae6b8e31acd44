"""One process of the two-process checkpoint and work-directory test.

Both processes share a work directory: only the primary locks it and checks
the config; a sharded array spanning both processes is checkpointed, verified
on restore, and then found damaged by both after process 0 flips its bytes.
"""

import os
import sys

from experiments import launch
from tests import multihost

launch.force_host_devices(multihost.LOCAL_DEVICES)

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
from jax.experimental import multihost_utils
import numpy as np

from sparsejax import training

ROWS = 1 << 13  # Random bits do not compress: a flipped byte stays in place.


def _open(wd, config):
  try:
    with training.open_workdir(wd, config) as w:
      return w.status
  except training.ConfigMismatchError:
    return "mismatch"
  except RuntimeError as e:
    return "primary refused" if "primary process refused" in str(e) else str(e)


def compute(process_id):
  wd = os.path.join(os.path.dirname(sys.argv[3]), "run")
  statuses = [_open(wd, {"num_steps": 10}), _open(wd, {"num_steps": 20})]
  mesh = jax.make_mesh((4,), ("d",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
  data = np.random.default_rng(0).integers(0, 2**32, (ROWS, 4), np.uint32)
  x = jax.make_array_from_callback(data.shape, sharding, lambda i: data[i])
  assert not x.is_fully_addressable
  ckpt = training.Checkpointer(os.path.join(wd, "ckpt"))
  ckpt.save(1, {"x": x})
  ckpt.wait()
  got = ckpt.restore(1, target={"x": x})["x"]
  restored = all(np.array_equal(s.data, data[s.index])
                 for s in got.addressable_shards)
  if process_id == 0:
    step_dir = ckpt.step_directory(1)
    files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs]
    path = max(files, key=os.path.getsize)
    with open(path, "r+b") as f:
      f.seek(os.path.getsize(path) // 2)
      f.write(b"\0\1\2\3")
  multihost_utils.sync_global_devices("flipped")
  try:
    ckpt.restore(1, target={"x": x})
    damage = "none"
  except training.CorruptCheckpointError as e:
    damage = e.entry
  ckpt.close()
  return {"statuses": np.array(statuses), "restored": np.array(restored),
          "damage": np.array(damage)}


if __name__ == "__main__":
  multihost.worker_main(compute)
