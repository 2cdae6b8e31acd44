"""The prediction-space knowledge market (KTA v2) and its baselines."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsejax import data
from sparsejax import federated as fed
from sparsejax import models
from sparsejax.training import Checkpointer
from sparsejax.compress.bitcount import exact
from sparsejax.federated import knowledge as kn

K, N, S, N_REF = 4, 6, 3, 40
SMALL = models.create_model("mlp", K, features=(16,))
OTHER = models.create_model("mlp", K, features=(8, 8))
OPT = optax.sgd(0.1)  # one object: markets share their compiled functions


class NaNNet(nn.Module):
  """A client whose predictions are all NaN."""
  num_classes: int = K

  @nn.compact
  def __call__(self, x, train=False):
    del train
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1)) * jnp.nan


def _problem(seed=0):
  train, test = data.load_dataset("synthetic", num_train=400, num_test=64,
                                  shape=(8, 8, 1), num_classes=K)
  ref, rest = fed.split_off(train, N_REF, seed=seed)
  return fed.partition_dataset(rest, "iid", N, seed=seed), ref, test


CLIENTS, REF, TEST = _problem()


def _market(groups=None, config=fed.MarketConfig(), seed=0, reference=REF,
            per_round=S, clients=CLIENTS):
  groups = groups or [fed.ArchitectureGroup(SMALL, tuple(range(N)))]
  return fed.Market(groups, clients, reference, clients_per_round=per_round,
                   optimizer=OPT, config=config, local_steps=2,
                   batch_size=8, distill_steps=3, distill_batch_size=16,
                   seed=seed)


# -- server math vs numpy ------------------------------------------------------


def _np_similarity(p, kind, tau):
  c = p.shape[0]
  if kind == "cosine":
    f = p.reshape(c, -1)
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    return f @ f.T
  out = np.zeros((c, c))
  for i in range(c):
    for j in range(c):
      m = (p[i] + p[j]) / 2
      js = 0.5 * (np.sum(p[i] * np.log(p[i] / m), -1)
                  + np.sum(p[j] * np.log(p[j] / m), -1))
      out[i, j] = np.exp(-js.mean() / tau)
  return out


def _np_weights(s, acc, valid, rule, beta, gamma, top_m, include_self,
                teacher_tau=0.05):
  c = s.shape[0]
  w = np.zeros((c, c))
  for i in range(c):
    cand = [j for j in range(c) if valid[j] and (include_self or j != i)]
    cand = sorted(cand, key=lambda j: -s[i, j])[:top_m or c]
    for j in cand:
      score = (s[i, j]**beta if rule == "power"
               else np.exp(s[i, j] / teacher_tau))
      w[i, j] = score * acc[j]**gamma
    w[i] = w[i] / w[i].sum()
  return w


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["power", "softmax"])
@pytest.mark.parametrize("kind", ["cosine", "js"])
@pytest.mark.parametrize("top_m,include_self", [(None, False), (2, False),
                                                (2, True), (None, True)])
def test_similarity_and_weights_match_numpy(rule, kind, top_m, include_self):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(5, 7, 3)) * 2
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  acc = rng.uniform(0.2, 1.0, size=5)
  valid = np.array([True, True, False, True, True])
  s = np.asarray(kn.similarity_matrix(jnp.asarray(p), kind, tau=0.3))
  np.testing.assert_allclose(s, _np_similarity(p, kind, 0.3), rtol=1e-5)
  w = kn.teacher_weights(jnp.asarray(s), jnp.asarray(acc), jnp.asarray(valid),
                         rule=rule, beta=2.0, teacher_tau=0.1, gamma=0.5,
                         top_m=top_m, include_self=include_self)
  ref = _np_weights(s, acc, valid, rule, 2.0, 0.5, top_m, include_self, 0.1)
  np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.sum(w, 1), 1.0, rtol=1e-6)
  assert np.all(np.asarray(w)[:, 2] == 0)  # the invalid client teaches nobody
  if not include_self:
    assert np.all(np.diag(np.asarray(w)) == 0)


@pytest.mark.slow
def test_market_targets_defaults_and_fedmd_mean():
  rng = np.random.default_rng(1)
  z = jnp.asarray(rng.normal(size=(4, N_REF, K)), jnp.float32)
  y = jnp.asarray(REF.y)
  valid = jnp.array([True, True, True, False])
  p = jax.nn.softmax(z, -1)
  out = kn.market_targets(z, valid, y, fed.MarketConfig())
  acc = jnp.mean(jnp.argmax(z, -1) == y, 1)
  w = kn.teacher_weights(kn.similarity_matrix(p), acc, valid)
  np.testing.assert_allclose(out["targets"][:3],  # the invalid row is unused
                             jnp.einsum("ij,jnk->ink", w, p)[:3], rtol=1e-5)
  md = kn.market_targets(z, valid, y, fed.MarketConfig(method="fedmd"))
  for i in range(4):
    np.testing.assert_allclose(md["targets"][i], p[:3].mean(0), rtol=1e-5)


@pytest.mark.slow
def test_softmax_rule_is_stable_and_checked():
  sim = jnp.array([[1.0, 0.9, 0.2], [0.9, 1.0, 0.3], [0.2, 0.3, 1.0]])
  acc = jnp.ones(3)
  w = kn.teacher_weights(sim, acc, jnp.ones(3, bool), rule="softmax",
                         teacher_tau=1e-4)  # exp(0.7 / 1e-4) would overflow
  np.testing.assert_allclose(w, [[0, 1, 0], [1, 0, 0], [0, 1, 0]], atol=1e-6)
  with pytest.raises(ValueError, match="rule must be one of"):
    kn.teacher_weights(sim, acc, jnp.ones(3, bool), rule="max")
  with pytest.raises(ValueError, match="teacher_rule must be one of"):
    fed.MarketConfig(teacher_rule="top").check()
  with pytest.raises(ValueError, match="teacher_tau must be > 0"):
    fed.MarketConfig(teacher_tau=0.0).check()


def _clustered_logits(seed=0, clients=8, rows=200, classes=4):
  """Two clusters of clients, mostly trained on classes {0, 1} or {2, 3}.

  Every client has learnt the task a little (logit +2 on the true class) and
  favours its cluster's classes (+1.5); clients differ by independent noise.
  As measured on CIFAR-10, cosine similarities are all high (0.78-1 inside a
  cluster, 0.56-0.62 across), so ``S^beta acc^gamma`` is nearly uniform.
  """
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, rows)
  z = rng.normal(0.0, 1.0, (clients, rows, classes))
  z += 2.0 * (labels[:, None] == np.arange(classes))
  for c in range(clients):
    own = [0, 1] if c < clients // 2 else [2, 3]
    z[c][:, own] += 1.5
  return jnp.asarray(z, jnp.float32), jnp.asarray(labels)


def _tv(a, b):
  return 0.5 * np.mean(np.sum(np.abs(a - b), -1), -1)


@pytest.mark.slow
def test_discriminating_rule_targets_follow_own_cluster():
  z, labels = _clustered_logits()
  c = z.shape[0]
  probs = np.asarray(jax.nn.softmax(z, -1))
  fedmd = probs.mean(0)
  clusters = [np.arange(c // 2), np.arange(c // 2, c)]
  valid = jnp.ones(c, bool)

  def margins(config):
    out = kn.market_targets(z, valid, labels, config)
    q = np.asarray(out["targets"])
    own = np.array([_tv(q[i], probs[clusters[i >= c // 2]].mean(0))
                    for i in range(c)])
    to_fedmd = _tv(q, fedmd[None])
    np.testing.assert_allclose(out["fedmd_distance"], to_fedmd, rtol=1e-5)
    return to_fedmd - own, out

  sharp, out = margins(fed.MarketConfig(teacher_rule="softmax",
                                        teacher_tau=0.02))
  assert np.all(sharp > 0.05)  # every client: nearer its own cluster
  w = np.asarray(out["weights"])
  for i in range(c):  # nearly all weight inside the cluster
    assert w[i, clusters[i >= c // 2]].sum() > 0.95
  entropy = -np.sum(np.where(w > 0, w * np.log(np.where(w > 0, w, 1)), 0), 1)
  np.testing.assert_allclose(out["weight_entropy"], entropy, rtol=1e-4,
                             atol=1e-6)
  old, old_out = margins(fed.MarketConfig())  # S^beta acc^gamma
  assert np.all(old < 0)  # every client: nearer FedMD than its own cluster
  assert np.all(np.asarray(out["fedmd_distance"])
                > 3 * np.asarray(old_out["fedmd_distance"]))
  assert np.all(np.asarray(old_out["weight_entropy"])
                > np.asarray(out["weight_entropy"]) + 0.5)
  top, _ = margins(fed.MarketConfig(top_m=c // 2 - 1))  # top-m: same effect
  assert np.all(top > 0.05)
  md = kn.market_targets(z, valid, labels, fed.MarketConfig(method="fedmd"))
  np.testing.assert_allclose(md["fedmd_distance"], 0.0, atol=1e-6)
  np.testing.assert_allclose(md["weight_entropy"], np.log(c), rtol=1e-5)


@pytest.mark.slow
def test_non_finite_upload_is_invalid():
  z = jnp.ones((3, N_REF, K)).at[1, 5, 2].set(jnp.inf)
  out = kn.market_targets(z, jnp.ones(3, bool), jnp.asarray(REF.y),
                          fed.MarketConfig())
  assert out["valid"].tolist() == [True, False, True]
  assert np.all(np.isfinite(out["targets"]))
  assert np.all(np.asarray(out["weights"])[:, 1] == 0)


# -- the engine ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dtype,bits", [("float32", 32), ("bfloat16", 16)])
def test_bytes_per_client_per_direction(dtype, bits):
  market = _market(config=fed.MarketConfig(value_dtype=dtype))
  per_client = N_REF * K * bits
  expected = np.zeros(N, np.int64)
  for rnd in range(2):
    metrics = market.step()
    expected[market.sample(rnd)] += per_client
    assert metrics["participants"] == S and metrics["excluded"] == 0
    total = S * per_client * (rnd + 1)
    assert metrics["uplink_bits"] == metrics["downlink_bits"] == total
    assert metrics["total_bytes"] == 2 * total / 8
  ledger = market.ledger
  assert isinstance(ledger, fed.CommLedger)
  for counts in (ledger.uplink, ledger.downlink):  # exact 64-bit counts
    assert counts.hi.dtype == counts.lo.dtype == jnp.uint32
    values = exact(counts)
    assert all(type(v) is int for v in values)
    np.testing.assert_array_equal(values, expected)
  np.testing.assert_array_equal(ledger.rounds, expected // per_client)


@pytest.mark.slow
def test_local_only_sends_nothing_and_trains():
  market = _market(config=fed.MarketConfig(method="local"))
  before = market.client_accuracy(TEST)
  for _ in range(3):
    metrics = market.step()
  assert metrics["total_bytes"] == 0 and exact(market.ledger.uplink).sum() == 0
  assert market.client_accuracy(TEST).mean() > before.mean()


@pytest.mark.slow
def test_distillation_reduces_kl_to_target():
  market = _market()
  fns, params = market._fns[0], market.params[0]  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  q = jax.nn.softmax(jnp.asarray(rng.normal(size=(N, N_REF, K)) * 3), -1)
  x_ref = jnp.asarray(REF.x)

  def kl(p):
    return jax.vmap(lambda a, t: kn.distillation_loss(
        SMALL.apply({"params": a}, x_ref), t))(p, q)

  keys = jax.random.split(jax.random.key(0), N)
  rows, sizes = (jnp.asarray(a) for a in (CLIENTS.padded_indices(),
                                          CLIENTS.sizes.astype(np.int32)))
  new, _ = fns.distill(params, q, keys, rows, sizes, jnp.asarray(CLIENTS.x),
                       jnp.asarray(CLIENTS.y), x_ref)
  assert np.all(np.asarray(kl(new)) < np.asarray(kl(params)))


def _private_ce(market):
  """Each personal model's cross-entropy on its own training data."""
  out = []
  for c in range(N):
    p = jax.tree.map(lambda a, c=c: a[c], market.params[0])
    idx = CLIENTS.client_indices[c]
    logp = jax.nn.log_softmax(SMALL.apply({"params": p}, CLIENTS.x[idx]))
    out.append(-np.mean(np.asarray(logp)[np.arange(idx.size),
                                         CLIENTS.y[idx]]))
  return np.array(out)


