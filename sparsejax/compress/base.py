"""The :class:`Compressor` type and the scaffolding every compressor shares.

A compressor is an ``optax.GradientTransformation`` (dense in, dense out, the
dropped or rounded part removed) that also exposes :meth:`Compressor.encode`,
returning the wire-level message, so a communication layer can send exactly
what was selected without selecting a second time. Its state holds the
:class:`~sparsejax.compress.accounting.CommCounters` and, for randomised
compressors, a PRNG key.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax.compress.accounting import CommCounters
from sparsejax.compress.messages import DenseMessage
from sparsejax.compress.messages import FlatMessage
from sparsejax.compress.messages import decode

SCOPES = ("leaf", "global")


class CompressorState(NamedTuple):
  """Counters of the messages sent so far and, if randomised, a PRNG key."""
  counters: CommCounters
  rng_key: Any


# encode_vector(flat_vector, key_or_None) -> message over that vector.
VectorEncoder = Callable[[jax.Array, Any], Any]


class Compressor(optax.GradientTransformationExtraArgs):
  """An optax transformation that also gives the message it would send.

  Built as ``Compressor(init, encode, update=None)``; without ``update`` it
  is :func:`decoding_update` of ``encode``. A ``Compressor`` is an
  ``optax.GradientTransformationExtraArgs`` (a ``(init, update)`` tuple)
  carrying ``encode`` too: ``_replace``, ``_make``, ``copy.copy`` and
  ``jax.tree`` functions keep all three.

  Attributes:
    init: ``params -> CompressorState`` (works on ``jax.ShapeDtypeStruct``).
    update: ``(updates, state, params=None, **extra) -> (dense, state)``; the
      dense output equals ``decode(message)`` in the dtype of ``updates``.
    encode: ``(updates, state) -> (message, state)``; ``message`` is a pytree
      of messages (see :mod:`sparsejax.compress.messages`).
  """

  def __new__(cls, init, encode, update=None):
    self = super().__new__(cls, init, update or decoding_update(encode))
    self.encode = encode
    return self

  def __getnewargs__(self):
    return (self.init, self.encode, self.update)

  @classmethod
  def _make(cls, iterable) -> "Compressor":
    """A compressor from ``(init, encode[, update])`` (the constructor's
    order: ``encode`` is not a tuple field)."""
    return cls(*iterable)

  def _replace(self, **changes) -> "Compressor":
    """A copy with some of ``init``, ``encode``, ``update`` replaced."""
    unknown = sorted(set(changes) - {"init", "encode", "update"})
    if unknown:
      raise ValueError(f"Compressor._replace got unexpected field names "
                       f"{unknown}; the fields are init, encode, update")
    return type(self)(**{"init": self.init, "encode": self.encode,
                         "update": self.update, **changes})


jax.tree_util.register_pytree_node(
    Compressor, lambda c: ((c.init, c.encode, c.update), None),
    lambda _, children: Compressor(*children))


def decoding_update(encode, receive: Callable[[Any], Any] = decode):
  """The ``update`` that sends ``encode``'s message: ``receive(message)``.

  ``receive`` turns the message into the dense update (default
  :func:`~sparsejax.compress.messages.decode`; a mean over devices with
  :func:`~sparsejax.compress.messages.mean_over_axis`), cast to the dtypes of
  ``updates``.
  """

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    message, state = encode(updates, state)
    dense = jax.tree.map(lambda m, g: m.astype(g.dtype), receive(message),
                         updates)
    return dense, state

  return update


def is_float(x) -> bool:
  return jnp.issubdtype(x.dtype, jnp.floating)


def make_compressor(encode_vector: VectorEncoder, *, scope: str = "leaf",
                    seed: int | None = None) -> Compressor:
  """Builds a :class:`Compressor` from a function on one flat vector.

  Args:
    encode_vector: ``(x, key) -> message`` on a 1-D float array; ``key`` is
      a fresh PRNG key per call (and per leaf) when ``seed`` is given, else
      ``None``. The message has static ``shape`` and ``dtype`` fields,
      which are then set to the leaf's.
    scope: ``"leaf"`` applies it to each float leaf (its message is a pytree
      of messages like the updates); ``"global"`` to the concatenation of
      all float leaves (one :class:`FlatMessage`).
    seed: seed of the PRNG key kept in state (randomised compressors).
  """
  if scope not in SCOPES:
    raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")

  def init(params):
    del params
    key = None if seed is None else jax.random.key(seed)
    return CompressorState(CommCounters.zero(), key)

  def encode(updates, state):
    key, next_key = None, state.rng_key
    if seed is not None:
      next_key, key = jax.random.split(state.rng_key)
    leaves, treedef = jax.tree.flatten(updates)
    if scope == "leaf":
      messages = [
          _encode_leaf(encode_vector, x,
                       None if key is None else jax.random.fold_in(key, i))
          if is_float(x) else DenseMessage(x, x.shape, x.dtype)
          for i, x in enumerate(leaves)]
      message = jax.tree.unflatten(treedef, messages)
    else:
      message = _encode_global(encode_vector, leaves, treedef, key)
    return message, CompressorState(state.counters.record(message), next_key)

  return Compressor(init, encode)


def _encode_leaf(encode_vector, x, key):
  message = encode_vector(x.reshape(-1), key)
  return message.replace(shape=x.shape, dtype=x.dtype)


def _encode_global(encode_vector, leaves, treedef, key):
  flat, pack = flatten_floats(leaves, treedef)
  return pack(encode_vector(flat, key))


def flatten_floats(leaves, treedef):
  """Concatenates the float leaves: ``(flat, pack)``.

  ``pack(message_over_flat)`` returns the :class:`FlatMessage` that decodes
  to the original pytree (non-float leaves travel whole).
  """
  floats = [x for x in leaves if is_float(x)]
  if not floats:
    raise ValueError("global scope needs at least one float leaf")
  dtype = jnp.result_type(*floats)
  flat = jnp.concatenate([x.reshape(-1).astype(dtype) for x in floats])
  layout = tuple((x.shape, x.dtype) if is_float(x) else None for x in leaves)
  passthrough = tuple(x for x in leaves if not is_float(x))
  return flat, lambda inner: FlatMessage(inner, passthrough, treedef, layout)


def check_ratio(ratio, name="ratio"):
  if _is_static_number(ratio) and not 0 < ratio <= 1:
    raise ValueError(f"{name} must be in (0, 1], got {ratio}")


def check_at_least(value, minimum, name):
  if _is_static_number(value) and value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _is_static_number(x) -> bool:
  return isinstance(x, (numbers.Number, np.ndarray, np.generic)) and np.ndim(x) == 0
