"""The :class:`Compressor` type and the scaffolding every compressor shares.

A compressor is an ``optax.GradientTransformation`` (dense in, dense out, the
dropped or rounded part removed) that also exposes :meth:`Compressor.encode`,
returning the wire-level message, so a communication layer can send exactly
what was selected without selecting a second time. Its state holds the
:class:`~sparsejax.compress.accounting.CommCounters` and, for randomised
compressors, a PRNG key.

Inputs every compressor accepts the same way: a float leaf is compressed; a
zero-size float leaf is sent as an empty :class:`DenseMessage` (0 bits); a
non-float leaf travels whole (a :class:`DenseMessage` at its dtype's size);
a pytree without float entries (``{}`` included) gives a message of its
non-float leaves only. Leaves whose sharding is in their type (a mesh with
``AxisType.Explicit``) are gathered before a selection and the dense output
keeps the input's sharding.

Factories check their arguments at construction (the ``check_*`` helpers
here): a wrong type raises ``TypeError``, a value out of range (NaN
included) ``ValueError``, both naming the argument and what it accepts.
Values traced under ``optax.inject_hyperparams`` cannot be checked and pass.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec

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
  ``updates`` and given their shardings.
  """

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    message, state = encode(updates, state)
    dense = jax.tree.map(lambda m, g: sharded_like(m.astype(g.dtype), g),
                         receive(message), updates)
    return dense, state

  return update


def is_float(x) -> bool:
  return jnp.issubdtype(x.dtype, jnp.floating)


def _is_sharded(x) -> bool:
  """Whether the type of ``x`` shards a dimension (explicit sharding)."""
  return any(axis is not None for axis in jax.typeof(x).sharding.spec)


def unsharded(x) -> jax.Array:
  """``x`` with no dimension sharded in its type (a no-op for other arrays).

  A selection ranks the whole vector, so an explicitly sharded leaf (mesh
  axes of type ``AxisType.Explicit``) is gathered first.
  """
  if not _is_sharded(x):
    return x
  return jax.sharding.reshard(
      x, jax.typeof(x).sharding.update(spec=PartitionSpec()))


def sharded_like(y, x) -> jax.Array:
  """``y`` with the sharding in the type of ``x`` (same shape)."""
  if not (_is_sharded(x) or _is_sharded(y)):
    return y
  return jax.sharding.reshard(y, jax.typeof(x).sharding)


def make_compressor(encode_vector: VectorEncoder, *, scope: str = "leaf",
                    seed: int | None = None) -> Compressor:
  """Builds a :class:`Compressor` from a function on one flat vector.

  Args:
    encode_vector: ``(x, key) -> message`` on a 1-D float array with at
      least one entry; ``key`` is a fresh PRNG key per call (and per leaf)
      when ``seed`` is given, else ``None``. The message has static
      ``shape`` and ``dtype`` fields, which are then set to the leaf's.
    scope: ``"leaf"`` applies it to each float leaf (its message is a pytree
      of messages like the updates); ``"global"`` to the concatenation of
      all float leaves (one :class:`FlatMessage`). Zero-size and non-float
      leaves are sent whole (module docstring).
    seed: seed of the PRNG key kept in state (randomised compressors).
  """
  if not callable(encode_vector):
    raise TypeError(f"encode_vector must be a function (x, key) -> message, "
                    f"got {type(encode_vector).__name__}")
  if scope not in SCOPES:
    raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
  if seed is not None:
    check_int(seed, "seed", traced_ok=True)

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
          whole(x) if sent_whole(x) else _encode_leaf(
              encode_vector, x,
              None if key is None else jax.random.fold_in(key, i))
          for i, x in enumerate(leaves)]
      message = jax.tree.unflatten(treedef, messages)
    else:
      flat, pack = flatten_floats(leaves, treedef)
      message = pack(whole(flat) if sent_whole(flat)
                     else encode_vector(flat, key))
    return message, CompressorState(state.counters.record(message), next_key)

  return Compressor(init, encode)


