"""Per-client state on the host: numpy arrays in RAM or memory-mapped files.

The device-resident store of :class:`~sparsejax.federated.Simulation` keeps
every client's state (error-feedback residual, compressor counters, local
optimizer state) stacked over all ``N`` clients in device memory: ``N = 10^4``
clients of a ``10^6``-parameter model need 40 GB for the residuals alone. A
:class:`HostClientStore` holds the same stacked pytree as numpy arrays shaped
``(N, ...)``, either in RAM (``np.zeros``: pages are only allocated when
written) or as ``np.memmap`` files, one per leaf, under a directory (the OS
pages them in and out). Each round the engine gathers the sampled clients'
rows (:meth:`gather`), runs the round on them on the device and writes the
accepted clients' new rows back (:meth:`scatter`).

PRNG-key leaves are held as their key data (``uint32``) and wrapped again on
the way to the device, so the rows a round sees are exactly those of the
device store.
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

STORES = ("device", "host", "mmap")


def _is_key(x) -> bool:
  return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


class HostClientStore:
  """The ``(N, ...)`` leaves of all clients' states as numpy arrays."""

  def __init__(self, client: Any, num_clients: int,
               directory: str | None = None):
    """Allocates the store and fills it with ``client``'s state.

    Args:
      client: one client's initial state (a pytree of arrays); every client
        starts from it, except that PRNG-key leaves are folded with the
        client id ``i`` (``jax.random.fold_in(key, i)``, as the device store
        does).
      num_clients: ``N``, at least 1.
      directory: ``None``: arrays in RAM; else one memory-mapped file per leaf
        (``<index>_<leaf path>.bin``) in this directory, created if missing;
        existing files of the same names are overwritten.

    Raises:
      ValueError: ``num_clients`` < 1.
    """
    if num_clients < 1:
      raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    self.num_clients = num_clients
    self.directory = directory
    named, self._treedef = jax.tree_util.tree_flatten_with_path(client)
    self._impls = [jax.random.key_impl(x) if _is_key(x) else None
                   for _, x in named]
    if directory is not None:
      os.makedirs(directory, exist_ok=True)
    ids = jnp.arange(num_clients)
    self._leaves = []
    for index, (path, x) in enumerate(named):
      if _is_key(x):  # one key per client: already (N, ...)
        x = np.asarray(jax.random.key_data(
            jax.vmap(lambda i, k=x: jax.random.fold_in(k, i))(ids)))
        shape = x.shape
      else:
        x = np.asarray(x)
        shape = (num_clients,) + x.shape
      name = re.sub(r"[^A-Za-z0-9]+", "_", jax.tree_util.keystr(path))
      array = self._allocate(f"{index:03d}{name}.bin", x.dtype, shape)
      if np.any(x):   # the arrays start zero: only non-zero values are written
        array[...] = x
      self._leaves.append(array)

  def _allocate(self, filename: str, dtype, shape) -> np.ndarray:
    if self.directory is None:
      return np.zeros(shape, dtype)
    return np.memmap(os.path.join(self.directory, filename), dtype=dtype,
                     mode="w+", shape=shape)

  @property
  def nbytes(self) -> int:
    """Bytes of all leaves (the store's logical size)."""
    return sum(a.nbytes for a in self._leaves)

  def files(self) -> list[str]:
    """The memory-mapped files (empty for a store in RAM)."""
    return [a.filename for a in self._leaves if isinstance(a, np.memmap)]

  def gather(self, ids: np.ndarray) -> list[np.ndarray]:
    """Copies of rows ``ids`` of every leaf (ids >= ``N`` read row ``N-1``)."""
    return [np.take(a, ids, axis=0, mode="clip") for a in self._leaves]

  def scatter(self, ids: np.ndarray, rows: list[np.ndarray]) -> None:
    """Writes ``rows`` (as from :meth:`from_device`) to rows ``ids``."""
    for a, r in zip(self._leaves, rows):
      a[ids] = r

  def to_device(self, rows: list[np.ndarray], sharding=None) -> Any:
    """Rows from :meth:`gather` as the client-state pytree on the device."""
    leaves = [jax.device_put(r, sharding) for r in rows]
    leaves = [x if impl is None else jax.random.wrap_key_data(x, impl=impl)
              for x, impl in zip(leaves, self._impls)]
    return jax.tree.unflatten(self._treedef, leaves)

  def from_device(self, clients: Any) -> list[np.ndarray]:
    """A client-state pytree from the device as rows for :meth:`scatter`."""
    leaves = [jax.random.key_data(x) if _is_key(x) else x
              for x in jax.tree.leaves(clients)]
    return [np.asarray(x) for x in jax.device_get(leaves)]

  def flush(self) -> None:
    """Writes the memory-mapped files' dirty pages to disk."""
    for a in self._leaves:
      if isinstance(a, np.memmap):
        a.flush()

  def tree(self) -> Any:
    """All clients' states: the live arrays (keys wrapped, on the device).

    The numpy leaves are the store itself, not copies: the next round writes
    them (a :class:`~sparsejax.training.Checkpointer` copies host arrays
    before its asynchronous write).
    """
    leaves = [a if impl is None else
              jax.random.wrap_key_data(jnp.asarray(a), impl=impl)
              for a, impl in zip(self._leaves, self._impls)]
    return jax.tree.unflatten(self._treedef, leaves)

  def load(self, clients: Any) -> None:
    """Overwrites the store with ``clients`` (e.g. a restored checkpoint).

    Raises:
      ValueError: ``clients`` has another structure, or a leaf another shape
        or dtype than the store's (the leaf is named).
    """
    named, treedef = jax.tree_util.tree_flatten_with_path(clients)
    if treedef != self._treedef:
      raise ValueError(f"clients has structure {treedef}, the store "
                       f"{self._treedef}")
    for (path, x), a in zip(named, self._leaves):
      x = np.asarray(jax.random.key_data(x) if _is_key(x) else x)
      if x.shape != a.shape or x.dtype != a.dtype:
        raise ValueError(
            f"clients{jax.tree_util.keystr(path)} is {x.dtype}{list(x.shape)},"
            f" the store holds {a.dtype}{list(a.shape)}")
      a[...] = x
    self.flush()

