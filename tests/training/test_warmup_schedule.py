"""The SA-PEF code's warm-up + cosine (``warmup_cosine_schedule``)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments.federated import train
from sparsejax.training import optim

# peak 0.1, end 0.003, W = 5, T = 10; r = step + 1. Warm-up 0.1 * r / 5,
# then 0.003 + 0.0485 * (1 + cos(pi * (r - 5) / 5)), by hand with
# cos(pi/5) = 0.80901699, cos(2 pi/5) = 0.30901699.
EXPECTED = [0.02, 0.04, 0.06, 0.08, 0.1,
            0.003 + 0.0485 * 1.80901699, 0.003 + 0.0485 * 1.30901699,
            0.003 + 0.0485 * 0.69098301, 0.003 + 0.0485 * 0.19098301,
            0.003, 0.003, 0.003]


def test_hand_computed_values():
  schedule = optim.warmup_cosine_schedule(0.1, 0.003, 5, 10)
  got = [float(schedule(s)) for s in range(12)]
  np.testing.assert_allclose(got, EXPECTED, rtol=1e-5)


def test_traced_round_gives_the_same():
  schedule = optim.warmup_cosine_schedule(0.1, 0.003, 5, 10)
  got = jax.jit(jax.vmap(schedule))(jnp.arange(12, dtype=jnp.int32))
  np.testing.assert_allclose(got, EXPECTED, rtol=1e-5)


def test_no_warmup_starts_in_the_cosine():
  schedule = optim.warmup_cosine_schedule(0.1, 0.0, 0, 4)
  np.testing.assert_allclose(  # r = 1..4: t = r / 4
      [float(schedule(s)) for s in range(4)],
      [0.05 * (1 + 0.70710678), 0.05, 0.05 * (1 - 0.70710678), 0.0],
      rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("warmup,total", [(-1, 10), (0, 0)])
def test_bad_arguments(warmup, total):
  with pytest.raises(ValueError, match="warmup_steps"):
    optim.warmup_cosine_schedule(0.1, 0.0, warmup, total)


def test_federated_local_optimizer_uses_it_from_round_0():
  """Round 0 (the first) steps with lr * 1 / W, fresh momentum, decay first."""
  local = ml_collections.ConfigDict(
      {"lr": 0.1, "lr_min": 0.003, "warmup_rounds": 5, "momentum": 0.9,
       "weight_decay": 0.5})
  opt_at = train.local_optimizer(local, 10)
  params = {"w": jnp.array([2.0])}
  grads = {"w": jnp.array([1.0])}
  for rnd, lr in ((0, 0.02), (5, EXPECTED[5])):
    tx = opt_at(jnp.int32(rnd))
    updates, _ = tx.update(grads, tx.init(params), params)
    # (g + wd * w) = 2.0, scaled by -lr; a fresh momentum adds nothing.
    np.testing.assert_allclose(updates["w"], [-lr * 2.0], rtol=1e-5)
  assert isinstance(opt_at(0), optax.GradientTransformation)
