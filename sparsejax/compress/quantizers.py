"""Quantizing compressors: QSGD, scaled sign, cast, and no compression."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.compress.base import Compressor
from sparsejax.compress.base import check_at_least
from sparsejax.compress.base import make_compressor
from sparsejax.compress.messages import DenseMessage
from sparsejax.compress.messages import QuantizedMessage
from sparsejax.compress.messages import SignMessage


def qsgd(levels: int = 256, *, seed: int = 0) -> Compressor:
  r"""QSGD stochastic quantization to ``s = levels`` levels per tensor.

  .. math:: C(x)_i = \|x\|_2 \, \mathrm{sign}(x_i) \, \xi_i / s, \quad
     \xi_i = \lfloor s|x_i|/\|x\| \rfloor + \mathrm{Bernoulli}(\text{frac})

  Unbiased. Bits: 32 (norm) + ``n * (ceil(log2(s + 1)) + 1)``.
  Static under ``optax.inject_hyperparams``: ``levels``.

  References:
    Alistarh et al., "QSGD: Communication-Efficient SGD via Gradient
    Quantization and Encoding", NeurIPS 2017, https://arxiv.org/abs/1610.02132
  """
  check_at_least(levels, 1, "levels")
  level_dtype = (jnp.int8 if levels < 2**7 else
                 jnp.int16 if levels < 2**15 else jnp.int32)

  def encode_vector(x, key):
    xf = x.astype(jnp.float32)
    norm = jnp.linalg.norm(xf)
    scaled = jnp.abs(xf) / jnp.where(norm > 0, norm, 1.0) * levels
    floor = jnp.floor(scaled)
    up = jax.random.uniform(key, x.shape) < (scaled - floor)
    signed = jnp.sign(xf) * (floor + up)
    return QuantizedMessage(norm, signed.astype(level_dtype), levels,
                            x.shape, x.dtype)

  return make_compressor(encode_vector, seed=seed)


qsgd.static_args = ("levels",)


def scaled_sign() -> Compressor:
  r"""``C(x) = sign(x) * ||x||_1 / d`` per tensor (sign(0) sent as +).

  Contractive; ``d + 32`` bits per tensor.

  References:
    Karimireddy, Rebjock, Stich, Jaggi, "Error Feedback Fixes SignSGD and
    other Gradient Compression Schemes", ICML 2019,
    https://arxiv.org/abs/1901.09847
  """

  def encode_vector(x, key):
    del key
    scale = jnp.mean(jnp.abs(x.astype(jnp.float32)))
    return SignMessage(jnp.signbit(x), scale, x.shape, x.dtype)

  return make_compressor(encode_vector)


scaled_sign.static_args = ()


def cast(dtype=jnp.bfloat16) -> Compressor:
  """Sends every value in ``dtype`` (e.g. bf16: 16 bits per value)."""
  if not jnp.issubdtype(np.dtype(dtype), jnp.floating):
    raise ValueError(f"dtype must be a float dtype, got {dtype}")

  def encode_vector(x, key):
    del key
    return DenseMessage(x.astype(dtype), x.shape, x.dtype)

  return make_compressor(encode_vector)


cast.static_args = ("dtype",)


def no_compression() -> Compressor:
  """The dense baseline with counters: sends everything at full precision.

  Unlike ``optax.identity``, it is a :class:`Compressor`: its messages are
  counted (``32 * n`` bits per fp32 leaf) and averaged over devices with one
  all-reduce (:func:`sparsejax.parallel.compressed_mean`).
  """

  def encode_vector(x, key):
    del key
    return DenseMessage(x, x.shape, x.dtype)

  return make_compressor(encode_vector)


no_compression.static_args = ()