@pytest.mark.slow
def test_private_cross_entropy_in_distillation():
  # Targets of a label-blind teacher: uniform on every reference example.
  # Distilling towards them raises the private loss; the private term holds
  # it down.
  def run(weight):
    market = fed.Market(
        [fed.ArchitectureGroup(SMALL, tuple(range(N)))], CLIENTS, REF,
        clients_per_round=N, optimizer=OPT, config=fed.MarketConfig(),
        local_steps=20, batch_size=16, distill_steps=20,
        distill_batch_size=16, private_weight=weight, seed=0)
    metrics = market.step()
    return _private_ce(market), metrics

  plain, m0 = run(0.0)
  anchored, m1 = run(1.0)
  assert np.all(anchored < plain)
  assert m1["distill_loss"] > m0["distill_loss"]  # it includes the CE term
  with pytest.raises(ValueError, match="private_weight must be >= 0"):
    fed.Market([fed.ArchitectureGroup(SMALL, tuple(range(N)))], CLIENTS, REF,
               clients_per_round=S, optimizer=OPT, private_weight=-1.0)


@pytest.mark.slow
def test_round_metrics_report_how_personal_the_market_is():
  md = _market(config=fed.MarketConfig(method="fedmd")).step()
  assert md["fedmd_distance"] == pytest.approx(0.0, abs=1e-6)
  assert md["weight_entropy"] == pytest.approx(np.log(S), rel=1e-5)
  sharp = _market(config=fed.MarketConfig(teacher_rule="softmax",
                                          teacher_tau=1e-3)).step()
  assert sharp["weight_entropy"] < 0.1  # one teacher each
  assert sharp["fedmd_distance"] > 0


