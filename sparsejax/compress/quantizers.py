"""Quantizing compressors: QSGD, TernGrad, natural compression, 1-bit SGD,
scaled sign, cast, and no compression."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sparsejax.compress.base import Compressor
from sparsejax.compress.base import check_float_dtype
from sparsejax.compress.base import check_int
from sparsejax.compress.base import check_number
from sparsejax.compress.base import make_compressor
from sparsejax.compress.messages import DenseMessage
from sparsejax.compress.messages import PowerOfTwoMessage
from sparsejax.compress.messages import QuantizedMessage
from sparsejax.compress.messages import SignMessage
from sparsejax.compress.messages import TwoValueMessage

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


def terngrad(*, clip_sigma: float | None = None, seed: int = 0) -> Compressor:
  r"""TernGrad: stochastic ternary levels ``{-s, 0, s}`` per tensor.

  .. math:: C(x)_i = s \, \mathrm{sign}(x_i) \, b_i, \quad
     b_i \sim \mathrm{Bernoulli}(|x_i| / s), \quad s = \max_j |x_j|

  Unbiased: ``E[C(x)] = x``. With ``clip_sigma = c`` (the paper uses 2.5),
  ``x`` is first clipped to ``[-c sigma, c sigma]``, ``sigma`` the standard
  deviation of the tensor's entries; ``C`` is then unbiased for the clipped
  tensor only. Bits: ``32 + 2 n`` (the fp32 scaler ``s`` and a 2-bit level
  per entry, sent as a :class:`~sparsejax.compress.QuantizedMessage` with
  one level). ``s`` and ``sigma`` are computed without overflow for any
  finite input.

  Args:
    clip_sigma: ``None`` (no clipping, as GRACE's ``terngrad``) or a number
      ``c > 0``.
    seed: seed of the PRNG key kept in state.

  References:
    Wen et al., "TernGrad: Ternary Gradients to Reduce Communication in
    Distributed Deep Learning", NeurIPS 2017, https://arxiv.org/abs/1705.07878
  """
  if clip_sigma is not None:
    check_number(clip_sigma, "clip_sigma", 0, low_open=True)

  def encode_vector(x, key):
    # In units of a power of two near max|x|: no overflow of the squares,
    # no ratio lost to a subnormal reciprocal.
    unit, inverse = _power_of_two_scale(x.astype(jnp.float32))
    y = x.astype(jnp.float32) * inverse
    if clip_sigma is not None:
      bound = clip_sigma * jnp.std(y)
      y = jnp.clip(y, -bound, bound)
    top = jnp.max(jnp.abs(y))
    keep = (jax.random.uniform(key, x.shape)
            < jnp.abs(y) / jnp.where(top > 0, top, 1.0))
    levels = jnp.sign(y) * keep
    return QuantizedMessage(unit * top, levels.astype(jnp.int8), 1, x.shape,
                            x.dtype)

  return make_compressor(encode_vector, seed=seed)


terngrad.static_args = ()


def natural_compression(*, seed: int = 0) -> Compressor:
  r"""Natural compression: each entry rounded at random to a power of two.

  For ``2**a <= |x_i| < 2**(a + 1)``:

  .. math:: C(x)_i = \mathrm{sign}(x_i) \cdot \begin{cases}
     2^{a+1} & \text{with probability } |x_i| / 2^a - 1 \\
     2^a & \text{otherwise} \end{cases}

  Unbiased, with ``E||C(x) - x||^2 <= ||x||^2 / 8``. Bits: ``9 n`` (a sign
  bit and the 8-bit float32 exponent per entry). Zero stays zero. Entries
  below ``2**-126`` (float32 subnormals) are rounded the same way between 0
  and ``2**-126``, so they stay unbiased. Rounding up never passes the
  largest power of two of the updates' dtype (``2**127`` for float32 and
  bfloat16, ``2**15`` for float16): entries above it are sent as it, the one
  biased case. A non-finite entry is sent as an infinity of its sign.

  References:
    Horvath, Ho, Horvath, Sahu, Canini, Richtarik, "Natural Compression for
    Distributed Deep Learning", MSML 2022, https://arxiv.org/abs/1905.10988
  """

  def encode_vector(x, key):
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    exponent = (bits >> 23) & 0xFF
    mantissa = bits & 0x7FFFFF
    # P(up) = mantissa / 2**23 = |x| / 2**a - 1 (subnormals: |x| / 2**-126).
    up = (jax.random.bits(key, x.shape, jnp.uint32) >> 9) < mantissa
    largest = 126 + jnp.finfo(x.dtype).maxexp  # biased exponent of the cap
    rounded = jnp.where(exponent == 0xFF, exponent,
                        jnp.minimum(exponent + up, largest))
    return PowerOfTwoMessage(bits >> 31 == 1, rounded.astype(jnp.uint8),
                             x.shape, x.dtype)

  return make_compressor(encode_vector, seed=seed)


natural_compression.static_args = ()


def onebit() -> Compressor:
  r"""1-bit SGD: one bit per entry, the mean of its side as the value.

  .. math:: C(x)_i = \begin{cases} \mathrm{mean}\{x_j : x_j > 0\} &
     x_i > 0 \\ \mathrm{mean}\{x_j : x_j \le 0\} & \text{otherwise}
     \end{cases}

  per tensor (GRACE's ``onebit`` puts zeros on the positive side instead).
  Biased: meant to be used under error feedback
  (``sj.error_feedback(sj.onebit())``), as in the paper. Bits: ``64 + n``
  (two fp32 means and a bit per entry). The means are computed without
  overflow for any finite input.

  References:
    Seide, Fu, Droppo, Li, Yu, "1-Bit Stochastic Gradient Descent and its
    Application to Data-Parallel Distributed Training of Speech DNNs",
    Interspeech 2014
  """

  def encode_vector(x, key):
    del key
    xf = x.astype(jnp.float32)
    scale, inverse = _power_of_two_scale(xf)
    scaled = xf * inverse
    high = xf > 0

    def mean(where):
      count = jnp.sum(where)
      total = jnp.sum(jnp.where(where, scaled, 0.0))
      return scale * (total / jnp.maximum(count, 1))

    return TwoValueMessage(high, mean(high), mean(~high), x.shape, x.dtype)

  return make_compressor(encode_vector)


onebit.static_args = ()


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
