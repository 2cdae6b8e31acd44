"""A tiny federated problem shared by the tests: softmax regression.

Algorithms are built once per process (``functools.cache``) so that tests
using the same algorithm and shapes share one compiled round.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import sparsejax as sj
from sparsejax import federated as fed
from sparsejax.federated import aggregation
from sparsejax.federated import simulation as simulation_lib

DIM, CLASSES = 50, 4          # d = 50 * 4 + 4 = 204 parameters
NUM_PARAMS = DIM * CLASSES + CLASSES
NUM_CLIENTS, PER_ROUND = 8, 3
LOCAL_STEPS, BATCH = 2, 8
LR = 0.1
TOP_K = 3                     # global top-k of the compressed algorithms


def _loss(params, batch):
  logits = batch["x"] @ params["w"] + params["b"]
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
  return losses, (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)


MODEL = fed.FederatedModel(
    init=lambda key: {"w": 0.1 * jax.random.normal(key, (DIM, CLASSES)),
                      "b": jnp.zeros((CLASSES,))},
    loss=lambda p, b: (jnp.mean(_loss(p, b)[0]),
                       {"accuracy": jnp.mean(_loss(p, b)[1])}),
    evaluate=lambda p, b: dict(zip(("loss", "accuracy"), _loss(p, b))))


def data(num_examples=400, seed=0):
  """Linearly generated labels; one garbage example (index 0) owned by no one."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_examples, DIM)).astype(np.float32)
  w = rng.normal(size=(DIM, CLASSES))
  y = np.argmax(x @ w + 0.5 * rng.normal(size=(num_examples, CLASSES)), -1)
  x[0] = 1e4
  return x, y.astype(np.int32)


def clients(num_clients=NUM_CLIENTS, seed=0, nan_clients=()) -> fed.ClientData:
  """Clients of unequal sizes (5 to 60 examples) that never own example 0.

  The inputs of the clients in ``nan_clients`` are all NaN.
  """
  x, y = data(seed=seed)
  rng = np.random.default_rng(seed + 1)
  sizes = rng.integers(5, 60, size=num_clients)
  perm = 1 + rng.permutation(x.shape[0] - 1)
  cuts = np.cumsum(sizes)[:-1]
  parts = np.split(perm[:sizes.sum()], cuts)
  for c in nan_clients:
    x[parts[c]] = np.nan
  return fed.ClientData(x, y, parts, CLASSES)


def kwargs(**overrides):
  return dict(dict(local_steps=LOCAL_STEPS, batch_size=BATCH), **overrides)


@functools.cache
def algorithm(name: str, **options):
  """One algorithm object per (name, options): a shared compile cache."""
  opt = optax.sgd(LR)
  topk = sj.top_k(k=TOP_K, scope="global")
  if name == "fedavg":
    return fed.fedavg(MODEL, opt, **kwargs(**options))
  if name == "fedprox":
    return fed.fedprox(MODEL, opt, **kwargs(**options))
  if name == "ef_identity":
    return fed.ef_fedavg(MODEL, opt, sj.no_compression(), **kwargs(**options))
  if name == "ef_topk":
    return fed.ef_fedavg(MODEL, opt, topk, **kwargs(**options))
  if name == "ef21_topk":
    return fed.ef21_fedavg(MODEL, opt, topk, **kwargs(**options))
  if name == "sapef":
    return fed.sapef(MODEL, opt, topk, **kwargs(**options))
  if name == "scaffold":
    return fed.scaffold(MODEL, opt, local_lr=LR, **kwargs(**options))
  raise ValueError(name)


def simulation(name, seed=0, clients_per_round=PER_ROUND, nan_clients=(),
               **options):
  sim_options = {k: options.pop(k) for k in
                 ("mesh", "client_batch_size", "test_data", "probe_size",
                  "dropout_rate", "unroll")
                 if k in options}
  sim_options.setdefault("probe_size", 0)
  return fed.Simulation(algorithm(name, **options),
                        clients(nan_clients=nan_clients), clients_per_round,
                        seed=seed, **sim_options)


def config_round(method: dict, clients_per_round: int = 2):
  """One round of the experiment binary's algorithm for ``method`` (a
  config entry, built by ``experiments.federated.train.build_algorithm``
  with the smoke config): ``(metrics, per_client)``."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from experiments.federated import train  # pylint: disable=g-import-not-at-top
  from experiments.federated.configs import smoke  # pylint: disable=g-import-not-at-top
  algo = train.build_algorithm(ml_collections.ConfigDict(method),
                               smoke.get_config(), MODEL)
  sim = fed.Simulation(algo, clients(), clients_per_round, probe_size=0)
  (metrics, per_client), = run(sim, 1)
  return metrics, per_client


def run(sim, rounds):
  """Runs ``rounds`` more rounds; returns the per-round (metrics, per_client)."""
  return [sim.step(evaluate=False) for _ in range(rounds)]


def to_numpy(tree):
  def one(x):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    return np.asarray(x)
  return jax.tree.map(one, jax.device_get(tree))


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  a, b = to_numpy(a), to_numpy(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def residuals(sim):
  return sj.residual(sim.state.clients.uplink)


def client_key(state):
  """The key of this round's client updates (as ``run_round`` splits it)."""
  return jax.random.split(jax.random.wrap_key_data(state.rng), 4)[2]