@pytest.mark.slow
def test_heterogeneous_groups_share_one_market():
  groups = [fed.ArchitectureGroup(SMALL, (0, 2, 4)),
            fed.ArchitectureGroup(OTHER, (1, 3, 5))]
  market = _market(groups, per_round=2)  # some rounds sample one group only
  rounds = np.zeros(N, np.int64)
  for rnd in range(3):
    before = jax.tree.map(np.asarray, market.params)
    metrics = market.step()
    sampled = market.sample(rnd)
    rounds[sampled] += 1
    assert metrics["participants"] == 2 and metrics["excluded"] == 0
    for g, group in enumerate(groups):
      for pos, c in enumerate(group.clients):
        moved = any(not np.array_equal(a[pos], b[pos]) for a, b in zip(
            jax.tree.leaves(before[g]), jax.tree.leaves(market.params[g])))
        assert moved == (c in sampled)
  np.testing.assert_array_equal(exact(market.ledger.downlink),
                                rounds * N_REF * K * 32)
  assert np.all(np.isfinite(market.client_accuracy((TEST.x, TEST.y))))


@pytest.mark.slow
def test_faulty_clients_are_excluded_and_counted():
  wrong = models.create_model("mlp", K + 1, features=(8,))
  groups = [fed.ArchitectureGroup(SMALL, (0, 1, 2, 3)),
            fed.ArchitectureGroup(NaNNet(), (4,)),
            fed.ArchitectureGroup(wrong, (5,))]
  market = _market(groups, per_round=N)
  metrics = market.step()
  assert metrics["participants"] == N and metrics["excluded"] == 2
  np.testing.assert_array_equal(market.excluded, [0, 0, 0, 0, 1, 1])
  bits = N_REF * K * 32
  np.testing.assert_array_equal(exact(market.ledger.downlink),
                                [bits] * 4 + [0, 0])
  np.testing.assert_array_equal(exact(market.ledger.uplink),
                                [bits] * 5 + [N_REF * (K + 1) * 32])
  assert np.isfinite(metrics["distill_loss"])
  assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(market.params[0]))


