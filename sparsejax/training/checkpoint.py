"""Exact-resume checkpoints of arbitrary pytrees on Orbax, verified on restore.

:class:`Checkpointer` wraps :class:`orbax.checkpoint.CheckpointManager` with
``StandardSave``/``StandardRestore``. A checkpoint holds one pytree, e.g.::

  {"params": params, "opt_state": opt_state, "rng": key, "step": 123}

Restoring against a ``target`` of the same structure returns that structure
exactly: the target's container types (NamedTuples such as optax states), leaf
dtypes (bf16, uint32, int32, typed PRNG keys) and bitwise-equal values.

Typed PRNG keys (``jax.random.key``) are checkpointed by Orbax natively
(orbax-checkpoint >= 0.12 stores the key data and the key implementation;
``tests/training`` pins this), so they need no conversion here. Leaf types
Orbax does not accept are normalised: NumPy scalars (``np.float32(1.0)``) are
saved as 0-d arrays, and on restore every leaf is coerced back to the type of
the corresponding target leaf (Python ``int``/``float``/``bool``, NumPy scalar,
NumPy array, or JAX array).

Saves are asynchronous: :meth:`Checkpointer.save` returns once the arrays are
copied off the device (the buffers may then be donated or overwritten); call
:meth:`Checkpointer.wait` (or :meth:`close`) before reading the files or
exiting.

Integrity. Orbax does not checksum array data, so a damaged file can restore
as garbage. Each step directory therefore holds a second Orbax item,
``checksums`` (JSON, committed atomically with the arrays), with the dtype,
shape and a 64-bit checksum of every leaf, named by its dotted tree path
(``opt_state.0.mu.dense.w``, Orbax's own naming). The checksum is computed
where the array lives (a jitted reduction on its devices, a NumPy twin for
host leaves), so sharded and multi-process arrays are never gathered, and it
depends only on the logical values: a restore into another sharding verifies.
:meth:`Checkpointer.restore` checks the step's JSON metadata files, every
leaf's checksum and, for replicated ``jax.Array`` leaves, that all local copies
are equal; it raises :class:`CorruptCheckpointError` (the file or entry named,
and the newest earlier step that verifies) and never falls back silently:
:meth:`Checkpointer.restore_latest_good` is the explicit fallback. Checkpoints
written before checksums were recorded restore with a logged warning.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from absl import logging
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any

CHECKSUM_ITEM = "checksums"  # the Orbax item (subdirectory) of the checksums
_STATE_ITEM = "default"  # Orbax's name for the single item of older versions
_CHECKSUM_FORMAT = 1
# Orbax metadata files that are JSON (by name, and every file in these dirs).
_JSON_FILES = frozenset(
    ("_CHECKPOINT_METADATA", "_METADATA", "_sharding", "metadata"))
_JSON_DIRS = frozenset(("array_metadatas",))
_GOLDEN = np.uint32(0x9E3779B9)
_MIX1 = np.uint32(0x85EBCA6B)
_MIX2 = np.uint32(0xC2B2AE35)


class CorruptCheckpointError(ValueError):
  """A checkpoint's files are damaged: unreadable, or failing a checksum.

  Attributes:
    path: the damaged file, or the step directory.
    step: the damaged checkpoint step.
    entry: the damaged tree entry (dotted path), if one is known.
    good_step: the newest earlier step that verifies, or ``None``.
  """

  def __init__(self, message: str, *, path: str, step: int,
               entry: str | None = None, good_step: int | None = None):
    super().__init__(message)
    self.path = path
    self.step = step
    self.entry = entry
    self.good_step = good_step


class ReplicaMismatchError(ValueError):
  """Copies of a replicated array differ between devices."""


class _Damage(Exception):
  """Internal: what is damaged in one step (turned into the public error)."""

  def __init__(self, path: str, detail: str, entry: str | None = None):
    super().__init__(detail)
    self.path = path
    self.detail = detail
    self.entry = entry


def _entry_name(path) -> str:
  """Dotted name of a tree path, as Orbax names the arrays it stores."""
  return ".".join(
      str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
      for k in path)


def _named_leaves(tree: PyTree) -> list[tuple[str, Any]]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(_entry_name(p), x) for p, x in leaves]


def _dtype_shape(x: Any) -> tuple[str, list[int]]:
  if not isinstance(x, jax.Array):
    x = np.asarray(x)
  return str(x.dtype), list(x.shape)


def _is_key(x: Any) -> bool:
  return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _mix(words, pos, xp) -> tuple[Any, Any]:
  """Two wrapping uint32 sums over ``words`` at flat positions ``pos``.

  The first, ``sum(w * (2 pos + 1))``, changes for any change of one word (odd
  weights are invertible mod 2**32); the second sums a Murmur3-mixed hash of
  ``w ^ pos * golden`` and catches multi-word changes and permutations. Both
  are independent of summation order, hence of the sharding.
  """
  c1 = xp.sum(words * (pos * xp.uint32(2) + xp.uint32(1)), dtype=xp.uint32)
  h = words ^ (pos * _GOLDEN)
  h = (h ^ (h >> 16)) * _MIX1
  h = (h ^ (h >> 13)) * _MIX2
  h = h ^ (h >> 16)
  return c1, xp.sum(h, dtype=xp.uint32)


def _plain_numeric(x, xp):
  """Bools as uint8, complex as (re, im) pairs, sub-byte types widened."""
  if x.dtype == bool:
    return x.astype(np.uint8)
  if jnp.issubdtype(x.dtype, jnp.complexfloating):
    return xp.stack([x.real, x.imag], -1)
  if jax.dtypes.itemsize_bits(x.dtype) < 8:
    return x.astype(np.float32 if jnp.issubdtype(x.dtype, jnp.floating)
                    else np.int32)
  return x


def _device_checksum(x: jax.Array):
  """``_mix`` of the bits of ``x``, traced (runs where ``x`` lives)."""
  if _is_key(x):
    x = jax.random.key_data(x)
  x = _plain_numeric(x, jnp)
  bits = jax.dtypes.itemsize_bits(x.dtype)
  if bits == 64:  # Low word first, as a little-endian host view.
    words = lax.bitcast_convert_type(x, jnp.uint32)
  else:
    unsigned = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}[bits]
    words = lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)
  # C-order flat positions, without reshaping (a reshape could reshard).
  pos = jnp.zeros(words.shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(words.ndim)):
    pos = pos + lax.broadcasted_iota(jnp.uint32, words.shape, axis) * (
        jnp.uint32(stride % 2**32))
    stride *= words.shape[axis]
  return jnp.stack(_mix(words, pos, jnp))


def _host_checksum(x: Any) -> tuple[int, int]:
  """The NumPy twin of :func:`_device_checksum` for host leaves."""
  x = np.asarray(x)
  if x.dtype.kind in "US":
    x = np.frombuffer(str(x).encode(), np.uint8)
  x = np.ascontiguousarray(_plain_numeric(x, np)).reshape(-1)
  bits = jax.dtypes.itemsize_bits(x.dtype)
  if bits == 64:
    words = x.view("<u4")
  else:
    unsigned = {8: np.uint8, 16: np.uint16, 32: np.uint32}[bits]
    words = x.view(unsigned).astype(np.uint32)
  return _mix(words, np.arange(words.size, dtype=np.uint32), np)


@functools.lru_cache(maxsize=None)
def _device_checksum_fn(devices: tuple[Any, ...]):
  """One jitted checksum of a list of arrays on ``devices``, replicated out."""
  mesh = jax.sharding.Mesh(np.array(devices), ("d",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return jax.jit(lambda xs: jnp.stack([_device_checksum(x) for x in xs]),
                 out_shardings=replicated)


def _checksums(leaves: list[Any]) -> list[str]:
  """Hex checksums of leaves (``jax.Array``s on their devices, others on host).

  Every process must call this for arrays spanning processes (a collective).
  """
  out = [None] * len(leaves)
  groups = {}
  for i, x in enumerate(leaves):
    if isinstance(x, jax.Array):
      devices = tuple(sorted(x.sharding.device_set, key=lambda d: d.id))
      groups.setdefault(devices, []).append(i)
    else:
      out[i] = "%08x%08x" % tuple(int(c) for c in _host_checksum(x))
  for devices, idx in groups.items():
    sums = _device_checksum_fn(devices)([leaves[i] for i in idx])
    for i, (c1, c2) in zip(idx, np.asarray(sums.addressable_data(0))):
      out[i] = "%08x%08x" % (int(c1), int(c2))
  return out


def _tree_checksums(tree: PyTree) -> dict[str, dict[str, Any]]:
  """``{entry name: {"dtype", "shape", "checksum"}}`` for every leaf."""
  named = _named_leaves(tree)
  sums = _checksums([x for _, x in named])
  entries = {}
  for (name, x), checksum in zip(named, sums):
    dtype, shape = _dtype_shape(x)
    entries[name] = {"dtype": dtype, "shape": shape, "checksum": checksum}
  return entries


def _index_key(index) -> tuple:
  return tuple((s.start, s.stop, s.step) for s in index)


def check_replicas_equal(tree: PyTree, what: str = "tree") -> None:
  """Raises if local copies of a replicated ``jax.Array`` leaf differ.

  For each leaf, the addressable shards holding the same slice (all of them
  for a fully replicated array) are copied to the host one at a time and
  compared bitwise. Leaves that are not ``jax.Array`` or live on one device
  are skipped; copies on other processes are not compared.

  Args:
    tree: a pytree, e.g. a freshly restored checkpoint.
    what: how the tree is named in the error message.

  Raises:
    ReplicaMismatchError: naming the leaf and the two devices.
  """
  for name, x in _named_leaves(tree):
    if not isinstance(x, jax.Array) or len(x.sharding.device_set) < 2:
      continue
    if _is_key(x):
      x = jax.random.key_data(x)
    groups = {}
    for shard in x.addressable_shards:
      groups.setdefault(_index_key(shard.index), []).append(shard)
    for shards in groups.values():
      if len(shards) < 2:
        continue
      ref = np.asarray(shards[0].data).reshape(-1).view(np.uint8)
      for shard in shards[1:]:
        if not np.array_equal(ref, np.asarray(shard.data).reshape(-1).view(
            np.uint8)):
          raise ReplicaMismatchError(
              f"{what}: leaf {name} is replicated, but its copies on "
              f"{shards[0].device} and {shard.device} differ; restore again "
              f"and, if it persists, check the devices")


def _check_json_files(step_dir: str) -> None:
  """Raises :class:`_Damage` naming the first Orbax JSON file that is damaged.

  Orbax raises a bare ``JSONDecodeError`` for some and skips others silently.
  """
  for root, dirs, files in os.walk(step_dir):
    dirs[:] = sorted(d for d in dirs if d != "d" and not d.startswith("ocdbt."))
    for f in sorted(files):
      if f in _JSON_FILES or os.path.basename(root) in _JSON_DIRS:
        path = os.path.join(root, f)
        try:
          with open(path, encoding="utf-8") as fh:
            json.load(fh)
        except (OSError, ValueError) as e:
          raise _Damage(path, f"metadata file {path} is damaged: {e}") from e


def _verify(step_dir: str, restored: PyTree, recorded: Any) -> None:
  """Checks every restored leaf against the checksums saved with it."""
  path = os.path.join(step_dir, CHECKSUM_ITEM)
  entries = recorded.get("entries") if isinstance(recorded, dict) else None
  if (not isinstance(entries, dict)
      or recorded.get("format") != _CHECKSUM_FORMAT):
    raise _Damage(path, f"the checksums in {path} have an unknown format")
  named = _named_leaves(restored)
  for name in sorted({n for n, _ in named} ^ set(entries)):
    where = "missing from" if name not in entries else "extra in"
    raise _Damage(path, f"entry {name} is {where} the checksums in {path}",
                  entry=name)
  checked, unverified = [], []
  for name, x in named:
    saved = entries[name]
    dtype, shape = _dtype_shape(x)
    if shape != saved["shape"]:
      raise _Damage(step_dir, f"entry {name} has shape {shape}, saved with "
                    f"{saved['shape']}", entry=name)
    if dtype == saved["dtype"]:
      checked.append((name, x, False))
      continue
    try:  # Restored into another dtype: verify if the cast is lossless.
      checked.append((name, np.asarray(x).astype(jnp.dtype(saved["dtype"])),
                      True))
    except (TypeError, ValueError, RuntimeError):
      unverified.append(name)
  sums = _checksums([x for _, x, _ in checked])
  for (name, _, cast), checksum in zip(checked, sums):
    if checksum == entries[name]["checksum"]:
      continue
    if cast:
      unverified.append(name)
      continue
    raise _Damage(step_dir, f"entry {name} fails its checksum (saved "
                  f"{entries[name]['checksum']}, restored {checksum}): its "
                  f"array data in {step_dir} is damaged", entry=name)
  if unverified:
    logging.warning(
        "checkpoint %s: %s restored into other dtypes than saved; their "
        "values changed in the cast and could not be verified", step_dir,
        ", ".join(unverified))


def _to_savable(x: Any) -> Any:
  if isinstance(x, np.generic):
    return np.asarray(x)
  return x


def _to_restore_target(x: Any) -> Any:
  if isinstance(x, np.generic):
    return np.asarray(x)
  return x


def _coerce(restored: Any, like: Any) -> Any:
  """Converts a restored leaf to the type of the target leaf ``like``."""
  if isinstance(like, bool):
    return bool(np.asarray(restored))
  if isinstance(like, int):
    return int(np.asarray(restored))
  if isinstance(like, float):
    return float(np.asarray(restored))
  if isinstance(like, np.generic):
    return like.dtype.type(np.asarray(restored))
  if isinstance(like, np.ndarray):
    return np.asarray(restored, dtype=like.dtype)
  return restored


class Checkpointer:
  """Keeps the last ``max_to_keep`` checkpoints of a pytree in ``directory``.

  Example::

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    start = ckpt.latest_step()
    if start is not None:
      state = ckpt.restore(start, target=state)  # verified, or raises
    ...
    ckpt.save(step, state)
    ...
    ckpt.close()  # waits for pending saves

  Only the primary process writes in multi-host runs (Orbax coordinates this);
  every process must call :meth:`save` and :meth:`restore`.
  """

  def __init__(self, directory: str, max_to_keep: int | None = 2, *,
               async_save: bool = True):
    """Creates the manager; the directory is created if missing.

    Args:
      directory: checkpoint root; one subdirectory per step.
      max_to_keep: number of most recent checkpoints kept (``None``: all).
      async_save: write checkpoint files in a background thread.
    """
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=True,
        enable_async_checkpointing=async_save,
    )
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=(_STATE_ITEM, CHECKSUM_ITEM),
        options=options)

  def save(self, step: int, pytree: PyTree) -> None:
    """Starts saving ``pytree`` as checkpoint ``step``, with its checksums.

    The checksums are computed before this returns (one reduction over each
    array, on its devices); the files are written in the background.

    Raises:
      ValueError (an Orbax ``StepAlreadyExistsError``): if ``step`` exists.
    """
    item = jax.tree.map(_to_savable, pytree)
    checksums = {"format": _CHECKSUM_FORMAT, "entries": _tree_checksums(item)}
    self._manager.save(int(step), args=ocp.args.Composite(**{
        _STATE_ITEM: ocp.args.StandardSave(item),
        CHECKSUM_ITEM: ocp.args.JsonSave(checksums),
    }), force=True)

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def latest_step(self) -> int | None:
    """The newest saved step, or ``None`` if there is no checkpoint."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The saved steps, ascending."""
    return sorted(self._manager.all_steps())

  def step_directory(self, step: int) -> str:
    """The directory of checkpoint ``step``."""
    return os.path.join(self.directory, str(int(step)))

  def restore(self, step: int | None = None, target: PyTree = None) -> PyTree:
    """Restores checkpoint ``step`` (default: the latest) and verifies it.

    Args:
      step: the step to restore; ``None`` for :meth:`latest_step`.
      target: a pytree like the saved one (concrete arrays, or
        ``jax.ShapeDtypeStruct`` leaves, e.g. from ``jax.eval_shape``). The
        result has its structure, container types, dtypes and shardings. With
        ``target=None`` the stored structure is returned as Orbax rebuilds it
        (dicts/lists instead of NamedTuples; arrays as ``jax.Array``).

    Returns:
      The restored pytree.

    Raises:
      FileNotFoundError: if there is no checkpoint (or no checkpoint ``step``).
      CorruptCheckpointError: if a metadata file is damaged, the arrays cannot
        be read, or an entry fails its checksum. The message names the file
        or entry and the newest earlier step that verifies; nothing falls
        back silently (see :meth:`restore_latest_good`).
      ReplicaMismatchError: if copies of a replicated array differ.
      ValueError: if the checkpoint is intact but does not fit ``target``.
    """
    self.wait()
    if step is None:
      step = self.latest_step()
      if step is None:
        raise FileNotFoundError(f"no checkpoint in {self.directory}")
    step = int(step)
    if step not in self._manager.all_steps():
      raise FileNotFoundError(
          f"no checkpoint for step {step} in {self.directory}; "
          f"available: {self.all_steps()}")
    try:
      return self._restore_verified(step, target)
    except _Damage as damage:
      good = self._newest_good_step(step, target)
      raise self._corrupt_error(step, damage, good) from damage.__cause__

  def restore_latest_good(self, target: PyTree = None) -> tuple[int, PyTree]:
    """Restores the newest checkpoint that verifies; sets damaged ones aside.

    The explicit fallback after a :class:`CorruptCheckpointError`. Steps are
    tried newest first; each damaged one is logged and, once a good step is
    found, renamed to ``<directory>/damaged-<step>`` (Orbax ignores it), so
    that the run resumes after the good step and later saves do not collide.

    Args:
      target: as for :meth:`restore`.

    Returns:
      ``(step, restored pytree)``.

    Raises:
      FileNotFoundError: if there is no checkpoint.
      CorruptCheckpointError: if no checkpoint verifies (the newest named).
    """
    self.wait()
    steps = self.all_steps()
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    damaged = []
    for step in reversed(steps):
      try:
        restored = self._restore_verified(step, target)
      except _Damage as damage:
        logging.warning("checkpoint step %d in %s is damaged: %s", step,
                        self.directory, damage.detail)
        damaged.append((step, damage))
        continue
      self._set_aside([s for s, _ in damaged])
      return step, restored
    step, damage = damaged[0]
    raise self._corrupt_error(step, damage, None) from damage.__cause__

  def _restore_verified(self, step: int, target: PyTree) -> PyTree:
    """Restores ``step`` and checks it; raises :class:`_Damage` if damaged."""
    step_dir = self.step_directory(step)
    _check_json_files(step_dir)
    has_checksums = os.path.isdir(os.path.join(step_dir, CHECKSUM_ITEM))
    item = None if target is None else jax.tree.map(_to_restore_target, target)
    args = {_STATE_ITEM: ocp.args.StandardRestore(item)}
    if has_checksums:
      args[CHECKSUM_ITEM] = ocp.args.JsonRestore()
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # pylint: disable=broad-except
      # Orbax raises a bare Exception for TensorStore read errors. Without a
      # target only the files can be at fault; with one, a restore without
      # it tells damaged files (raises _Damage) from a mismatched target.
      if target is None:
        raise _Damage(step_dir, f"its files cannot be read: {e}") from e
      self._restore_verified(step, None)
      raise ValueError(
          f"checkpoint {step_dir} is intact but cannot be restored into the "
          f"given target (do its structure, shapes and shardings match the "
          f"saved tree?): {e}") from e
    restored = out[_STATE_ITEM]
    if has_checksums:
      _verify(step_dir, restored, out[CHECKSUM_ITEM])
    else:
      logging.warning(
          "checkpoint %s has no checksums (written by an older version): "
          "restored without verifying its data", step_dir)
    check_replicas_equal(restored, f"checkpoint {step_dir}")
    if target is None:
      return restored
    target_leaves, treedef = jax.tree.flatten(target)
    restored_leaves = jax.tree.leaves(restored)
    if len(restored_leaves) != len(target_leaves):
      raise ValueError(
          f"restored checkpoint {step_dir} has {len(restored_leaves)} leaves, "
          f"target has {len(target_leaves)}")
    return jax.tree.unflatten(treedef, [
        _coerce(r, t) for r, t in zip(restored_leaves, target_leaves)])

  def _newest_good_step(self, before: int, target: PyTree) -> int | None:
    """The newest step below ``before`` that restores into ``target``."""
    for step in reversed(self.all_steps()):
      if step >= before:
        continue
      try:
        self._restore_verified(step, target)
      except (_Damage, ValueError):
        continue
      return step
    return None

  def _corrupt_error(self, step: int, damage: _Damage,
                     good: int | None) -> CorruptCheckpointError:
    step_dir = self.step_directory(step)
    if good is None:
      hint = (f"No earlier checkpoint in {self.directory} verifies: delete the "
              f"damaged step directories to start over.")
    else:
      hint = (f"Step {good} verifies: resume from it with "
              f"Checkpointer.restore_latest_good(target) (it moves damaged "
              f"newer steps to {self.directory}/damaged-<step>), or delete "
              f"{step_dir}.")
    return CorruptCheckpointError(
        f"checkpoint step {step} in {self.directory} is damaged: "
        f"{damage.detail}\n{hint}", path=damage.path, step=step,
        entry=damage.entry, good_step=good)

  def _set_aside(self, steps: list[int]) -> None:
    """Renames damaged step directories to ``damaged-<step>[-n]``."""
    if not steps:
      return
    if jax.process_index() == 0:
      for step in steps:
        src = self.step_directory(step)
        dst = base = os.path.join(self.directory, f"damaged-{step}")
        n = 0
        while os.path.exists(dst):
          n += 1
          dst = f"{base}-{n}"
        os.rename(src, dst)
        logging.warning("moved damaged checkpoint %s to %s", src, dst)
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes("sparsejax_checkpoint_set_aside")
    self._manager.reload()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
