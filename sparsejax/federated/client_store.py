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

Checkpoints of a store larger than RAM: :meth:`HostClientStore.save_files`
streams every leaf, a block of rows at a time, into a snapshot directory with
a manifest of dtypes, shapes and CRC-32 checksums (written under a temporary
name and renamed, so a crash leaves no half snapshot);
:meth:`HostClientStore.load_files` checks the manifest against the store and
every checksum while it copies back, and raises :class:`CorruptStoreError`
on any damage. :class:`sparsejax.training.ClientStoreCheckpointer` pairs
these snapshots with the rest of a simulation's state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any
import zlib

import jax
import jax.numpy as jnp
import numpy as np

STORES = ("device", "host", "mmap")
MANIFEST = "manifest.json"  # of a snapshot directory (save_files)
_SNAPSHOT_FORMAT = 1
_BLOCK_BYTES = 64 << 20  # rows streamed at a time by save_files/load_files


class CorruptStoreError(ValueError):
  """A store snapshot is missing, damaged or does not fit the store."""


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

  def _names(self) -> list[str]:
    return [f"{i:03d}" for i in range(len(self._leaves))]

  def _blocks(self, a: np.ndarray):
    """Row ranges of ``a`` of about ``_BLOCK_BYTES`` each."""
    rows = max(1, _BLOCK_BYTES // max(1, a[:1].nbytes))
    return [slice(i, i + rows) for i in range(0, a.shape[0], rows)]

  def save_files(self, directory: str) -> None:
    """Writes a snapshot of every leaf to ``directory`` (replaced if there).

    Each leaf becomes ``<index>.bin`` (its raw bytes, C order) and
    ``manifest.json`` records its dtype, shape and CRC-32. Rows are streamed
    in blocks of about 64 MiB, so a store larger than RAM can be saved. The
    snapshot is written to ``<directory>.partial`` and renamed when complete.
    """
    partial = directory.rstrip(os.sep) + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    entries = []
    for name, a in zip(self._names(), self._leaves):
      crc = 0
      with open(os.path.join(partial, name + ".bin"), "wb") as f:
        for rows in self._blocks(a):
          block = _bytes_of(np.ascontiguousarray(a[rows]))
          f.write(block)
          crc = zlib.crc32(block, crc)
      entries.append({"file": name + ".bin", "dtype": a.dtype.str,
                      "shape": list(a.shape), "crc32": crc})
    with open(os.path.join(partial, MANIFEST), "w") as f:
      json.dump({"format": _SNAPSHOT_FORMAT, "entries": entries}, f)
    if os.path.exists(directory):
      shutil.rmtree(directory)
    os.replace(partial, directory)

  def load_files(self, directory: str) -> None:
    """Overwrites the store with the snapshot in ``directory`` (save_files).

    Raises:
      CorruptStoreError: the snapshot or its manifest is missing or
        unreadable, its leaves do not match the store's (number, dtype or
        shape: the leaf is named), a file has the wrong size, or a checksum
        fails (the store then holds damaged rows: restore another snapshot
        before running on).
    """
    path = os.path.join(directory, MANIFEST)
    try:
      with open(path) as f:
        manifest = json.load(f)
      entries = manifest["entries"]
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise CorruptStoreError(
          f"client-store snapshot {directory}: cannot read {MANIFEST} "
          f"({e}); restore an earlier checkpoint or start afresh") from e
    if len(entries) != len(self._leaves):
      raise CorruptStoreError(
          f"client-store snapshot {directory} has {len(entries)} leaves, the "
          f"store {len(self._leaves)}: it was saved by another algorithm")
    for entry, a in zip(entries, self._leaves):
      if (entry.get("dtype") != a.dtype.str
          or entry.get("shape") != list(a.shape)):
        raise CorruptStoreError(
            f"client-store snapshot {directory}: {entry.get('file')} is "
            f"{entry.get('dtype')}{entry.get('shape')}, the store's leaf "
            f"{a.dtype.str}{list(a.shape)} (another N or model?)")
      file = os.path.join(directory, entry["file"])
      if not os.path.isfile(file) or os.path.getsize(file) != a.nbytes:
        raise CorruptStoreError(
            f"client-store snapshot {file} is missing or has "
            f"{os.path.getsize(file) if os.path.isfile(file) else 0} bytes, "
            f"expected {a.nbytes}")
    for entry, a in zip(entries, self._leaves):
      file = os.path.join(directory, entry["file"])
      crc = 0
      with open(file, "rb") as f:
        for rows in self._blocks(a):
          block = np.empty_like(a[rows])
          f.readinto(_bytes_of(block))
          crc = zlib.crc32(_bytes_of(block), crc)
          a[rows] = block
      if crc != entry["crc32"]:
        raise CorruptStoreError(
            f"client-store snapshot {file} fails its CRC-32 check (damaged "
            f"on disk); the store now holds damaged rows: restore an earlier "
            f"checkpoint")
    self.flush()

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
      if _same_buffer(x, a):  # the store's own array (from tree())
        continue
      if x.shape != a.shape or x.dtype != a.dtype:
        raise ValueError(
            f"clients{jax.tree_util.keystr(path)} is {x.dtype}{list(x.shape)},"
            f" the store holds {a.dtype}{list(a.shape)}")
      a[...] = x
    self.flush()


def _bytes_of(x: np.ndarray) -> memoryview:
  """The bytes of a C-contiguous array, as a flat (writable) view."""
  return memoryview(x).cast("B")


def _same_buffer(x: np.ndarray, a: np.ndarray) -> bool:
  """Whether ``x`` views exactly the memory of ``a``."""
  return (x.shape == a.shape and x.dtype == a.dtype and x.strides == a.strides
          and x.__array_interface__["data"][0]
          == a.__array_interface__["data"][0])
