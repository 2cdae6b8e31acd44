"""A small logistic-regression problem shared by the data-parallel tests."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj
from sparsejax import parallel

BATCH, DIM, STEPS = 32, 40, 4


def data(step):
  rng = np.random.default_rng(step)
  x = rng.normal(size=(BATCH, DIM)).astype(np.float32)
  y = (x @ np.linspace(-1, 1, DIM) > 0).astype(np.float32)
  return x, y


def loss_fn(params, model_state, batch):
  x, y = batch
  logits = x @ params["w"] + params["b"]
  loss = optax.sigmoid_binary_cross_entropy(logits, y).mean()
  return loss, (model_state, {"accuracy": jnp.mean((logits > 0) == y)})


def make_tx(compressor, axis_name="data"):
  return optax.chain(sj.error_feedback(compressor, axis_name=axis_name),
                     optax.sgd(0.5, momentum=0.9))


def train(num_devices, process_rows=None, compressor=None):
  """Runs STEPS compressed steps; returns params and the bits of all devices."""
  compressor = compressor or sj.top_k(0.1)
  mesh = parallel.data_mesh(num_devices)
  tx = make_tx(compressor)
  params = {"w": jnp.zeros(DIM), "b": jnp.zeros(())}
  opt_state = parallel.init_opt_state(tx, params, mesh)
  step = parallel.make_train_step(loss_fn, tx, mesh, donate=False)
  for t in range(STEPS):
    batch = data(t)
    if process_rows is not None:
      batch = tuple(b[process_rows[0]:process_rows[1]] for b in batch)
    params, _, opt_state, _ = step(params, {}, opt_state,
                                   parallel.global_batch(batch, mesh))
  bits = jax.jit(lambda s: sj.comm_stats(s)["bits_sent"],
                 out_shardings=jax.sharding.NamedSharding(
                     mesh, jax.sharding.PartitionSpec()))(opt_state)
  params = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), params)
  return params, float(np.sum(bits.addressable_data(0)))
