"""The LEAF FEMNIST CNN (Caldas et al., 2018)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from sparsejax.models.common import Dtype
from sparsejax.models.patch_conv import PatchConv


class LeafCNN(nn.Module):
  """LEAF's FEMNIST CNN, input ``(B, 28, 28, 1)``.

  ``conv5x5(32, same) -> relu -> maxpool2 -> conv5x5(64, same) -> relu ->
  maxpool2 -> flatten(7*7*64) -> dense(2048) -> relu -> dense(num_classes)``,
  as in LEAF's ``models/femnist/cnn.py``: 6,603,710 parameters for 62
  classes (832 + 51,264 + 6,424,576 + 127,038). ``hidden`` narrows the dense
  layer (e.g. 128 for CPU-sized federated sweeps) and ``features`` the
  convolutions, one 5x5 conv + 2x2 max-pool per width (e.g. ``(8, 16)``: a
  tenth of the multiply-adds on 32x32x3 inputs). ``patch_conv`` computes
  the convolutions with :class:`~sparsejax.models.PatchConv` (same
  parameters; for simulations that vmap per-client models on a CPU, where
  ``nn.Conv`` becomes a grouped convolution; not timed for this model).

  References:
    Caldas et al., "LEAF: A Benchmark for Federated Settings",
    https://arxiv.org/abs/1812.01097
  """

  num_classes: int = 62
  hidden: int = 2048
  features: tuple[int, ...] = (32, 64)
  dtype: Dtype = jnp.float32
  patch_conv: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout or norm
    if not self.features or any(not isinstance(w, int) or w < 1
                                for w in self.features):
      raise ValueError(f"LeafCNN: features={self.features!r} must be one or "
                       "more positive convolution widths, e.g. (32, 64)")
    kw = dict(dtype=self.dtype, param_dtype=jnp.float32)
    x = jnp.asarray(x, self.dtype)
    conv = PatchConv if self.patch_conv else nn.Conv
    for i, width in enumerate(self.features):
      x = nn.relu(conv(width, (5, 5), padding="SAME", name=f"conv_{i}", **kw)(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.hidden, name="dense_0", **kw)(x))
    x = nn.Dense(self.num_classes, name="head", **kw)(x)
    return x.astype(jnp.float32)
