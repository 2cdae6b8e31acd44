"""Tests that damaged checkpoints are detected, named, never used silently."""

import glob
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from sparsejax.training import checkpoint
from sparsejax.training import Checkpointer
from sparsejax.training import CorruptCheckpointError
from sparsejax.training import ReplicaMismatchError

# Orbax leaves read coroutines of a failed restore to the garbage collector.
pytestmark = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning")

N = 1 << 15  # Random bits do not compress: a flipped byte stays in place.


def _state(seed):
  rng = np.random.default_rng(seed)
  return {"big": jnp.asarray(rng.integers(0, 2**32, N, np.uint32)),
          "small": {"b": jnp.arange(5, dtype=jnp.bfloat16) + seed},
          "step": seed}


def _target():
  return {"big": jnp.zeros(N, jnp.uint32),
          "small": {"b": jnp.zeros(5, jnp.bfloat16)}, "step": 0}


def _data_file(step_dir):
  files = [f for f in glob.glob(os.path.join(step_dir, "**"), recursive=True)
           if os.path.isfile(f)]
  return max(files, key=os.path.getsize)


def _flip(path, offset, n=4):
  data = bytearray(open(path, "rb").read())
  for i in range(offset, offset + n):
    data[i] ^= 0xFF
  with open(path, "wb") as f:
    f.write(data)


def _saved(tmp_path, steps=(1, 2)):
  ckpt = Checkpointer(str(tmp_path / "ckpt"), max_to_keep=None)
  for s in steps:
    ckpt.save(s, _state(s))
  ckpt.wait()
  return ckpt


def _assert_equal(got, want):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.mark.slow
def test_flipped_array_bytes_name_entry_path_and_good_step(tmp_path):
  ckpt = _saved(tmp_path)
  step_dir = ckpt.step_directory(2)
  data = _data_file(step_dir)
  _flip(data, os.path.getsize(data) // 2)
  with pytest.raises(CorruptCheckpointError) as info:
    ckpt.restore(2, target=_target())
  e = info.value
  assert (e.entry, e.step, e.good_step, e.path) == ("big", 2, 1, step_dir)
  assert "entry big fails its checksum" in str(e) and step_dir in str(e)
  assert "Step 1 verifies" in str(e)
  # The default restore (latest) raises too: no silent fallback.
  with pytest.raises(CorruptCheckpointError):
    ckpt.restore(target=_target())
  # The explicit fallback restores step 1 and sets step 2 aside.
  step, state = ckpt.restore_latest_good(_target())
  assert step == 1
  _assert_equal(state, _state(1))
  assert ckpt.all_steps() == [1]
  assert os.path.isdir(os.path.join(ckpt.directory, "damaged-2"))
  ckpt.save(2, _state(7))  # Saving resumes after the good step.
  _assert_equal(ckpt.restore(2, target=_target()), _state(7))
  ckpt.close()


def test_unreadable_array_data_names_step_dir(tmp_path):
  ckpt = _saved(tmp_path)
  step_dir = ckpt.step_directory(2)
  _flip(_data_file(step_dir), 0, n=16)  # Breaks the compressed stream.
  with pytest.raises(CorruptCheckpointError) as info:
    ckpt.restore(2, target=_target())
  assert info.value.path == step_dir and info.value.good_step == 1
  assert "cannot be read" in str(info.value)
  ckpt.close()


def test_every_step_damaged(tmp_path):
  ckpt = _saved(tmp_path)
  for s in (1, 2):
    data = _data_file(ckpt.step_directory(s))
    _flip(data, os.path.getsize(data) // 2)
  with pytest.raises(CorruptCheckpointError, match="No earlier checkpoint"):
    ckpt.restore(target=_target())
  with pytest.raises(CorruptCheckpointError) as info:
    ckpt.restore_latest_good(_target())
  assert info.value.step == 2 and ckpt.all_steps() == [1, 2]  # Nothing moved.
  ckpt.close()


@pytest.mark.parametrize("name", ["default/_METADATA", "_CHECKPOINT_METADATA",
                                  "checksums/metadata"])
def test_damaged_metadata_json_names_file(tmp_path, name):
  ckpt = _saved(tmp_path)
  path = os.path.join(ckpt.step_directory(2), name)
  with open(path, "r+b") as f:
    f.write(b"X")  # Over the opening brace.
  with pytest.raises(CorruptCheckpointError) as info:
    ckpt.restore(2, target=_target())
  assert info.value.path == path and path in str(info.value)
  assert isinstance(info.value.__cause__, json.JSONDecodeError)
  ckpt.close()


def test_damaged_array_metadatas_names_file(tmp_path):
  ckpt = _saved(tmp_path)
  (path,) = glob.glob(os.path.join(ckpt.step_directory(2), "default",
                                   "array_metadatas", "*"))
  with open(path, "w") as f:
    f.write('{"truncated": ')
  with pytest.raises(CorruptCheckpointError, match=path):
    ckpt.restore(2, target=_target())
  ckpt.close()


def test_intact_checkpoint_wrong_target_is_not_called_corrupt(tmp_path):
  ckpt = _saved(tmp_path)
  with pytest.raises(ValueError, match="intact") as info:
    ckpt.restore(2, target=dict(_target(), big=jnp.zeros(3)))
  assert not isinstance(info.value, CorruptCheckpointError)
  ckpt.close()


def test_checkpoint_without_checksums_restores_with_warning(tmp_path, caplog):
  d = str(tmp_path / "ckpt")
  manager = ocp.CheckpointManager(d)  # As written by the previous version.
  manager.save(3, args=ocp.args.StandardSave(_state(3)))
  manager.wait_until_finished()
  manager.close()
  with caplog.at_level(logging.WARNING), Checkpointer(d) as ckpt:
    got = ckpt.restore(3, target=_target())
  _assert_equal(got, _state(3))
  assert "has no checksums" in caplog.text


@pytest.mark.slow
def test_lossless_dtype_change_verifies_lossy_one_warns(tmp_path, caplog):
  ckpt = _saved(tmp_path, steps=(1,))
  with caplog.at_level(logging.WARNING):
    ckpt.restore(1, target=jax.eval_shape(_target))  # step: int64 -> int32
  assert "could not be verified" not in caplog.text
  with caplog.at_level(logging.WARNING):
    ckpt.restore(1, target=dict(_target(), big=jnp.zeros(N, jnp.int16)))
  assert "big restored into other dtypes" in caplog.text
  ckpt.close()


@pytest.mark.slow
def test_sharded_checkpoint_restores_into_other_sharding(tmp_path):
  mesh = jax.make_mesh((8,), ("d",))
  spec = jax.sharding.PartitionSpec
  x = jax.device_put(jnp.arange(64.0).reshape(8, 8),
                     jax.sharding.NamedSharding(mesh, spec("d")))
  r = jax.device_put(jnp.arange(3), jax.sharding.NamedSharding(mesh, spec()))
  with Checkpointer(str(tmp_path / "ckpt")) as ckpt:
    ckpt.save(1, {"x": x, "r": r, "key": jax.random.key(0)})
    target = {"x": jax.device_put(jnp.zeros((8, 8)), jax.sharding.NamedSharding(
        mesh, spec(None, "d"))), "r": r, "key": jax.random.key(1)}
    got = ckpt.restore(1, target=target)
  assert got["x"].sharding == target["x"].sharding
  np.testing.assert_array_equal(got["x"], x)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8", "uint32",
                                   "bool", "complex64", "float16"])