def sent_whole(x) -> bool:
  """Whether a leaf has nothing to compress (non-float or zero-size)."""
  return not is_float(x) or x.size == 0


def whole(x) -> DenseMessage:
  """The message sending ``x`` as it is."""
  return DenseMessage(x, x.shape, x.dtype)


def _encode_leaf(encode_vector, x, key):
  message = encode_vector(unsharded(x).reshape(-1), key)
  return message.replace(shape=x.shape, dtype=x.dtype)


def flatten_floats(leaves, treedef):
  """Concatenates the float leaves (gathered if sharded): ``(flat, pack)``.

  ``pack(message_over_flat)`` returns the :class:`FlatMessage` that decodes
  to the original pytree (non-float leaves travel whole). Without float
  leaves ``flat`` is an empty float32 vector.
  """
  floats = [unsharded(x).reshape(-1) for x in leaves if is_float(x)]
  dtype = jnp.result_type(*floats) if floats else jnp.float32
  flat = jnp.concatenate([x.astype(dtype) for x in floats] or
                         [jnp.zeros((0,), dtype)])
  layout = tuple((x.shape, x.dtype) if is_float(x) else None for x in leaves)
  passthrough = tuple(x for x in leaves if not is_float(x))
  return flat, lambda inner: FlatMessage(inner, passthrough, treedef, layout)


# ---------------------------------------------------------------- arguments


def check_compressor(compressor, name: str = "compressor") -> None:
  """Refuses anything but a sparsejax :class:`Compressor` (it has a message).

  An optax transformation (an optimizer, or a compressor under ``chain`` or
  ``inject_hyperparams``) has no ``encode`` and would fail at the first
  update: refused here with what to pass instead.
  """
  if isinstance(compressor, Compressor):
    return
  what = type(compressor).__name__
  hint = ("pass a sparsejax compressor such as sj.top_k(0.01) or sj.qsgd(16) "
          "(see sj.COMPRESSORS)")
  if isinstance(compressor, optax.GradientTransformation):
    what = "an optax transformation without a wire message"
    hint += ("; put optimizers after it, e.g. optax.chain("
             "sj.error_feedback(sj.top_k(0.01)), optax.adam(1e-3)); to "
             "schedule the compressor's arguments, wrap the outer "
             "transformation in optax.inject_hyperparams instead")
  raise TypeError(f"{name} must be a sparsejax Compressor, got {what}: {hint}")


def check_float_dtype(dtype, name: str) -> None:
  """Refuses a dtype that is not a float dtype (``None`` passes: default)."""
  if dtype is None:
    return
  try:
    resolved = jnp.dtype(dtype)
  except TypeError:
    raise TypeError(f"{name} must be a float dtype such as jnp.float32 or "
                    f"jnp.bfloat16, got {dtype!r}") from None
  if not jnp.issubdtype(resolved, jnp.floating):
    raise ValueError(f"{name} must be a float dtype such as jnp.float32 or "
                     f"jnp.bfloat16, got {resolved}")


def check_number(value, name: str, low: float | None = None,
                 high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False, static: bool = False) -> None:
  """Refuses anything but a finite real number within the bounds.

  ``low_open``/``high_open`` exclude the bound itself. A traced value
  (``optax.inject_hyperparams`` under ``jit``) passes unchecked, unless
  ``static`` (the value fixes a shape).
  """
  if not _is_real_scalar(value):
    raise TypeError(f"{name} must be a real number, got {value!r}")
  if isinstance(value, jax.core.Tracer):
    if static:
      raise TypeError(f"{name} cannot be traced (it fixes a shape or the "
                      f"computation); under optax.inject_hyperparams list "
                      f"{name!r} in static_args")
    return
  v = float(value)
  bad_low = low is not None and (v < low or (low_open and v == low))
  bad_high = high is not None and (v > high or (high_open and v == high))
  if not math.isfinite(v) or bad_low or bad_high:
    raise ValueError(f"{name} must be a finite number "
                     f"{_bounds(low, high, low_open, high_open)}, got {v}")


