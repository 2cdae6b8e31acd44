"""ResNet-18, CIFAR variant (3x3 stride-1 stem, no initial max pool).

``norm="batch" | "group" | "none"``; BatchNorm statistics are local state
(never compressed), averaged over ``bn_axis_name`` in data-parallel training;
federated users should prefer ``norm="group"``. Details in
:mod:`sparsejax.models.common`.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from sparsejax.models import common
from sparsejax.models.common import ConvNormAct
from sparsejax.models.common import Dtype


class _BasicBlock(nn.Module):
  """ResNet basic block with a projection shortcut when the shape changes."""

  features: int
  strides: int
  norm: str
  dtype: Dtype
  bn_axis_name: str | None
  group_norm_groups: int

  @nn.compact
  def __call__(self, x, train: bool):
    args = (self.norm, self.dtype, self.bn_axis_name, self.group_norm_groups)
    y = ConvNormAct(self.features, *args, strides=self.strides, name="a")(x, train)
    y = ConvNormAct(self.features, *args, act=False, name="b")(y, train)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), strides=self.strides,
                  use_bias=self.norm == "none",
                  kernel_init=nn.initializers.he_normal(), dtype=self.dtype,
                  param_dtype=jnp.float32, name="shortcut_conv")(x)
      x = common.norm_layer(self.norm, train=train, dtype=self.dtype,
                            channels=self.features, bn_axis_name=self.bn_axis_name,
                            group_norm_groups=self.group_norm_groups,
                            name="shortcut_norm")(x)
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """ResNet-18, CIFAR variant: 3x3 stride-1 stem and no initial max pool.

  ``conv3x3(64) -> 4 stages x 2 basic blocks (64, 128, 256, 512 channels,
  strides 1, 2, 2, 2) -> global average pool -> dense``: 11,173,962
  parameters for 10 classes with BatchNorm. See the module docstring for
  ``norm`` and BatchNorm state.

  References:
    He et al., "Deep Residual Learning for Image Recognition",
    https://arxiv.org/abs/1512.03385
  """

  num_classes: int = 10
  width: int = 64
  norm: str = "batch"
  bn_axis_name: str | None = None
  group_norm_groups: int = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    common.check_norm(self.norm)
    args = (self.norm, self.dtype, self.bn_axis_name, self.group_norm_groups)
    x = jnp.asarray(x, self.dtype)
    x = ConvNormAct(self.width, *args, name="stem")(x, train)
    for stage, mult in enumerate((1, 2, 4, 8)):
      for i in range(2):
        strides = 2 if stage > 0 and i == 0 else 1
        x = _BasicBlock(self.width * mult, strides, *args,
                        name=f"stage{stage + 1}_block{i}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                 name="head")(x)
    return x.astype(jnp.float32)
