"""Checkpoints of a simulation whose clients live in a host store.

A :class:`~sparsejax.training.Checkpointer` copies every array it saves, so a
memory-mapped client store larger than RAM (``Simulation(client_store=
"mmap")``, e.g. 10,000 clients x 1M-parameter residuals = 40 GB) cannot go
through it. :class:`ClientStoreCheckpointer` has the same interface (what
:func:`~sparsejax.training.run_logged` calls) and splits each checkpoint:
the simulation state without its clients goes through the ``Checkpointer``
(checksummed, asynchronous), the clients as a streamed, CRC-checked snapshot
of the store's files in ``<checkpointer.directory>/client_store/<step>``
(:meth:`~sparsejax.federated.client_store.HostClientStore.save_files`).
Snapshots are kept for the steps the ``Checkpointer`` keeps. Restoring loads
both and returns the state with the store's live arrays as its clients, so
``sim.restore(state)`` continues bit-exactly without a copy of the store.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from sparsejax.federated.client_store import CorruptStoreError
from sparsejax.federated.client_store import HostClientStore
from sparsejax.training.checkpoint import Checkpointer

SNAPSHOTS = "client_store"  # subdirectory of the checkpointer's directory


class ClientStoreCheckpointer:
  """A :class:`Checkpointer` of simulation states whose clients are ``store``.

  Example::

    sim = federated.Simulation(algo, clients, 30, client_store="mmap",
                               store_dir="/data/store")
    with training.Checkpointer(ckpt_dir) as inner:
      ckpt = training.ClientStoreCheckpointer(inner, sim.client_store)
      training.run_logged(rundir, ckpt, sim.state, step, num_rounds,
                          on_restore=lambda _, s: sim.restore(s), ...)
  """

  def __init__(self, checkpointer: Checkpointer, store: HostClientStore):
    if not isinstance(store, HostClientStore):
      raise TypeError(f"store must be a HostClientStore (sim.client_store of "
                      f"a host or mmap simulation), got {type(store).__name__}")
    self.checkpointer = checkpointer
    self.store = store
    self.directory = os.path.join(checkpointer.directory, SNAPSHOTS)

  def snapshot_directory(self, step: int) -> str:
    """Where the clients of checkpoint ``step`` are."""
    return os.path.join(self.directory, str(int(step)))

  def latest_step(self) -> int | None:
    return self.checkpointer.latest_step()

  def all_steps(self) -> list[int]:
    return self.checkpointer.all_steps()

  def save(self, step: int, state: Any) -> None:
    """Saves ``state`` without clients, then the store's snapshot."""
    self.checkpointer.save(step, state._replace(clients=()))
    self.store.save_files(self.snapshot_directory(step))
    keep = {str(s) for s in self.checkpointer.all_steps()} | {str(int(step))}
    for name in os.listdir(self.directory):
      if name not in keep:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def restore(self, step: int | None = None, target: Any = None) -> Any:
    """Restores checkpoint ``step`` (default: the latest) into the store.

    Raises:
      FileNotFoundError, CorruptCheckpointError: as
        :meth:`Checkpointer.restore`.
      CorruptStoreError: the step's store snapshot is missing or damaged.
    """
    if step is None:
      step = self.checkpointer.latest_step()
      if step is None:
        raise FileNotFoundError(f"no checkpoint in "
                                f"{self.checkpointer.directory}")
    restored = self.checkpointer.restore(
        step, target=None if target is None else target._replace(clients=()))
    snapshot = self.snapshot_directory(step)
    if not os.path.isdir(snapshot):
      raise CorruptStoreError(
          f"checkpoint {step} has no client-store snapshot {snapshot} (was it "
          f"saved by a plain Checkpointer, or the snapshot deleted?)")
    self.store.load_files(snapshot)
    return restored._replace(clients=self.store.tree())

  def wait(self) -> None:
    self.checkpointer.wait()

  def close(self) -> None:
    self.checkpointer.close()

  def __enter__(self) -> "ClientStoreCheckpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
