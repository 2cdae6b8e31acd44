"""Build models by name and initialise their variables."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import numpy as np

from sparsejax.models.leaf_cnn import LeafCNN
from sparsejax.models.mlp import MLP
from sparsejax.models.resnet18 import ResNet18
from sparsejax.models.resnet9 import ResNet9
from sparsejax.models.text_classifier import TextClassifier

_MODELS = {
    "mlp": (MLP, {}),
    "leaf_cnn": (LeafCNN, {}),
    "resnet9": (ResNet9, {}),
    "resnet18": (ResNet18, {}),
    "text_classifier": (TextClassifier, {}),
    "text_bag": (TextClassifier, {"kind": "bag"}),
    "text_transformer": (TextClassifier, {"kind": "transformer"}),
}
_ALIASES = {"cnn": "leaf_cnn", "femnist_cnn": "leaf_cnn", "resnet-9": "resnet9",
            "resnet-18": "resnet18", "text": "text_classifier"}
MODEL_NAMES = tuple(_MODELS)


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """A model by name: ``mlp``, ``leaf_cnn``, ``resnet9``, ``resnet18``,
  ``text_classifier`` (also ``text_bag`` / ``text_transformer``).

  Args:
    name: model name (case-insensitive; aliases ``cnn``, ``text``, ...).
    num_classes: output logits.
    **kwargs: module attributes, e.g. ``dtype=jnp.bfloat16``,
      ``norm="group"``, ``width=32``, ``vocab_size=20000`` (required for the
      text models), ``features=(200, 200)``.

  Example:

  >>> import jax.numpy as jnp
  >>> from sparsejax.models import create_model, init_variables
  >>> model = create_model("mlp", 10, features=(32,), dtype=jnp.bfloat16)
  >>> variables = init_variables(model, 0, jnp.zeros((1, 28, 28, 1)))
  >>> variables["params"]["head"]["kernel"].dtype  # params stay float32
  dtype('float32')
  >>> model.apply(variables, jnp.zeros((2, 28, 28, 1))).shape
  (2, 10)
  """
  key = name.lower()
  key = _ALIASES.get(key, key)
  if key not in _MODELS:
    raise ValueError(f"unknown model {name!r}; known: {MODEL_NAMES}")
  cls, defaults = _MODELS[key]
  return cls(num_classes=num_classes, **{**defaults, **kwargs})


def init_variables(model: nn.Module, rng, sample_input) -> dict:
  """``model.init`` in eval mode, jitted: ``{"params": ..., ["batch_stats": ...]}``.

  Compiled once per (model, input shape). On CPU the default threefry PRNG
  makes this compile slowly for deep nets (ResNet-9: several seconds); a key
  made with ``jax.random.key(seed, impl="rbg")`` compiles several times faster.

  Args:
    model: a module whose ``__call__`` is ``(x, train=False)``.
    rng: a JAX PRNG key or an int seed.
    sample_input: an array with the input's shape and dtype (a batch of one
      is enough; only shapes matter).
  """
  if isinstance(rng, (int, np.integer)):
    rng = jax.random.key(int(rng))
  return _jitted_init(model, rng, sample_input)


@functools.partial(jax.jit, static_argnums=0)
def _jitted_init(model: nn.Module, rng, sample_input):
  # Modules are frozen dataclasses, so equal models share one compilation.
  return model.init(rng, sample_input, train=False)


def count_params(tree) -> int:
  """Total number of elements in a pytree of arrays (e.g. ``variables["params"]``)."""
  return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(tree)))
