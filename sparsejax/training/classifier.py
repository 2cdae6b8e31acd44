"""Loss and evaluation of Flax classifiers called as ``model(x, train=...)``.

``model_state`` holds the non-parameter collections (e.g. ``batch_stats``);
it is ``{}`` for stateless models.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def split_variables(variables):
  """``(params, model_state)`` from Flax variables."""
  variables = dict(variables)
  return variables.pop("params"), variables


def classification_loss(model):
  """``loss_fn(params, model_state, (x, y)) -> (loss, (model_state, metrics))``.

  Mean softmax cross-entropy with integer labels, in training mode (mutable
  ``model_state`` collections are updated); metrics has ``accuracy``.
  """

  def loss_fn(params, model_state, batch):
    x, y = batch
    variables = {"params": params, **model_state}
    if model_state:
      logits, model_state = model.apply(variables, x, train=True,
                                        mutable=list(model_state))
    else:
      logits = model.apply(variables, x, train=True)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
    return loss, (model_state, {"accuracy": accuracy})

  return loss_fn


@functools.partial(jax.jit, static_argnums=0)
def _eval_sums(model, params, model_state, x, y, mask):
  logits = model.apply({"params": params, **model_state}, x, train=False)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  correct = jnp.argmax(logits, -1) == y
  return jnp.sum(losses * mask), jnp.sum(correct * mask)


def evaluate(model, params, model_state, dataset, batch_size: int = 1000):
  """Mean loss and accuracy over a whole dataset (last batch masked)."""
  n = dataset.x.shape[0]
  loss = correct = 0.0
  for start in range(0, n, batch_size):
    x = dataset.x[start:start + batch_size]
    y = dataset.y[start:start + batch_size]
    pad = batch_size - x.shape[0]
    mask = np.concatenate([np.ones(x.shape[0]), np.zeros(pad)]).astype(
        np.float32)
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    y = np.concatenate([y, np.zeros((pad,), y.dtype)])
    l, c = _eval_sums(model, params, model_state, x, y, mask)
    loss, correct = loss + float(l), correct + float(c)
  return {"test_loss": loss / n, "test_accuracy": correct / n}
