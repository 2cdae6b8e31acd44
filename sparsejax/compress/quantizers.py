"""Quantizing compressors: QSGD, scaled sign, cast, and no compression."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sparsejax.compress.base import Compressor
from sparsejax.compress.base import check_float_dtype
from sparsejax.compress.base import check_int
from sparsejax.compress.base import make_compressor
from sparsejax.compress.messages import DenseMessage
from sparsejax.compress.messages import QuantizedMessage
from sparsejax.compress.messages import SignMessage

MAX_LEVELS = 2**24  # float32 holds every level up to here exactly


def _power_of_two_scale(xf):
  """A power of two ``2**s`` near ``max|x|`` (``s`` clipped to normal floats).

  ``x / 2**s`` is exact and at most 4 in magnitude, so sums of squares of
  any finite float32 input stay finite, and the result ``2**s * f(x / 2**s)``
  rounds like the unscaled formula (where that one does not overflow).
  """
  _, exponent = jnp.frexp(jnp.max(jnp.abs(xf)))
  exponent = jnp.clip(exponent, -126, 126)
  return jnp.ldexp(jnp.float32(1), exponent), jnp.ldexp(jnp.float32(1),
                                                        -exponent)


def _l2_norm(xf) -> jax.Array:
  """``||x||_2`` of a float32 vector without overflow of the squares."""
  scale, inverse = _power_of_two_scale(xf)
  return scale * jnp.sqrt(jnp.sum(jnp.square(xf * inverse)))


def _mean_abs(xf) -> jax.Array:
  """``mean |x|`` of a float32 vector without overflow of the sum."""
  scale, inverse = _power_of_two_scale(xf)
  return scale * jnp.mean(jnp.abs(xf * inverse))


def qsgd(levels: int = 256, *, seed: int = 0) -> Compressor:
  r"""QSGD stochastic quantization to ``s = levels`` levels per tensor.

  .. math:: C(x)_i = \|x\|_2 \, \mathrm{sign}(x_i) \, \xi_i / s, \quad
     \xi_i = \lfloor s|x_i|/\|x\| \rfloor + \mathrm{Bernoulli}(\text{frac})

  Unbiased. Bits: 32 (norm) + ``n * (ceil(log2(s + 1)) + 1)``. ``levels``
  is an int in ``[1, 2**24]``. The norm is computed in float32 without
  overflow for any finite input whose norm is a finite float32.
  Static under ``optax.inject_hyperparams``: ``levels``.

  References:
    Alistarh et al., "QSGD: Communication-Efficient SGD via Gradient
    Quantization and Encoding", NeurIPS 2017, https://arxiv.org/abs/1610.02132
  """
  levels = check_int(levels, "levels", 1, MAX_LEVELS)
  level_dtype = (jnp.int8 if levels < 2**7 else
                 jnp.int16 if levels < 2**15 else jnp.int32)

  def encode_vector(x, key):
    xf = x.astype(jnp.float32)
    norm = _l2_norm(xf)
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

  Contractive; ``d + 32`` bits per tensor. The scale is computed without
  overflow for any finite input.

  References:
    Karimireddy, Rebjock, Stich, Jaggi, "Error Feedback Fixes SignSGD and
    other Gradient Compression Schemes", ICML 2019,
    https://arxiv.org/abs/1901.09847
  """

  def encode_vector(x, key):
    del key
    scale = _mean_abs(x.astype(jnp.float32))
    return SignMessage(jnp.signbit(x), scale, x.shape, x.dtype)

  return make_compressor(encode_vector)


scaled_sign.static_args = ()


def cast(dtype=jnp.bfloat16) -> Compressor:
  """Sends every value in ``dtype`` (e.g. bf16: 16 bits per value)."""
  if dtype is None:
    raise TypeError("dtype must be a float dtype such as jnp.bfloat16, got "
                    "None")
  check_float_dtype(dtype, "dtype")

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
