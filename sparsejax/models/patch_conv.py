"""A 2-D convolution as patches times a matrix, for vmap over per-client weights.

``y[b, i, j, :] = sum_{u, v, c} x_pad[b, s i + u, s j + v, c] K[u, v, c, :] + bias``

computed as ``P @ K.reshape(kh kw c_in, c_out)`` where ``P`` stacks the
``kh kw`` strided shifts of the padded input (im2col). Same parameters
(``kernel`` ``(kh, kw, c_in, c_out)``, ``bias``), initialisers and padding as
``flax.linen.Conv``, so checkpoints carry over. Why: ``jax.vmap`` over a conv
whose kernel is batched too (one model per simulated client) lowers to a
grouped convolution, which XLA:CPU runs slowly; vmapped, this one is a batched
matmul. For one model, ``nn.Conv`` is as fast or faster: use this only where
kernels are vmapped (measured in BUILD_NOTES.md).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sparsejax.models.common import Dtype


def _pads(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int, int]:
  """``(out size, pad before, pad after)`` of one spatial axis (XLA's rule)."""
  if padding == "SAME":
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2
  return (size - kernel) // stride + 1, 0, 0


def patches(x: jax.Array, kernel_size: Sequence[int], strides: Sequence[int],
            padding: str) -> jax.Array:
  """``(B, H', W', kh kw C)`` im2col patches of ``(B, H, W, C)`` input, ``(u, v, c)`` order."""
  (oh, ht, hb), (ow, wl, wr) = (
      _pads(n, k, s, padding)
      for n, k, s in zip(x.shape[1:3], kernel_size, strides))
  x = jnp.pad(x, ((0, 0), (ht, hb), (wl, wr), (0, 0)))
  (kh, kw), (sh, sw) = kernel_size, strides
  return jnp.concatenate(
      [x[:, u:u + (oh - 1) * sh + 1:sh, v:v + (ow - 1) * sw + 1:sw]
       for u in range(kh) for v in range(kw)], axis=-1)


class PatchConv(nn.Module):
  """``nn.Conv`` (NHWC, 2-D, ``"SAME"``/``"VALID"``) computed by im2col + matmul."""

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: int | Sequence[int] = 1
  padding: str = "SAME"
  use_bias: bool = True
  dtype: Dtype = None
  param_dtype: Dtype = jnp.float32
  kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f"PatchConv takes (B, H, W, C) input, got shape {x.shape}")
    if self.padding not in ("SAME", "VALID"):
      raise ValueError(f'padding must be "SAME" or "VALID", got {self.padding!r}')
    strides = ((self.strides,) * 2 if isinstance(self.strides, int)
               else tuple(self.strides))
    kernel_size = tuple(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init,
                        kernel_size + (x.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,),
                       self.param_dtype) if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = patches(x, kernel_size, strides, self.padding) @ kernel.reshape(
        -1, self.features)
    return y if bias is None else y + bias
