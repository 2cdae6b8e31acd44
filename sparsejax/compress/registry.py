"""Compressors by name, for configs (:func:`create_compressor`)."""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp

from sparsejax.compress import quantizers
from sparsejax.compress import signs
from sparsejax.compress import sparsifiers
from sparsejax.compress.base import Compressor
from sparsejax.compress.cost_weighted import cost_weighted
from sparsejax.compress.dgc import dgc
from sparsejax.compress.powersgd import powersgd

#: Compressor factories by name, for configs.
COMPRESSORS = {
    "top_k": sparsifiers.top_k,
    "blockwise_top_k": sparsifiers.blockwise_top_k,
    "hard_threshold": sparsifiers.hard_threshold,
    "random_k": sparsifiers.random_k,
    "qsgd": quantizers.qsgd,
    "scaled_sign": quantizers.scaled_sign,
    "terngrad": quantizers.terngrad,
    "natural_compression": quantizers.natural_compression,
    "onebit": quantizers.onebit,
    "cast": quantizers.cast,
    "no_compression": quantizers.no_compression,
    "cost_weighted": cost_weighted,
    "powersgd": powersgd,
    "sign_majority_vote": signs.sign_majority_vote,
    "dgc": dgc,
}

_DTYPES = {"bfloat16": jnp.bfloat16, "float16": jnp.float16,
           "float32": jnp.float32}


def create_compressor(name: str | Mapping[str, Any],
                      **kwargs: Any) -> Compressor:
  """The compressor ``name`` of :data:`COMPRESSORS` built with ``kwargs``.

  Args:
    name: a name of :data:`COMPRESSORS`, or a config (a dict or an
      ``ml_collections.ConfigDict``) holding the name under ``"name"`` and
      the factory's arguments.
    **kwargs: the factory's arguments (they override the config's). Dtype
      names (``"bfloat16"``, ``"float16"``, ``"float32"``) are accepted for
      arguments ending in ``dtype``.

  Example:
    >>> import sparsejax as sj
    >>> tx = sj.create_compressor("top_k", ratio=0.5)
    >>> tx = sj.create_compressor({"name": "top_k", "ratio": 0.5})
    >>> type(tx).__name__
    'Compressor'
  """
  if not isinstance(name, str):
    if not hasattr(name, "keys"):
      raise TypeError(f"name must be a compressor name or a config mapping, "
                      f"got {type(name).__name__}")
    config = {**dict(name), **kwargs}
    if "name" not in config:
      raise ValueError(f"compressor config has no 'name' (one of "
                       f"{sorted(COMPRESSORS)}): {config}")
    name = config.pop("name")
    kwargs = config
  if name not in COMPRESSORS:
    raise ValueError(f"unknown compressor {name!r}; choose from "
                     f"{sorted(COMPRESSORS)}")
  kwargs = {k: _DTYPES.get(v, v) if isinstance(v, str) and k.endswith("dtype")
            else v for k, v in kwargs.items()}
  return COMPRESSORS[name](**kwargs)