def test_bad_reference_sets():
  with pytest.raises(ValueError, match="needs labels"):
    _market(reference=(REF.x, None))
  only_two = fed.ClientData(CLIENTS.x, CLIENTS.y, [
      np.flatnonzero(CLIENTS.y == k)[i::3] for k in (0, 1) for i in range(3)],
      K)
  with pytest.raises(ValueError, match=r"reference labels \[2, 3\]"):
    _market(clients=only_two)


def test_deterministic_by_seed():
  runs = []
  for seed in (0, 0, 1):
    market = _market(seed=seed)
    runs.append(([market.step() for _ in range(2)],
                 jax.tree.map(np.asarray, market.params)))
  assert runs[0][0] == runs[1][0]
  jax.tree.map(np.testing.assert_array_equal, runs[0][1], runs[1][1])
  assert runs[0][0] != runs[2][0]


@pytest.mark.slow
def test_holdout_split_and_client_accuracy():
  train, held = fed.holdout_split(CLIENTS, 0.25, seed=0)
  for a, b, c in zip(train.client_indices, held.client_indices,
                     CLIENTS.client_indices):
    assert not set(a) & set(b) and set(a) | set(b) == set(c)
  groups = [fed.ArchitectureGroup(SMALL, (0, 2, 4)),
            fed.ArchitectureGroup(OTHER, (1, 3, 5))]
  market = _market(groups, clients=train)
  market.step()
  own = market.client_accuracy(parts=held)
  expected = np.zeros(N)
  for g, group in enumerate(groups):  # each model on its own held-out rows
    for pos, c in enumerate(group.clients):
      p = jax.tree.map(lambda a, pos=pos: a[pos], market.params[g])
      idx = held.client_indices[c]
      logits = np.asarray(group.module.apply({"params": p}, held.x[idx]))
      expected[c] = np.mean(logits.argmax(-1) == held.y[idx])
  np.testing.assert_allclose(own, expected, rtol=1e-6)
  with pytest.raises(ValueError, match="exactly one of data"):
    market.client_accuracy()


@pytest.mark.slow
def test_exact_resume(tmp_path):
  full = _market()
  metrics = [full.step() for _ in range(3)]
  first = _market()
  first.step()
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, first.state)
    ckpt.wait()
    fresh = _market(seed=123)
    fresh.restore(ckpt.restore(1, target=fresh.state))
  assert fresh.round == 1
  assert [fresh.step() for _ in range(2)] == metrics[1:]
  a, b = (jax.device_get(m.state._replace(rng=jax.random.key_data(m.state.rng)))
          for m in (fresh, full))
  jax.tree.map(np.testing.assert_array_equal, a, b)
