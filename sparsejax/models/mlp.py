"""A multilayer perceptron over flattened inputs."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from sparsejax.models.common import Dtype


class MLP(nn.Module):
  """ReLU MLP: flatten, ``Dense(f) -> relu`` for each of ``features``, ``Dense(num_classes)``.

  The default ``(200, 200)`` is the MNIST "2NN" of McMahan et al. (2017),
  199,210 parameters on 28x28 inputs.

  Attributes:
    features: hidden layer widths.
    num_classes: output logits.
    dtype: computation dtype (params stay float32; logits are float32).
  """

  features: Sequence[int] = (200, 200)
  num_classes: int = 10
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout or norm
    x = jnp.asarray(x, self.dtype).reshape((x.shape[0], -1))
    for i, f in enumerate(self.features):
      x = nn.relu(nn.Dense(f, dtype=self.dtype, param_dtype=jnp.float32,
                           name=f"dense_{i}")(x))
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                 name="head")(x)
    return x.astype(jnp.float32)
