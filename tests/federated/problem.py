"""A tiny federated problem shared by the tests: softmax regression.

Algorithms are built once per process (``functools.cache``) so that tests
using the same algorithm and shapes share one compiled round.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj
from sparsejax import federated as fed

DIM, CLASSES = 50, 4          # d = 50 * 4 + 4 = 204 parameters
NUM_PARAMS = DIM * CLASSES + CLASSES
NUM_CLIENTS, PER_ROUND = 8, 3
LOCAL_STEPS, BATCH = 2, 8
LR = 0.1


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


def clients(num_clients=NUM_CLIENTS, seed=0) -> fed.ClientData:
  """Clients of unequal sizes (5 to 60 examples) that never own example 0."""
  x, y = data(seed=seed)
  rng = np.random.default_rng(seed + 1)
  sizes = rng.integers(5, 60, size=num_clients)
  perm = 1 + rng.permutation(x.shape[0] - 1)
  cuts = np.cumsum(sizes)[:-1]
  parts = np.split(perm[:sizes.sum()], cuts)
  return fed.ClientData(x, y, parts, CLASSES)


def kwargs(**overrides):
  return dict(dict(local_steps=LOCAL_STEPS, batch_size=BATCH), **overrides)


@functools.cache
def algorithm(name: str, **options):
  """One algorithm object per (name, options): a shared compile cache."""
  opt = optax.sgd(LR)
  topk = sj.top_k(k=3, scope="global")
  if name == "fedavg":
    return fed.fedavg(MODEL, opt, **kwargs(**options))
  if name == "fedprox":
    return fed.fedprox(MODEL, opt, **kwargs(**options))
  if name == "ef_identity":
    return fed.ef_fedavg(MODEL, opt, sj.identity(), **kwargs(**options))
  if name == "ef_topk":
    return fed.ef_fedavg(MODEL, opt, topk, **kwargs(**options))
  if name == "ef_topk_1pct":
    return fed.ef_fedavg(MODEL, opt, sj.top_k(0.01, scope="global"),
                         **kwargs(**options))
  if name == "sapef":
    return fed.sapef(MODEL, opt, topk, **kwargs(**options))
  raise ValueError(name)


def simulation(name, seed=0, clients_per_round=PER_ROUND, **options):
  sim_options = {k: options.pop(k) for k in
                 ("mesh", "client_batch_size", "test_data", "probe_size")
                 if k in options}
  sim_options.setdefault("probe_size", 0)
  return fed.Simulation(algorithm(name, **options), clients(),
                        clients_per_round, seed=seed, **sim_options)


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
