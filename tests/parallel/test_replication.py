"""make_train_step refuses a transformation that never averages over the axis.

Without the average every device applies its own update and the copies of the
"replicated" params drift apart; the step must say so when it is first traced,
and a transformation that does average must keep every copy equal.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax import parallel
from tests.parallel import dp_problem


def _setup(tx, num_devices=8):
  mesh = parallel.data_mesh(num_devices)
  params = {"w": jnp.zeros(dp_problem.DIM), "b": jnp.zeros(())}
  opt_state = parallel.init_opt_state(tx, params, mesh)
  step = parallel.make_train_step(dp_problem.loss_fn, tx, mesh, donate=False)
  return step, params, opt_state


def test_issue_example_is_refused_at_the_first_call():
  tx = optax.chain(sj.error_feedback(sj.top_k(0.1)), optax.sgd(0.1))
  step, params, opt_state = _setup(tx)
  with pytest.raises(ValueError, match="axis_name='data'") as e:
    step(params, {}, opt_state, dp_problem.data(0))
  assert "['w']" in str(e.value) and "compressed_mean" in str(e.value)


def test_dense_optimizer_is_refused_when_traced():
  step, params, opt_state = _setup(optax.sgd(0.1))
  with pytest.raises(ValueError, match="sj.no_compression()"):
    step.lower(params, {}, opt_state, dp_problem.data(0))  # traced, never run


def _reuses_own_gradient():
  """Averages over "data", then adds this device's previous gradient."""

  def update(updates, state, params=None):
    del params
    mean = jax.lax.pmean(updates, "data")
    return jax.tree.map(lambda m, s: m + 0.1 * s, mean, state), updates

  return optax.GradientTransformation(
      lambda params: jax.tree.map(jnp.zeros_like, params), update)


def test_per_device_state_feeding_the_updates_is_refused():
  # The first update is the same everywhere (the state starts at zero), the
  # second is not: the state became per-device.
  step, params, opt_state = _setup(_reuses_own_gradient())
  with pytest.raises(ValueError, match="differ between the devices"):
    step(params, {}, opt_state, dp_problem.data(0))


@pytest.mark.slow
@pytest.mark.parametrize("tx", [
    optax.chain(sj.error_feedback(sj.top_k(0.1), axis_name="data"),
                optax.sgd(0.5, momentum=0.9)),  # sparse all-gather
    optax.chain(sj.error_feedback(sj.hard_threshold(0.05), axis_name="data"),
                optax.adam(0.1)),  # pmean of a masked message
    optax.chain(parallel.compressed_mean(sj.qsgd(4), "data"),
                optax.sgd(0.5)),  # gathered quantized messages
    optax.chain(parallel.compressed_mean(sj.no_compression(), "data"),
                optax.sgd(0.5, momentum=0.9)),  # dense all-reduce
], ids=["top_k", "hard_threshold", "qsgd", "dense"])
def test_averaging_transformations_keep_replicas_equal(tx):
  step, params, opt_state = _setup(tx)
  for t in range(3):
    params, _, opt_state, _ = step(params, {}, opt_state, dp_problem.data(t))
  for leaf in jax.tree.leaves(params):
    shards = [np.asarray(s.data) for s in leaf.addressable_shards]
    assert len(shards) == 8
    for shard in shards[1:]:
      np.testing.assert_array_equal(shard, shards[0])
  assert np.abs(np.asarray(params["w"].addressable_data(0))).max() > 0


def test_opt_state_without_device_axis_is_refused():
  tx = dp_problem.make_tx(sj.top_k(0.1))
  step, params, _ = _setup(tx)
  with pytest.raises(ValueError, match="make it with init_opt_state"):
    step(params, {}, tx.init(params), dp_problem.data(0))


def test_axis_name_must_be_a_mesh_axis():
  with pytest.raises(ValueError, match="'batch' is not an axis"):
    parallel.make_train_step(dp_problem.loss_fn, optax.sgd(0.1),
                             parallel.data_mesh(2), axis_name="batch")
