"""Pieces shared by the models: the dtype policy and the norm-layer switch.

dtype policy: every model takes ``dtype`` (the *computation* dtype, e.g.
``jnp.bfloat16``); parameters are always created in float32
(``param_dtype``), and logits are returned in float32 so that losses are
computed in full precision.

Normalisation and BatchNorm state (``norm=`` of the ResNets):

* ``"batch"`` (default): :class:`flax.linen.BatchNorm`. Call the model as
  ``model.apply(variables, x, train=True, mutable=["batch_stats"])`` while
  training and ``model.apply(variables, x, train=False)`` to evaluate
  (``use_running_average = not train``). The running mean/variance live in
  the ``"batch_stats"`` collection, separate from ``"params"``: they are
  *local state*, never compressed or communicated by sparsejax's compressors,
  which only see the gradients / updates of ``params``. In data-parallel
  training (``shard_map`` over a mesh axis) pass ``bn_axis_name="data"`` so
  that each BatchNorm averages its batch moments across devices
  (``nn.BatchNorm(axis_name=...)``, one small all-reduce per layer, not
  counted as compressed traffic); with ``bn_axis_name=None`` every device
  normalises with its own shard's moments and the running statistics drift
  apart per device. In federated simulation each client keeps its own
  statistics; they are ill-defined across non-IID clients, which is why
* ``"group"``: :class:`flax.linen.GroupNorm` (``group_norm_groups`` groups,
  reduced to a divisor of the channel count): stateless, the usual choice for
  federated learning (Hsieh et al., 2020, https://arxiv.org/abs/1910.00189).
* ``"none"``: no normalisation (convolutions then carry a bias).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any
NORMS = ("batch", "group", "none")


def check_norm(norm: str) -> None:
  if norm not in NORMS:
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def norm_layer(norm: str, *, train: bool, dtype: Dtype, channels: int,
               bn_axis_name: str | None = None, group_norm_groups: int = 32,
               bn_momentum: float = 0.9, name: str | None = None):
  """A callable ``x -> normalised x`` for ``norm`` in ``batch|group|none``.

  ``batch``: :class:`flax.linen.BatchNorm` with ``use_running_average=not
  train``, statistics in the ``batch_stats`` collection and, when
  ``bn_axis_name`` is set, batch moments averaged over that mapped axis.
  ``group``: :class:`flax.linen.GroupNorm` with ``gcd(group_norm_groups,
  channels)`` groups (no state). ``none``: identity.
  """
  check_norm(norm)
  if norm == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=bn_momentum,
                        epsilon=1e-5, axis_name=bn_axis_name, dtype=dtype,
                        param_dtype=jnp.float32, name=name)
  if norm == "group":
    return nn.GroupNorm(num_groups=math.gcd(group_norm_groups, channels),
                        epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32,
                        name=name)
  return lambda x: x


class ConvNormAct(nn.Module):
  """``conv3x3 -> norm -> relu`` (conv bias only without a norm; He init)."""

  features: int
  norm: str
  dtype: Dtype
  bn_axis_name: str | None
  group_norm_groups: int
  strides: int = 1
  act: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, (3, 3), strides=self.strides, padding="SAME",
                use_bias=self.norm == "none", kernel_init=nn.initializers.he_normal(),
                dtype=self.dtype, param_dtype=jnp.float32, name="conv")(x)
    x = norm_layer(self.norm, train=train, dtype=self.dtype,
                   channels=self.features, bn_axis_name=self.bn_axis_name,
                   group_norm_groups=self.group_norm_groups, name="norm")(x)
    return nn.relu(x) if self.act else x
