"""The model interface of the federated engine.

A :class:`FederatedModel` is three pure functions over a params pytree and a
batch ``{"x": inputs, "y": labels}``; :func:`classifier` builds one from a
Flax module. Models must be stateless across clients: BatchNorm statistics
would be per-client state whose aggregation is ill-defined, so modules with
mutable collections are rejected; use ``norm="group"`` or ``"none"``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

Params = Any
Batch = dict[str, jax.Array]


class FederatedModel(NamedTuple):
  """Pure functions of a model trained by federated algorithms.

  Attributes:
    init: ``key -> params``.
    loss: ``(params, batch) -> (scalar loss, metrics dict)``, the mean over
      the batch; differentiated by local training.
    evaluate: ``(params, batch) -> dict of per-example arrays (B,)`` (e.g.
      ``loss``, ``accuracy``); the engine averages them over valid examples.
  """
  init: Callable[[jax.Array], Params]
  loss: Callable[[Params, Batch], tuple[jax.Array, dict]]
  evaluate: Callable[[Params, Batch], dict[str, jax.Array]]


def classification_metrics(logits: jax.Array,
                           labels: jax.Array) -> dict[str, jax.Array]:
  """Per-example softmax cross-entropy ``loss`` and 0/1 ``accuracy`` (float32)."""
  return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits,
                                                                  labels),
          "accuracy": (jnp.argmax(logits, -1) == labels).astype(jnp.float32)}


def classifier(module, example_x) -> FederatedModel:
  """A softmax cross-entropy :class:`FederatedModel` around a Flax module.

  Args:
    module: a ``flax.linen`` module called as ``module(x, train=bool)`` that
      returns logits and has no state besides ``params``.
    example_x: an input batch (or ``jax.ShapeDtypeStruct``) for ``init``.

  Raises:
    ValueError: at ``init``, if the module has mutable collections such as
      ``batch_stats``.
  """

  def init(key):
    variables = module.init(key, jnp.zeros(example_x.shape, example_x.dtype),
                            train=False)
    extra = sorted(set(variables) - {"params"})
    if extra:
      raise ValueError(
          f"federated models must be stateless, found collections {extra}: "
          "use norm='group' or norm='none' instead of BatchNorm")
    return variables["params"]

  def per_example(params, batch, train):
    logits = module.apply({"params": params}, batch["x"], train=train)
    return classification_metrics(logits, batch["y"])

  def loss(params, batch):
    metrics = per_example(params, batch, True)
    return (jnp.mean(metrics["loss"]),
            {"accuracy": jnp.mean(metrics["accuracy"])})

  def evaluate(params, batch):
    return per_example(params, batch, False)

  return FederatedModel(init, loss, evaluate)
