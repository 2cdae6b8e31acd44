"""ResNet-9 for CIFAR (Page's DAWNBench network).

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


class ResNet9(nn.Module):
  """ResNet-9 for 32x32 images (Page, "How to train your ResNet", DAWNBench).

  ``prep(w) -> [conv(2w), maxpool, +res(2w, 2w)] -> [conv(4w), maxpool] ->
  [conv(8w), maxpool, +res(8w, 8w)] -> global max pool -> dense ->
  * logit_scale``. 6,573,130 parameters for ``width=64``, 10 classes.
  See the module docstring for ``norm`` and BatchNorm state.

  Attributes:
    num_classes: output logits.
    width: channels of the first layer (64 in the original).
    norm: ``"batch"``, ``"group"`` or ``"none"``.
    bn_axis_name: mapped axis over which BatchNorm averages batch moments.
    group_norm_groups: GroupNorm groups (clipped to a divisor of channels).
    logit_scale: multiplies the logits (0.125 in the original).
    dtype: computation dtype.
  """

  num_classes: int = 10
  width: int = 64
  norm: str = "batch"
  bn_axis_name: str | None = None
  group_norm_groups: int = 32
  logit_scale: float = 0.125
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    common.check_norm(self.norm)
    block = lambda f, name: ConvNormAct(
        f, self.norm, self.dtype, self.bn_axis_name, self.group_norm_groups,
        name=name)
    w = self.width
    x = jnp.asarray(x, self.dtype)
    x = block(w, "prep")(x, train)
    x = nn.max_pool(block(2 * w, "layer1")(x, train), (2, 2), strides=(2, 2))
    x = x + block(2 * w, "res1b")(block(2 * w, "res1a")(x, train), train)
    x = nn.max_pool(block(4 * w, "layer2")(x, train), (2, 2), strides=(2, 2))
    x = nn.max_pool(block(8 * w, "layer3")(x, train), (2, 2), strides=(2, 2))
    x = x + block(8 * w, "res3b")(block(8 * w, "res3a")(x, train), train)
    x = jnp.max(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                 name="head")(x)
    return x.astype(jnp.float32) * self.logit_scale
