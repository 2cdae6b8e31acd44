"""Exact-resume checkpoints of arbitrary pytrees on Orbax.

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
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any


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
      state = ckpt.restore(start, target=state)
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
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, pytree: PyTree) -> None:
    """Starts saving ``pytree`` as checkpoint ``step``.

    Raises:
      ValueError (an Orbax ``StepAlreadyExistsError``): if ``step`` exists.
    """
    item = jax.tree.map(_to_savable, pytree)
    self._manager.save(int(step), args=ocp.args.StandardSave(item), force=True)

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def latest_step(self) -> int | None:
    """The newest saved step, or ``None`` if there is no checkpoint."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The saved steps, ascending."""
    return sorted(self._manager.all_steps())

  def restore(self, step: int | None = None, target: PyTree = None) -> PyTree:
    """Restores checkpoint ``step`` (default: the latest).

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
    if target is None:
      return self._manager.restore(step, args=ocp.args.StandardRestore())
    item = jax.tree.map(_to_restore_target, target)
    restored = self._manager.restore(step,
                                     args=ocp.args.StandardRestore(item))
    target_leaves, treedef = jax.tree.flatten(target)
    restored_leaves = jax.tree.leaves(restored)
    if len(restored_leaves) != len(target_leaves):
      raise ValueError(
          f"restored checkpoint has {len(restored_leaves)} leaves, target has "
          f"{len(target_leaves)}")
    return jax.tree.unflatten(
        treedef, [_coerce(r, t) for r, t in zip(restored_leaves, target_leaves)])

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