def _is_real_scalar(value) -> bool:
  if isinstance(value, (bool, np.bool_)):
    return False
  if isinstance(value, numbers.Real):
    return True
  return (isinstance(value, (np.ndarray, np.generic, jax.Array))
          and np.ndim(value) == 0
          and (jnp.issubdtype(value.dtype, jnp.floating)
               or jnp.issubdtype(value.dtype, jnp.integer)))


def _bounds(low, high, low_open, high_open) -> str:
  """The accepted range in words, e.g. ``in (0, 1]`` or ``>= 0``."""
  low, high = (v if v is None or isinstance(v, int) else f"{v:g}"
               for v in (low, high))
  if low is not None and high is not None:
    return (f"in {'(' if low_open else '['}{low}, "
            f"{high}{')' if high_open else ']'}")
  if low is not None:
    return f"{'>' if low_open else '>='} {low}"
  return "" if high is None else f"{'<' if high_open else '<='} {high}"


def check_int(value, name: str, low: int | None = None,
              high: int | None = None, *, traced_ok: bool = False) -> int:
  """``value`` as an ``int`` within ``[low, high]``; refuses floats (2.7 or
  3.0) and bools. With ``traced_ok``, an integer array traced under
  ``optax.inject_hyperparams`` passes unchecked (returned as is)."""
  if isinstance(value, jax.core.Tracer):
    if (traced_ok and jnp.issubdtype(value.dtype, jnp.integer)
        and not value.ndim):
      return value
    raise TypeError(f"{name} must be a Python int, got a traced array; under "
                    f"optax.inject_hyperparams list {name!r} in static_args")
  try:
    ivalue = None if isinstance(value, (bool, np.bool_)) else operator.index(
        value)
  except TypeError:
    ivalue = None
  if ivalue is None:
    raise TypeError(f"{name} must be an int, got {value!r} "
                    f"({type(value).__name__})")
  if (low is not None and ivalue < low) or (high is not None and ivalue > high):
    raise ValueError(f"{name} must be an int {_bounds(low, high, False, False)}"
                     f", got {ivalue}")
  return ivalue


def check_ratio(ratio, name="ratio", static=False):
  """A fraction in ``(0, 1]``."""
  check_number(ratio, name, 0, 1, low_open=True, static=static)


def check_like_params(updates, memory, name: str) -> None:
  """Refuses updates that do not match the params (trace time, no cost).

  ``memory`` is a params-shaped state (a residual, an estimate, DGC's
  momentum) of the transformation ``name`` (named in the message).

  Without it a ``(2, 3)`` gradient for a ``(3,)`` parameter, or a scalar for
  a vector, would be broadcast into the residual.
  """
  if jax.tree.structure(updates) != jax.tree.structure(memory):
    raise ValueError(
        f"{name}: the updates' tree differs from the params' given "
        f"to init:\n  updates: {jax.tree.structure(updates)}\n  params:  "
        f"{jax.tree.structure(memory)}")
  for (path, g), e in zip(jax.tree_util.tree_leaves_with_path(updates),
                          jax.tree.leaves(memory)):
    where = jax.tree_util.keystr(path)
    if is_float(g) != is_float(e):
      raise ValueError(
          f"{name}: update{where} has dtype {g.dtype} but its "
          f"parameter is {'a float' if is_float(e) else 'not a float'}; pass "
          "gradients of the params given to init")
    if is_float(g) and g.shape != e.shape:
      raise ValueError(
          f"{name}: update{where} has shape {tuple(g.shape)}, its "
          f"parameter {tuple(e.shape)}; pass gradients shaped like the "
          "params given to init (no broadcasting)")
