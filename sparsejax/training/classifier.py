"""Loss and evaluation of Flax classifiers called as ``model(x, train=...)``.

``model_state`` holds the non-parameter collections (e.g. ``batch_stats``);
it is ``{}`` for stateless models.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from sparsejax.federated.evaluation import as_xy
from sparsejax.federated.evaluation import chunked_mean
from sparsejax.federated.model import classification_metrics


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
    metrics = classification_metrics(logits, y)
    return jnp.mean(metrics["loss"]), (
        model_state, {"accuracy": jnp.mean(metrics["accuracy"])})

  return loss_fn


@functools.partial(jax.jit, static_argnums=(0, 4))
def _evaluate(model, params, model_state, data, batch_size):
  def per_example(batch):
    logits = model.apply({"params": params, **model_state}, batch["x"],
                         train=False)
    return classification_metrics(logits, batch["y"])
  return chunked_mean(per_example, data, batch_size)


def evaluate(model, params, model_state, dataset, batch_size: int = 1000):
  """Mean loss and accuracy over a whole dataset (a ``Dataset`` or ``(x, y)``).

  In chunks of ``batch_size``, the last one masked
  (:func:`sparsejax.federated.evaluation.chunked_mean`). Returns
  ``test_loss`` and ``test_accuracy``.
  """
  x, y = as_xy(dataset, "dataset")
  means = _evaluate(model, params, model_state, {"x": x, "y": y}, batch_size)
  return {"test_loss": float(means["loss"]),
          "test_accuracy": float(means["accuracy"])}
