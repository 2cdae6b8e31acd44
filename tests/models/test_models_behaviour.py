"""What the models do: BatchNorm state, GroupNorm, padding masks, learning.

Every apply is jitted (eager flax on CPU compiles op by op and is slow),
models are tiny, and compiled functions are shared between tests; shapes and parameter counts of the full-size models are
checked abstractly in test_models_architecture.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsejax import models

# init compiles one threefry per parameter, which is slow on CPU (seconds for
# a ResNet); the "rbg" key implementation compiles several times faster.
KEY = jax.random.key(0, impl="rbg")

# Tiny ResNet inputs: 16x16 survives ResNet-9's three 2x2 pools.
X = jax.random.normal(jax.random.key(0), (4, 16, 16, 3)) * 2.0 + 1.0


class _BN:
  """A tiny BatchNorm ResNet-9 with jitted train / eval applies."""

  def __init__(self):
    self.model = models.ResNet9(num_classes=3, width=4)
    self.variables = models.init_variables(self.model, KEY, X[:1])
    self.train = jax.jit(functools.partial(
        self.model.apply, train=True, mutable=["batch_stats"]))
    self.eval = jax.jit(functools.partial(
        self.model.apply, train=False, mutable=["batch_stats"]))


@pytest.fixture(scope="module")
def bn():
  return _BN()


@pytest.mark.slow
def test_batchnorm_train_updates_stats_eval_does_not(bn):
  stats0 = bn.variables["batch_stats"]
  assert float(jnp.abs(stats0["prep"]["norm"]["mean"]).max()) == 0.0
  np.testing.assert_array_equal(stats0["prep"]["norm"]["var"], 1.0)

  out_train, updated = bn.train(bn.variables, X)
  assert set(updated) == {"batch_stats"}
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), stats0,
                         updated["batch_stats"])
  assert all(jax.tree.leaves(changed))  # every running mean and var moved

  out_eval, mutated = bn.eval(bn.variables, X)
  jax.tree.map(np.testing.assert_array_equal, mutated["batch_stats"], stats0)
  assert not np.allclose(out_train, out_eval)
  # Training mode without a mutable batch_stats is a clear error.
  with pytest.raises(Exception, match="batch_stats"):
    jax.eval_shape(functools.partial(bn.model.apply, train=True), bn.variables, X)


def test_batchnorm_eval_is_per_example_train_is_per_batch(bn):
  ev = lambda x: bn.eval(bn.variables, x)[0]
  tr = lambda x: bn.train(bn.variables, x)[0]
  # Same compiled shape (4 examples): swap the second half of the batch.
  other = jnp.concatenate([X[:2], -X[2:]])
  np.testing.assert_allclose(ev(X)[:2], ev(other)[:2], rtol=1e-4, atol=1e-5)
  assert not np.allclose(tr(X)[:2], tr(other)[:2], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_bn_axis_name_averages_moments_across_devices(bn):
  """vmap as 2 'devices' with bn_axis_name == one device holding the full batch."""
  sharded_model = models.ResNet9(num_classes=3, width=4, bn_axis_name="data")
  sharded = jax.jit(jax.vmap(
      lambda x: sharded_model.apply(bn.variables, x, train=True,
                                    mutable=["batch_stats"]),
      axis_name="data"))
  out_s, stats_s = sharded(X.reshape(2, 2, 16, 16, 3))
  out_full, stats_full = bn.train(bn.variables, X)
  np.testing.assert_allclose(out_s.reshape(4, 3), out_full, rtol=1e-4, atol=1e-5)
  jax.tree.map(lambda s, f: np.testing.assert_allclose(s[0], f, rtol=1e-4, atol=1e-6),
               stats_s, stats_full)
  jax.tree.map(lambda s: np.testing.assert_array_equal(s[0], s[1]), stats_s)


@pytest.mark.slow
def test_group_norm_stateless_and_per_example():
  model = models.ResNet18(num_classes=3, width=4, norm="group")
  variables = models.init_variables(model, KEY, X[:1])
  assert set(variables) == {"params"}
  both = jax.jit(lambda v, x: (model.apply(v, x, train=True),
                               model.apply(v, x, train=False)))
  a, b = both(variables, X)
  np.testing.assert_array_equal(a, b)
  other = jnp.concatenate([X[:2], -X[2:]])
  np.testing.assert_allclose(a[:2], both(variables, other)[0][:2], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bag", "transformer"])
def test_text_model_ignores_padding(kind):
  model = models.TextClassifier(vocab_size=50, num_classes=4, embed_dim=16,
                                kind=kind, num_layers=2, num_heads=2)
  apply = jax.jit(model.apply)
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, 50, (3, 10)).astype(np.int32)
  tokens[0, 6:] = 0
  tokens[1, 3:] = 0
  variables = models.init_variables(model, KEY, tokens[:1])
  out = apply(variables, tokens)
  np.testing.assert_allclose(apply(variables, np.pad(tokens, ((0, 0), (0, 7)))),
                             out, rtol=1e-5, atol=1e-6)
  # Whatever sits in the padding embedding (row 0) does not matter...
  v2 = jax.tree.map(lambda a: a, variables)
  table = variables["params"]["embed"]["embedding"]
  v2["params"]["embed"]["embedding"] = table.at[0].set(9.0)
  np.testing.assert_allclose(apply(v2, tokens), out, rtol=1e-5, atol=1e-6)
  # ...real tokens do; and only the transformer sees word order.
  changed = tokens.copy()
  changed[0, 0] = 1
  assert not np.allclose(apply(variables, changed)[0], out[0])
  rev = tokens.copy()
  rev[2] = rev[2, ::-1]
  assert np.allclose(apply(variables, rev)[2], out[2], atol=1e-5) == (kind == "bag")


def _train(model, x, y, steps, lr, variables=None):
  """Plain SGD with momentum on one batch; returns the losses."""
  if variables is None:
    variables = models.init_variables(model, KEY, x[:1])
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}
  tx = optax.sgd(lr, momentum=0.9)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, state, opt_state):
    def loss_fn(p):
      logits, new_state = model.apply({"params": p, **state}, x, train=True,
                                      mutable=list(state))
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, new_state
    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_state, opt_state, loss

  losses = []
  for _ in range(steps):
    params, state, opt_state, loss = step(params, state, opt_state)
    losses.append(float(loss))
  return losses


@pytest.mark.slow
@pytest.mark.parametrize("model,shape,lr", [
    (models.MLP(features=(32,), num_classes=4), (16, 28, 28, 1), 0.05),
    (models.MLP(features=(32,), num_classes=4, dtype=jnp.bfloat16), (16, 28, 28, 1), 0.05),
    (models.LeafCNN(num_classes=4), (16, 28, 28, 1), 0.01),
], ids=["mlp", "mlp_bf16", "leaf_cnn"])
def test_sgd_reduces_loss_images(model, shape, lr):
  x = jax.random.normal(jax.random.key(1), shape)
  y = jnp.arange(shape[0]) % 4
  losses = _train(model, x, y, steps=15, lr=lr)
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
def test_sgd_reduces_loss_resnet9_batchnorm(bn):
  """Training mode with BatchNorm state threaded through the steps."""
  x = jax.random.normal(jax.random.key(1), (8, 16, 16, 3))
  y = jnp.arange(8) % 3
  losses = _train(bn.model, x, y, steps=15, lr=0.05, variables=bn.variables)
  assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
@pytest.mark.parametrize("kind,lr", [("bag", 1.0), ("transformer", 0.05)])
def test_sgd_reduces_loss_text(kind, lr):
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, 100, (16, 12)).astype(np.int32)
  tokens[::2, 8:] = 0
  y = jnp.arange(16) % 4
  model = models.TextClassifier(100, 4, embed_dim=32, kind=kind, num_heads=2)
  losses = _train(model, tokens, y, steps=30, lr=lr)
  assert losses[-1] < 0.5 * losses[0], losses
