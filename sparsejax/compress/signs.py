r"""signSGD with majority vote, and Signum (its momentum form).

Each worker sends the signs of its update (one bit per entry, a zero sends
``+``); the server returns the sign of their sum:

.. math:: \tilde g = \mathrm{sign}\Big(\sum_i \mathrm{sign}(g_i)\Big)

(a tie, possible with an even number of workers, gives 0). Inside
``shard_map`` the vote is one all-gather of the signs packed 32 to a
``uint32`` word (and of a non-finite flag per device), summed on every
device. An all-reduce cannot add packed bits; a ring all-reduce of int8
signs sends ``2 (P - 1) / P * n`` bytes per device, the all-gather
``(P - 1) * n / 8``: fewer for ``P < 16`` (at ``P = 8``, ``7n/8`` against
``7n/4``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from sparsejax.compress import packing
from sparsejax.compress.base import Compressor
from sparsejax.compress.base import check_number
from sparsejax.compress.base import decoding_update
from sparsejax.compress.base import make_compressor
from sparsejax.compress.bitcount import BitCount
from sparsejax.compress.messages import Message
from sparsejax.compress.messages import check_exchanged_over
from sparsejax.compress.messages import mean_over_axis
from sparsejax.compress.messages import message_type
from sparsejax.compress.messages import static_field


@message_type
class VoteMessage(Message):
  """One sign bit per entry (a zero sends ``+``), without a scale: ``n`` bits.

  Over a mesh axis it also holds what the same all-gather returned: the sum
  of the devices' signs ``votes`` and the number ``nonfinite`` of devices
  whose input had a NaN or infinity (then every device's message decodes
  to NaN, so error feedback skips the step on all of them).
  """
  negative: jax.Array  # bool
  votes: Any  # int32 sum of the signs over axis_name; None without
  nonfinite: Any  # int32 devices with a non-finite input; None without
  shape: tuple[int, ...] = static_field()
  dtype: Any = static_field()
  axis_name: Any = static_field(default=None)

  def to_dense(self) -> jax.Array:
    dense = jnp.where(self.negative, -1.0, 1.0)
    if self.nonfinite is not None:
      dense = jnp.where(self.nonfinite > 0, jnp.nan, dense)
    return dense.astype(self.dtype).reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    n = self.negative.size
    return BitCount.of(n), BitCount.of(n, 1)

  def exchanged_over(self) -> Any:
    return self.axis_name

  def mean(self, axis_name, sparse_crossover: bool = True) -> jax.Array:
    """The majority vote ``sign(votes)``, received while encoding (the
    aggregate of signSGD is the vote, not the mean)."""
    del sparse_crossover
    check_exchanged_over(self, axis_name, "sign_majority_vote")
    vote = jnp.sign(self.votes).astype(jnp.float32)
    vote = jnp.where(self.nonfinite > 0, jnp.nan, vote)
    return vote.astype(self.dtype).reshape(self.shape)


def sign_majority_vote(*, axis_name=None) -> Compressor:
  r"""signSGD with majority vote: each worker sends ``sign(g_i)``, 1 bit each.

  .. math:: \tilde g = \mathrm{sign}\Big(\sum_i \mathrm{sign}(g_i)\Big)

  One worker (``axis_name=None``): the output is ``sign(g)`` with a zero
  sent as ``+1``. With ``axis_name`` (inside ``shard_map``), ``encode``
  all-gathers the packed signs and ``update`` returns the vote (0 on a
  tie); wrap it in error feedback or
  :func:`sparsejax.parallel.compressed_mean` with the same axis. Bits:
  ``n`` per leaf (no scale; the server's reply is not counted). Follow it
  with ``optax.sgd(learning_rate)``: the vote has unit entries. For Signum (momentum before the sign) see :func:`signum`.

  Args:
    axis_name: the mesh axis of the workers (``None``: one worker).

  Example:
    >>> import jax.numpy as jnp, sparsejax as sj
    >>> tx = sj.sign_majority_vote()
    >>> out, state = tx.update(jnp.array([0.5, -2., 0.]), tx.init(None))
    >>> out.tolist(), int(sj.comm_stats(state)["bits_sent"])
    ([1.0, -1.0, 1.0], 3)

  References:
    Bernstein, Wang, Azizzadenesheli, Anandkumar, "signSGD: Compressed
    Optimisation for Non-Convex Problems", ICML 2018,
    https://arxiv.org/abs/1802.04434; Bernstein, Zhao, Azizzadenesheli,
    Anandkumar, "signSGD with Majority Vote is Communication Efficient and
    Fault Tolerant", ICLR 2019, https://arxiv.org/abs/1810.05291
  """

  def encode_vector(x, key):
    del key
    negative = x < 0
    if axis_name is None:
      return VoteMessage(negative, None, None, x.shape, x.dtype)
    words, flags = jax.lax.all_gather(
        (packing.pack_mask(negative), jnp.any(~jnp.isfinite(x))), axis_name)
    minus = jax.vmap(lambda w: packing.unpack_mask(w, x.shape))(words)
    votes = jnp.sum(1 - 2 * minus.astype(jnp.int32), axis=0)
    nonfinite = jnp.sum(flags, dtype=jnp.int32)
    return VoteMessage(negative, votes, nonfinite, x.shape, x.dtype,
                       axis_name)

  compressor = make_compressor(encode_vector)
  if axis_name is None:
    return compressor
  return Compressor(compressor.init, compressor.encode, decoding_update(
      compressor.encode,
      functools.partial(mean_over_axis, axis_name=axis_name)))


sign_majority_vote.static_args = ()


def signum(beta: float = 0.9, *, axis_name=None
           ) -> optax.GradientTransformation:
  r"""Signum: majority vote on the signs of each worker's momentum.

  .. math:: m_i \leftarrow \beta m_i + g_i, \qquad
     \tilde g = \mathrm{sign}\Big(\sum_i \mathrm{sign}(m_i)\Big)

  ``optax.chain(optax.trace(decay=beta), sign_majority_vote(axis_name=...))``
  (the paper's ``(1 - beta)`` factor does not change a sign). The momentum
  is per device (in the per-device optimizer state of
  :func:`sparsejax.parallel.make_train_step`). Not a :class:`Compressor`:
  it holds momentum, so put it first in the chain, not inside
  ``error_feedback``; follow it with ``optax.sgd(learning_rate)``.

  Args:
    beta: momentum in ``[0, 1)``.
    axis_name: the mesh axis of the workers (``None``: one worker).

  References:
    Bernstein, Wang, Azizzadenesheli, Anandkumar, "signSGD: Compressed
    Optimisation for Non-Convex Problems", ICML 2018,
    https://arxiv.org/abs/1802.04434
  """
  check_number(beta, "beta", 0, 1, high_open=True)
  return optax.chain(optax.trace(decay=beta),
                     sign_majority_vote(axis_name=axis_name))
