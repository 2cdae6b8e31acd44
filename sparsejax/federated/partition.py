"""Splitting a labelled dataset into federated clients.

Every partitioner is a pure function of its arguments (``seed`` included) that
returns one int array of example indices per client; :class:`ClientData`
holds those arrays next to the data. Unless stated otherwise every example is
assigned to exactly one client.

* :func:`iid_partition`: a random permutation cut into near-equal parts.
* :func:`dirichlet_partition`: per class, proportions over clients drawn from
  ``Dir(alpha)`` (Hsu, Qi, Brown 2019, https://arxiv.org/abs/1909.06335);
  small ``alpha`` gives few dominant classes per client.
* :func:`shard_partition`: pathological non-IID with exactly ``c`` classes per
  client (the label-based form of McMahan et al.'s sort-and-shard split).
* :func:`group_partition`: natural clients from a group id per example (the
  FEMNIST writer).

Around a partition: :func:`split_off` draws a seeded subset of a dataset
before it is partitioned (the market's public reference set, or a smaller
run), and :func:`holdout_split` keeps part of every client's data as its
personalised test set.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SCHEMES = ("iid", "dirichlet", "shards", "groups")


class ClientData:
  """A dataset and the example indices of each of its ``N`` clients.

  Attributes:
    x: inputs of all examples, host array ``(num_examples, ...)``.
    y: int labels ``(num_examples,)``.
    client_indices: tuple of ``N`` int arrays indexing ``x``/``y``.
    num_classes: number of label values (for :meth:`summary`).
  """

  def __init__(self, x, y, client_indices: Sequence[np.ndarray],
               num_classes: int | None = None):
    self.x = np.asarray(x)
    self.y = np.asarray(y)
    if self.x.shape[0] != self.y.shape[0]:
      raise ValueError(f"x has {self.x.shape[0]} examples, y {self.y.shape[0]}")
    self.client_indices = tuple(np.asarray(i, np.int64) for i in client_indices)
    if not self.client_indices:
      raise ValueError("need at least one client")
    for c, idx in enumerate(self.client_indices):
      if idx.ndim != 1 or idx.size == 0:
        raise ValueError(f"client {c} has no examples")
      if idx.min() < 0 or idx.max() >= self.y.shape[0]:
        raise ValueError(f"client {c} has indices out of range")
    self.num_classes = (int(self.y.max()) + 1 if num_classes is None
                        else int(num_classes))

  @property
  def num_clients(self) -> int:
    return len(self.client_indices)

  @property
  def sizes(self) -> np.ndarray:
    """``n_i``, the number of examples of each client, ``(N,)`` int64."""
    return np.array([i.size for i in self.client_indices], np.int64)

  def label_histograms(self) -> np.ndarray:
    """``(N, num_classes)`` counts of each label on each client."""
    return np.stack([np.bincount(self.y[i], minlength=self.num_classes)
                     for i in self.client_indices])

  def padded_indices(self) -> np.ndarray:
    """``(N, max n_i)`` int32 indices; row ``i`` is valid up to ``n_i``.

    Padding repeats the client's last index; the simulation never reads
    positions at or beyond ``n_i``.
    """
    m = int(self.sizes.max())
    return np.stack([np.pad(i, (0, m - i.size), mode="edge")
                     for i in self.client_indices]).astype(np.int32)

  def summary(self) -> dict[str, np.ndarray | float]:
    """Per-client sizes and label histograms, plus two heterogeneity scores.

    Returns:
      ``sizes`` ``(N,)``; ``label_histograms`` ``(N, K)``;
      ``classes_per_client`` ``(N,)`` (labels present); ``mean_tv_distance``:
      mean total-variation distance between each client's label distribution
      and the global one (0 for a perfectly IID split).
    """
    hist = self.label_histograms()
    p = hist / hist.sum(axis=1, keepdims=True)
    q = hist.sum(axis=0) / hist.sum()
    return {
        "sizes": self.sizes,
        "label_histograms": hist,
        "classes_per_client": (hist > 0).sum(axis=1),
        "mean_tv_distance": float(0.5 * np.abs(p - q).sum(axis=1).mean()),
    }


def _check_num_clients(num_clients: int, num_examples: int) -> None:
  if not 1 <= num_clients <= num_examples:
    raise ValueError(f"num_clients must be in [1, {num_examples}], "
                     f"got {num_clients}")


def iid_partition(labels, num_clients: int, *, seed: int = 0) -> list[np.ndarray]:
  """A seeded permutation cut into ``num_clients`` parts of near-equal size."""
  n = np.asarray(labels).shape[0]
  _check_num_clients(num_clients, n)
  perm = np.random.default_rng(seed).permutation(n)
  return [np.sort(p) for p in np.array_split(perm, num_clients)]


def dirichlet_partition(labels, num_clients: int, *, alpha: float,
                        seed: int = 0, min_size: int = 1,
                        max_tries: int = 1000) -> list[np.ndarray]:
  """Label-skewed split: class ``k`` goes to clients in ``Dir(alpha)`` shares.

  For each class, proportions ``p ~ Dir(alpha * 1_N)`` split its (shuffled)
  examples among the clients. The whole draw is repeated until every client
  has at least ``min_size`` examples (the usual rejection step).

  Raises:
    ValueError: ``alpha <= 0``, ``min_size < 1`` (a client without data), or
      no draw met ``min_size`` in ``max_tries``.
  """
  labels = np.asarray(labels)
  _check_num_clients(num_clients, labels.shape[0])
  if not alpha > 0:
    raise ValueError(f"alpha must be > 0, got {alpha}")
  if min_size < 1:
    raise ValueError(f"min_size must be >= 1 (every client needs data), got "
                     f"{min_size}")
  if min_size * num_clients > labels.shape[0]:
    raise ValueError(f"cannot give {num_clients} clients {min_size} examples "
                     f"each out of {labels.shape[0]}")
  rng = np.random.default_rng(seed)
  classes = np.unique(labels)
  for _ in range(max_tries):
    parts = [[] for _ in range(num_clients)]
    for k in classes:
      idx = rng.permutation(np.flatnonzero(labels == k))
      p = rng.dirichlet(np.full(num_clients, alpha))
      cuts = (np.cumsum(p)[:-1] * idx.size).astype(np.int64)
      for part, chunk in zip(parts, np.split(idx, cuts)):
        part.append(chunk)
    clients = [np.sort(np.concatenate(p)) for p in parts]
    if min(c.size for c in clients) >= min_size:
      return clients
  raise ValueError(f"no Dirichlet({alpha}) draw gave every one of "
                   f"{num_clients} clients >= {min_size} examples in "
                   f"{max_tries} tries; raise alpha or lower min_size")


def shard_partition(labels, num_clients: int, *, classes_per_client: int,
                    seed: int = 0) -> list[np.ndarray]:
  """Pathological non-IID split: each client holds exactly ``c`` classes.

  Classes are shuffled; client ``i`` gets classes ``(i*c + j) mod K`` for
  ``j < c`` of that order, so each class is held by about ``N*c/K`` clients,
  and each class's shuffled examples are cut evenly among its holders.
  McMahan et al. (2017) sort by label and deal equal shards, which can
  straddle two classes; this form guarantees ``c`` classes per client.

  Raises:
    ValueError: ``c`` outside ``[1, K]``, ``N*c < K`` (some class would be
      unassigned), or a class with fewer examples than holders.
  """
  labels = np.asarray(labels)
  _check_num_clients(num_clients, labels.shape[0])
  classes = np.unique(labels)
  k = classes.size
  c = classes_per_client
  if not 1 <= c <= k:
    raise ValueError(f"classes_per_client must be in [1, {k}], got {c}")
  if num_clients * c < k:
    raise ValueError(f"{num_clients} clients x {c} classes cannot cover "
                     f"{k} classes")
  rng = np.random.default_rng(seed)
  order = rng.permutation(classes)
  holders = {cls: [] for cls in classes}
  for i in range(num_clients):
    for j in range(c):
      holders[order[(i * c + j) % k]].append(i)
  parts = [[] for _ in range(num_clients)]
  for cls, who in holders.items():
    idx = rng.permutation(np.flatnonzero(labels == cls))
    if idx.size < len(who):
      raise ValueError(f"class {cls} has {idx.size} examples for "
                       f"{len(who)} clients")
    for i, chunk in zip(who, np.array_split(idx, len(who))):
      parts[i].append(chunk)
  return [np.sort(np.concatenate(p)) for p in parts]


def group_partition(groups, num_clients: int | None = None, *,
                    seed: int = 0) -> list[np.ndarray]:
  """Natural clients: one per distinct group id (e.g. FEMNIST writer).

  Clients are ordered by group id. With ``num_clients`` set, a seeded random
  subset of that many groups is kept (still in id order) and the examples of
  the other groups are left out.
  """
  groups = np.asarray(groups)
  ids = np.unique(groups)
  if num_clients is not None:
    if not 1 <= num_clients <= ids.size:
      raise ValueError(f"num_clients must be in [1, {ids.size}], "
                       f"got {num_clients}")
    ids = np.sort(np.random.default_rng(seed).choice(ids, num_clients,
                                                     replace=False))
  return [np.flatnonzero(groups == g) for g in ids]


def partition_dataset(dataset, scheme: str, num_clients: int | None = None, *,
                      seed: int = 0, alpha: float = 0.5,
                      classes_per_client: int = 2) -> ClientData:
  """Splits a :class:`sparsejax.data.Dataset` (``x``, ``y``, ``groups``).

  Args:
    dataset: anything with ``x``, ``y`` and, for ``"groups"``, ``groups``.
    scheme: ``"iid"``, ``"dirichlet"`` (uses ``alpha``), ``"shards"`` (uses
      ``classes_per_client``) or ``"groups"`` (natural per-writer clients).
    num_clients: ``N``; for ``"groups"``, ``None`` keeps every group.
    seed: seeds the split.
  """
  y = np.asarray(dataset.y)
  if scheme == "iid":
    parts = iid_partition(y, num_clients, seed=seed)
  elif scheme == "dirichlet":
    parts = dirichlet_partition(y, num_clients, alpha=alpha, seed=seed)
  elif scheme == "shards":
    parts = shard_partition(y, num_clients,
                            classes_per_client=classes_per_client, seed=seed)
  elif scheme == "groups":
    if getattr(dataset, "groups", None) is None:
      raise ValueError(f"dataset {getattr(dataset, 'name', '')!r} has no groups")
    parts = group_partition(dataset.groups, num_clients, seed=seed)
  else:
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
  return ClientData(dataset.x, y, parts,
                    getattr(dataset, "num_classes", None))


def split_off(dataset, size: int, *, seed: int = 0):
  """``(part, rest)``: a seeded random ``size`` examples and the others.

  ``dataset`` is a :class:`sparsejax.data.Dataset` (``x``, ``y``, optional
  ``groups``); both parts keep its order. E.g. the public reference set of a
  market, drawn before the partition so that no client holds it.
  """
  n = dataset.x.shape[0]
  if not 1 <= size < n:
    raise ValueError(f"size must be in [1, {n}), got {size}")
  perm = np.random.default_rng(seed).permutation(n)

  def take(idx):
    idx = np.sort(idx)
    return dataset._replace(x=dataset.x[idx], y=dataset.y[idx], groups=(
        None if dataset.groups is None else dataset.groups[idx]))
  return take(perm[:size]), take(perm[size:])


def holdout_split(clients: ClientData, fraction: float, *,
                  seed: int = 0) -> tuple[ClientData, ClientData]:
  """``(train, held_out)``: each client keeps ``1 - fraction`` of its data.

  Client ``i``'s held-out part (at least one example) is its personalised
  test set, drawn from its own (non-IID) distribution.
  """
  if not 0 < fraction < 1:
    raise ValueError(f"fraction must be in (0, 1), got {fraction}")
  rng = np.random.default_rng(seed)
  train, held = [], []
  for c, idx in enumerate(clients.client_indices):
    if idx.size < 2:
      raise ValueError(f"client {c} has {idx.size} example(s); need >= 2")
    perm = rng.permutation(idx)
    k = min(max(1, round(idx.size * fraction)), idx.size - 1)
    held.append(np.sort(perm[:k]))
    train.append(np.sort(perm[k:]))
  make = lambda parts: ClientData(clients.x, clients.y, parts,
                                  clients.num_classes)
  return make(train), make(held)
