"""Partitioners: coverage, label skew, classes per client, natural groups."""

import numpy as np
import pytest

from sparsejax import federated as fed
from sparsejax.federated import partition

K = 10
LABELS = np.random.default_rng(0).permutation(np.arange(2000) % K)


class _Dataset:
  x = np.zeros((LABELS.size, 3), np.float32)
  y = LABELS
  num_classes = K
  groups = np.arange(LABELS.size) * 7 % 13  # 13 "writers"
  name = "toy"


def _assert_exactly_once(parts, n=LABELS.size):
  np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
def test_every_example_assigned_once_and_seeded(scheme):
  a = fed.partition_dataset(_Dataset, scheme, 20, seed=3)
  b = fed.partition_dataset(_Dataset, scheme, 20, seed=3)
  c = fed.partition_dataset(_Dataset, scheme, 20, seed=4)
  _assert_exactly_once(a.client_indices)
  assert a.num_clients == 20 and a.sizes.sum() == LABELS.size
  for x, y in zip(a.client_indices, b.client_indices):
    np.testing.assert_array_equal(x, y)
  assert any(x.shape != y.shape or np.any(x != y)
             for x, y in zip(a.client_indices, c.client_indices))


def test_dirichlet_small_alpha_is_skewed():
  iid = fed.partition_dataset(_Dataset, "iid", 20).summary()
  skewed = fed.partition_dataset(_Dataset, "dirichlet", 20, alpha=0.1).summary()
  mild = fed.partition_dataset(_Dataset, "dirichlet", 20, alpha=100.0).summary()
  assert iid["mean_tv_distance"] < 0.15
  assert skewed["mean_tv_distance"] > 0.5
  assert mild["mean_tv_distance"] < 0.2
  assert np.median(skewed["classes_per_client"]) < K
  assert skewed["label_histograms"].shape == (20, K)
  assert skewed["label_histograms"].sum() == LABELS.size


@pytest.mark.parametrize("c", [1, 2, 3])
def test_shards_give_c_classes_per_client(c):
  clients = fed.partition_dataset(_Dataset, "shards", 20, classes_per_client=c)
  np.testing.assert_array_equal(clients.summary()["classes_per_client"], c)
  _assert_exactly_once(clients.client_indices)


def test_groups_match_writers():
  clients = fed.partition_dataset(_Dataset, "groups")
  assert clients.num_clients == 13
  for g, idx in zip(np.unique(_Dataset.groups), clients.client_indices):
    np.testing.assert_array_equal(idx, np.flatnonzero(_Dataset.groups == g))
  subset = fed.partition_dataset(_Dataset, "groups", 5, seed=1)
  assert subset.num_clients == 5
  for idx in subset.client_indices:
    assert np.unique(_Dataset.groups[idx]).size == 1


def test_padded_indices():
  clients = fed.ClientData(np.zeros((6, 1)), np.arange(6) % 2,
                           [np.array([0, 1, 2]), np.array([5])])
  np.testing.assert_array_equal(clients.padded_indices(),
                                [[0, 1, 2], [5, 5, 5]])


def test_bad_partitions_raise():
  with pytest.raises(ValueError, match="alpha"):
    partition.dirichlet_partition(LABELS, 5, alpha=0.0)
  with pytest.raises(ValueError, match="cover"):
    partition.shard_partition(LABELS, 3, classes_per_client=2)
  with pytest.raises(ValueError, match="num_clients"):
    partition.iid_partition(LABELS, 0)
  with pytest.raises(ValueError, match="scheme"):
    fed.partition_dataset(_Dataset, "random", 4)
  with pytest.raises(ValueError, match="no examples"):
    fed.ClientData(np.zeros((3, 1)), np.zeros(3), [np.array([0]), np.array([])])


def test_partitions_that_would_leave_a_client_without_data_raise():
  with pytest.raises(ValueError, match="min_size"):
    partition.dirichlet_partition(LABELS, 5, alpha=0.1, min_size=0)
  with pytest.raises(ValueError, match="cannot give"):
    partition.dirichlet_partition(LABELS, 100, alpha=0.1, min_size=21)
  with pytest.raises(ValueError, match="num_clients"):
    partition.iid_partition(LABELS, LABELS.size + 1)
  with pytest.raises(ValueError, match="class 1 has 2 examples"):
    partition.shard_partition(np.array([0] * 10 + [1] * 2), 6,
                              classes_per_client=1)
  with pytest.raises(ValueError, match="num_clients"):
    fed.partition_dataset(_Dataset, "groups", 14)


def test_bad_client_data_raises():
  with pytest.raises(ValueError, match="out of range"):
    fed.ClientData(np.zeros((3, 1)), np.zeros(3), [np.array([0, 3])])
  with pytest.raises(ValueError, match="x has 3 examples, y 2"):
    fed.ClientData(np.zeros((3, 1)), np.zeros(2), [np.array([0])])
  with pytest.raises(ValueError, match="at least one client"):
    fed.ClientData(np.zeros((3, 1)), np.zeros(3), [])

  class NoGroups(_Dataset):
    groups = None

  with pytest.raises(ValueError, match="no groups"):
    fed.partition_dataset(NoGroups, "groups")