def test_device_and_host_checksums_agree(dtype):
  x = np.random.default_rng(0).standard_normal((3, 5)) * 100
  x = np.asarray(x > 0 if dtype == "bool" else x.astype(jnp.dtype(dtype)))
  mesh = jax.make_mesh((8,), ("d",))
  sharded = jax.device_put(np.tile(x, (8, 1)), jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec("d")))
  host, device, whole = checkpoint._checksums(
      [np.tile(x, (8, 1)), jnp.asarray(np.tile(x, (8, 1))), sharded])
  assert host == device == whole
  y = np.tile(x, (8, 1)).copy()
  y.reshape(-1).view(np.uint8)[7] ^= 1  # One bit.
  swapped = np.tile(x, (8, 1))[::-1]  # Same words, other positions.
  assert len({host, *checkpoint._checksums([y, swapped])}) == 3


def test_device_and_host_checksums_agree_64_bit():
  with jax.enable_x64(True):
    x = np.array([1 + (5 << 32), -7], np.int64)
    host, device = checkpoint._checksums([x, jnp.asarray(x)])
  assert host == device


def test_check_replicas_equal():
  devices = jax.devices()[:4]
  mesh = jax.sharding.Mesh(np.array(devices), ("d",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  good = jax.device_put(jnp.arange(6.0), replicated)
  copies = [jax.device_put(jnp.arange(6.0) + (i == 2), d)
            for i, d in enumerate(devices)]
  bad = jax.make_array_from_single_device_arrays((6,), replicated, copies)
  checkpoint.check_replicas_equal({"ok": good, "n": 3})
  with pytest.raises(ReplicaMismatchError, match=r"params\.w .* differ"):
    checkpoint.check_replicas_equal({"params": {"w": bad}}, "restored state")


@pytest.mark.slow
def test_two_processes(tmp_path):
  from tests import multihost  # pylint: disable=g-import-not-at-top
  outs = multihost.run_workers("tests.training.multihost_worker", tmp_path)
  assert [list(o["statuses"]) for o in outs] == [
      ["new", "mismatch"], ["secondary", "primary refused"]]
  assert all(o["restored"] for o in outs)
  assert [str(o["damage"]) for o in outs] == ["x", "x"]
