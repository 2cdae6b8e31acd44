"""signSGD with majority vote and Signum on one worker, against numpy.

The multi-device vote is tested in tests/parallel/test_powersgd_parallel.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj


def _np_sign(x):
  """One bit per entry: a zero sends +1."""
  return np.where(np.asarray(x, np.float64) < 0, -1.0, 1.0)


def test_sends_one_bit_per_entry_and_decodes_to_signs():
  tree = {"w": jnp.asarray([[0.5, -2.0, 0.0], [-0.0, 3.0, -1e-30]]),
          "b": jnp.asarray([-1.5, 2.5], jnp.bfloat16),
          "i": jnp.asarray([3, -4], jnp.int32)}
  tx = sj.sign_majority_vote()
  out, state = jax.jit(tx.update)(tree, tx.init(tree))
  np.testing.assert_array_equal(out["w"], _np_sign(tree["w"]))
  np.testing.assert_array_equal(np.float32(out["b"]), _np_sign(tree["b"]))
  assert out["b"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(out["i"], tree["i"])
  # 6 + 2 sign bits, no scale; the int leaf whole.
  assert sj.comm_stats(state, exact=True)["bits_sent"] == 6 + 2 + 2 * 32


def test_signum_is_the_sign_of_each_workers_momentum():
  beta, steps = 0.8, 5
  tx = sj.signum(beta)
  params = {"w": jnp.zeros(7)}
  state = tx.init(params)
  rng = np.random.default_rng(0)
  m = np.zeros(7)
  for _ in range(steps):
    g = rng.standard_normal(7).astype(np.float32)
    out, state = tx.update({"w": jnp.asarray(g)}, state, params)
    m = beta * m + g
    np.testing.assert_array_equal(out["w"], _np_sign(m))
  assert sj.comm_stats(state, exact=True)["bits_sent"] == steps * 7


@pytest.mark.parametrize("beta", [-0.1, 1.0, float("nan")])
def test_signum_refuses_a_bad_beta(beta):
  with pytest.raises(ValueError, match="beta"):
    sj.signum(beta)


def test_chosen_by_config():
  tx = sj.create_compressor({"name": "sign_majority_vote"})
  out, _ = tx.update(jnp.asarray([-1.0, 2.0]), tx.init(None))
  np.testing.assert_array_equal(out, [-1.0, 1.0])