def take_client(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


_client_update = jax.jit(simulation_lib.client_update, static_argnums=0)


def check_round_by_loop(sim, before, per_client, aggregated):
  """Replays the round of ``before`` client by client with ``client_update``.

  Checks that the clients in ``aggregated`` have the states and the server
  model the aggregate of exactly them (weights ``n_i``), and that every other
  client's state is unchanged.
  """
  algo, d = sim.algo, sim.data
  sums = None
  for i in per_client["clients"]:
    old = take_client(before.clients, i)
    if i not in aggregated:
      assert_trees_close(take_client(sim.state.clients, i), old, 0, 0)
      continue
    message, new, _ = _client_update(
        algo, before.server, old, d.indices[i], d.sizes[i],
        jax.random.fold_in(client_key(before), i), d.x, d.y)
    assert_trees_close(new, take_client(sim.state.clients, i))
    one = aggregation.client_sums(jax.tree.map(lambda x: x[None], message),
                                  d.sizes[i][None].astype(jnp.float32),
                                  algo.aggregation)
    sums = one if sums is None else jax.tree.map(jnp.add, sums, one)
  update = (jax.tree.map(jnp.zeros_like, before.server.params) if sums is None
            else aggregation.finalize(sums))
  assert_trees_close(sim.params, jax.tree.map(jnp.add, before.server.params,
                                              update))


def multihost_run(mesh, num_rounds=3):
  """SA-PEF with faults over ``mesh``: what the multi-host test compares.

  With ``dropout_rate=0.3`` and client 2's data NaN, the first 3 rounds
  (seed 0) drop a client and reject client 2's update.
  """
  sim = simulation("sapef", alpha=0.5, aggregation="support",
                   dropout_rate=0.3, nan_clients=(2,), mesh=mesh)
  rounds = run(sim, num_rounds)
  params = to_numpy(jax.tree.map(lambda a: a.addressable_data(0), sim.params))
  last = rounds[-1][0]
  return {"w": params["w"], "b": params["b"],
          "clients": np.stack([p["clients"] for _, p in rounds]),
          "uplink_bits": np.stack([p["uplink_bits"] for _, p in rounds]),
          "totals": np.array([last["uplink_bits"], last["downlink_bits"],
                              sum(m["rejected_clients"] for m, _ in rounds),
                              sum(m["dropped_clients"] for m, _ in rounds)],
                             np.int64),
          "train_loss": np.array(last["train_loss"])}


@functools.cache
def _flat_grad():
  """``(flat params, batch) -> flat gradient`` of the model's loss."""
  unravel = ravel_pytree(MODEL.init(jax.random.key(0)))[1]
  return jax.jit(jax.grad(lambda p, b: MODEL.loss(unravel(p), b)[0]))


_local_batches = jax.jit(simulation_lib.local_batches, static_argnums=(3, 4))


def local_sgd(before, data, i, start, correction=0.0):
  """Client ``i``'s ``LOCAL_STEPS`` plain SGD steps from flat ``start``.

  By hand in float64 (gradients at the float32 point), on the minibatches
  the engine draws for it in the round of state ``before``; ``correction``
  is added to every gradient (SCAFFOLD's ``c - c_i``).
  """
  grad = _flat_grad()
  examples = _local_batches(jax.random.fold_in(client_key(before), i),
                            data.indices[i], data.sizes[i], LOCAL_STEPS, BATCH)
  y = np.asarray(start, np.float64)
  for t in range(LOCAL_STEPS):
    batch = {"x": data.x[examples[t]], "y": data.y[examples[t]]}
    g = np.asarray(grad(jnp.asarray(y, jnp.float32), batch), np.float64)
    y = y - LR * (g + correction)
  return y


def flat64(tree) -> np.ndarray:
  """The leaves of ``tree`` as one float64 vector (for numpy references)."""
  return np.asarray(ravel_pytree(tree)[0], np.float64)


def top_k_np(v: np.ndarray, k: int) -> np.ndarray:
  """numpy global top-k of ``v`` by magnitude (the rest zero)."""
  out = np.zeros_like(v)
  idx = np.argsort(-np.abs(v))[:k]
  out[idx] = v[idx]
  return out
