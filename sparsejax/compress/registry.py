"""Compressors by name, for configs: ``create("top_k", ratio=0.01)``."""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp

from sparsejax.compress import quantizers
from sparsejax.compress.cost_weighted import cost_weighted
from sparsejax.compress import sparsifiers
from sparsejax.compress.base import Compressor

#: Compressor factories by name, for configs.
COMPRESSORS = {
    "top_k": sparsifiers.top_k,
    "blockwise_top_k": sparsifiers.blockwise_top_k,
    "hard_threshold": sparsifiers.hard_threshold,
    "random_k": sparsifiers.random_k,
    "qsgd": quantizers.qsgd,
    "scaled_sign": quantizers.scaled_sign,
    "cast": quantizers.cast,
    "identity": quantizers.identity,
    "cost_weighted": cost_weighted,
}

_DTYPES = {"bfloat16": jnp.bfloat16, "float16": jnp.float16,
           "float32": jnp.float32}


def create(name: str, **kwargs: Any) -> Compressor:
  """The compressor ``name`` built with ``kwargs`` (dtype names allowed).

  >>> import sparsejax as sj
  >>> tx = sj.create_compressor("top_k", ratio=0.5)
  >>> type(tx).__name__
  'Compressor'

  """
  if name not in COMPRESSORS:
    raise ValueError(f"unknown compressor {name!r}; choose from "
                     f"{sorted(COMPRESSORS)}")
  kwargs = {k: _DTYPES.get(v, v) if isinstance(v, str) and k.endswith("dtype")
            else v for k, v in kwargs.items()}
  return COMPRESSORS[name](**kwargs)


def from_config(config: Mapping[str, Any]) -> Compressor:
  """``create(config["name"], **rest)`` for an ml_collections/dict config."""
  config = dict(config)
  return create(config.pop("name"), **config)
