"""Sparsifying compressors: top-k, blockwise top-k, hard threshold, random-k.

Each selects entries of ``a`` and sends them as (value, index) pairs (random-k
sends values and a seed). Selection runs on :mod:`sparsejax.kernels`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import kernels
from sparsejax.compress.base import Compressor
from sparsejax.compress.base import check_float_dtype
from sparsejax.compress.base import check_int
from sparsejax.compress.base import check_number
from sparsejax.compress.base import check_ratio
from sparsejax.compress.base import make_compressor
from sparsejax.compress.budget import budgeted_hard_threshold
from sparsejax.compress.messages import INDEX_ENCODINGS
from sparsejax.compress.messages import MaskedMessage
from sparsejax.compress.messages import SeededMessage
from sparsejax.compress.messages import SparseMessage
from sparsejax.compress.messages import random_indices


def _check_count(ratio, k) -> int | None:
  """Checks that exactly one of ``ratio`` and ``k`` is given; ``k`` as int."""
  if (ratio is None) == (k is None):
    raise ValueError("give exactly one of ratio and k")
  if ratio is not None:
    check_ratio(ratio, static=True)
    return None
  return check_int(k, "k", 1)


def _check_wire(value_dtype, index_encoding):
  check_float_dtype(value_dtype, "value_dtype")
  if index_encoding not in INDEX_ENCODINGS:
    raise ValueError(f"index_encoding must be one of {INDEX_ENCODINGS}, "
                     f"got {index_encoding!r}")


def _resolve_k(n: int, ratio, k) -> int:
  if ratio is not None:
    return kernels.k_from_ratio(n, ratio)
  return min(k, n)


def _sparse(x, values, indices, count, value_dtype, index_encoding,
            variable_size=False):
  wire = x.dtype if value_dtype is None else value_dtype
  return SparseMessage(values.astype(wire), indices,
                       jnp.asarray(count, jnp.int32), x.shape, x.dtype,
                       index_encoding, variable_size)


def top_k(ratio: float | None = None, *, k: int | None = None,
          scope: str = "leaf", value_dtype=None,
          index_encoding: str = "int32") -> Compressor:
  r"""Keeps the ``k`` entries of largest magnitude.

  .. math:: C(x)_i = x_i \, 1\{|x_i| \text{ among the } k \text{ largest}\}

  Contractive: ``||x - C(x)||^2 <= (1 - k/d) ||x||^2``.

  Args:
    ratio: fraction kept; per leaf ``max(1, floor(ratio * n))`` (or of the
      flattened pytree with ``scope="global"``).
    k: number kept instead of ``ratio`` (per leaf: ``min(k, n)``).
    scope: ``"leaf"`` (per tensor) or ``"global"`` (whole flattened pytree).
    value_dtype: wire dtype of the values (default: the update's dtype).
    index_encoding: ``"int32"``, ``"bitmap"`` or ``"auto"`` (the cheaper).

  Static under ``optax.inject_hyperparams``: ``ratio``, ``k``, ``value_dtype``.

  Example:
    >>> import jax.numpy as jnp, sparsejax as sj
    >>> tx = sj.top_k(k=2)
    >>> out, _ = tx.update(jnp.array([1., -4., 3., 0.5]), tx.init(None))
    >>> out.tolist()
    [0.0, -4.0, 3.0, 0.0]

  References:
    Stich, Cordonnier, Jaggi, "Sparsified SGD with memory", NeurIPS 2018,
    https://arxiv.org/abs/1809.07599
  """
  k = _check_count(ratio, k)
  _check_wire(value_dtype, index_encoding)

  def encode_vector(x, key):
    del key
    kk = _resolve_k(x.shape[0], ratio, k)
    values, indices = kernels.top_k_select(x, kk)
    return _sparse(x, values, indices, kk, value_dtype, index_encoding)

  return make_compressor(encode_vector, scope=scope)


top_k.static_args = ("ratio", "k", "value_dtype")


def blockwise_top_k(ratio: float, block_size: int = 1024, *,
                    scope: str = "global", value_dtype=None,
                    index_encoding: str = "int32") -> Compressor:
  """Exact top ``ceil(k / num_blocks)`` of every block of ``block_size``.

  ``k = max(1, floor(ratio * n))``; approximate top-k globally, exact per
  block, and cheap on accelerators (no global selection). Contractive with
  ``||x - C(x)||^2 <= (1 - k_b / B) ||x||^2`` for ``k_b`` kept per block of
  ``B`` (not ``1 - k/d``: a block may hold fewer large entries than others).
  Static under ``optax.inject_hyperparams``: ``ratio``, ``block_size``,
  ``value_dtype``.

  Example:
    >>> import jax.numpy as jnp, sparsejax as sj
    >>> tx = sj.blockwise_top_k(0.5, block_size=2)
    >>> out, _ = tx.update(jnp.array([1., -4., 3., 0.5]), tx.init(None))
    >>> out.tolist()
    [0.0, -4.0, 3.0, 0.0]

  References:
    Shi et al., "Understanding Top-k Sparsification in Distributed Deep
    Learning", 2019, https://arxiv.org/abs/1911.08772
  """
  check_ratio(ratio, static=True)
  block_size = check_int(block_size, "block_size", 1)
  _check_wire(value_dtype, index_encoding)

  def encode_vector(x, key):
    del key
    n = x.shape[0]
    kk = kernels.k_from_ratio(n, ratio)
    values, indices = kernels.blockwise_top_k_select(x, kk, block_size)
    count = jnp.sum(indices < n, dtype=jnp.int32)
    return _sparse(x, values, indices, count, value_dtype, index_encoding)

  return make_compressor(encode_vector, scope=scope)


blockwise_top_k.static_args = ("ratio", "block_size", "value_dtype")


def hard_threshold(threshold: float | None = None, *,
                   capacity: float | None = None, value_dtype=None,
                   index_encoding: str = "int32", budget: float | None = None,
                   num_steps: int | None = None, **budget_options
                   ) -> Compressor:
  r"""Keeps every entry with ``|x_i| >= threshold`` (one threshold, all leaves).

  .. math:: C_\lambda(x)_i = x_i \, 1\{|x_i| \ge \lambda\}

  The comparison is made in the input's dtype, with ``lambda`` rounded to it
  (for float16, ``0.1`` is ``0.0999755859375``), with or without
  ``capacity``. The message size varies per step; it is counted from the
  real number sent plus a 32-bit count header.
  ``||x - C(x)||^2 <= d \lambda^2``.

  Args:
    threshold: ``lambda >= 0`` (may be traced under ``inject_hyperparams``).
      :func:`volume_matched_threshold` gives Sahu et al.'s ``1/(2 sqrt(k))``.
    capacity: buffer size per leaf as a fraction of the leaf (default: the
      whole leaf, never overflows, and the message is a
      :class:`MaskedMessage`, kept dense in memory). Selected entries beyond
      a capacity are not sent
      (they stay in the error-feedback residual) and are counted in
      ``comm_stats(state)["overflow"]``.
    value_dtype: wire dtype of the values.
    index_encoding: ``"int32"``, ``"bitmap"`` or ``"auto"``.
    budget: instead of ``threshold``, a total budget over ``num_steps``
      steps, in elements (or bits, ``unit="bits"``); the threshold then
      adapts so the run spends it and never more (the rule is in
      :mod:`sparsejax.compress.budget`).
    num_steps: the planned number of steps ``T``, with ``budget``.
    **budget_options: with ``budget`` only: ``unit`` (``"elements"`` or
      ``"bits"``: int32 indices, 32-bit count header), ``initial_threshold``
      (``lambda_0``, e.g. from :func:`calibrate_threshold`; default from the
      first update), ``correction_steps`` (``tau``, the time scale of the
      slow correction of ``lambda``, default ``T / 10``) and ``reserve``
      (fraction of the per-step share held back for each later step,
      default 0.1); see
      :func:`~sparsejax.compress.budget.budgeted_hard_threshold`. With a
      budget, ``capacity`` and ``index_encoding`` do not apply (the message
      is a :class:`MaskedMessage` whose size the budget bounds).

  Static under ``optax.inject_hyperparams``: ``capacity``, ``value_dtype``,
  ``budget``, ``num_steps`` and the budget options.

  Example:
    >>> import jax.numpy as jnp, sparsejax as sj
    >>> tx = sj.hard_threshold(2.0)
    >>> out, _ = tx.update(jnp.array([1., -4., 2., 0.5]), tx.init(None))
    >>> out.tolist()
    [0.0, -4.0, 2.0, 0.0]

  References:
    Sahu, Dutta, Abdelmoniem, Banerjee, Canini, Kalnis, "Rethinking
    gradient sparsification as total error minimization", NeurIPS 2021,
    https://arxiv.org/abs/2108.00951
  """
  # optax.inject_hyperparams binds this signature and calls back with the
  # collected ``**budget_options`` as one keyword named "budget_options".
  budget_options = {**budget_options.pop("budget_options", {}),
                    **budget_options}
  if (threshold is None) == (budget is None):
    raise ValueError("give exactly one of threshold and budget")
  if budget is not None:
    if num_steps is None:
      raise ValueError("num_steps is required with budget")
    if capacity is not None or index_encoding != "int32":
      raise ValueError("capacity and index_encoding do not apply with budget "
                       "(the budget bounds the message); remove them")
    return budgeted_hard_threshold(budget, num_steps, value_dtype=value_dtype,
                                   **budget_options)
  if budget_options or num_steps is not None:
    raise ValueError(f"{sorted(budget_options) or ['num_steps']} only apply "
                     "with budget")
  check_number(threshold, "threshold", 0)
  if capacity is not None:
    check_ratio(capacity, "capacity", static=True)
  _check_wire(value_dtype, index_encoding)

  def encode_vector(x, key):
    del key
    wire = x.dtype if value_dtype is None else value_dtype
    if capacity is None:  # every entry fits: no compaction needed
      # The rule of kernels.threshold_select: lambda rounded to x's dtype.
      keep = jnp.abs(x) >= jnp.asarray(threshold, x.dtype)
      return MaskedMessage(jnp.where(keep, x, 0).astype(wire),
                           jnp.sum(keep, dtype=jnp.int32), x.shape, x.dtype,
                           index_encoding)
    max_count = math.ceil(capacity * x.shape[0])
    values, indices, count = kernels.threshold_select(x, threshold, max_count)
    return _sparse(x, values, indices, count, value_dtype, index_encoding,
                   variable_size=True)

  return make_compressor(encode_vector)


hard_threshold.static_args = ("capacity", "value_dtype", "budget", "num_steps")


def volume_matched_threshold(k: int) -> float:
  """Sahu et al.'s threshold matching the volume of top-k: ``1/(2 sqrt(k))``.

  >>> import sparsejax as sj
  >>> round(sj.volume_matched_threshold(11174), 6)
  0.00473
  """
  k = check_int(k, "k", 1)
  return 1.0 / (2.0 * math.sqrt(k))


def random_k(ratio: float | None = None, *, k: int | None = None,
             scaled: bool = False, scope: str = "leaf", seed: int = 0,
             value_dtype=None) -> Compressor:
  r"""Keeps ``k`` uniformly random entries; indices come from a shared seed.

  ``scaled=True`` multiplies by ``d/k`` (unbiased: ``E[C(x)] = x``);
  ``scaled=False`` is contractive (``E||x - C(x)||^2 = (1 - k/d)||x||^2``).
  Only the values and the 64-bit key are sent.
  Static under ``optax.inject_hyperparams``: ``ratio``, ``k``, ``value_dtype``.

  References:
    Stich, Cordonnier, Jaggi, "Sparsified SGD with memory", NeurIPS 2018,
    https://arxiv.org/abs/1809.07599
  """
  k = _check_count(ratio, k)
  check_float_dtype(value_dtype, "value_dtype")
  if not isinstance(scaled, (bool, np.bool_)):
    raise TypeError(f"scaled must be a bool, got {scaled!r}")

  def encode_vector(x, key):
    n = x.shape[0]
    kk = _resolve_k(n, ratio, k)
    values = x[random_indices(key, n, kk)]
    if scaled:
      values = values * (n / kk)
    wire = x.dtype if value_dtype is None else value_dtype
    return SeededMessage(values.astype(wire), jax.random.key_data(key),
                         x.shape, x.dtype)

  return make_compressor(encode_vector, scope=scope, seed=seed)


random_k.static_args = ("ratio", "k", "value_dtype")
