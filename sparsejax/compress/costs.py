r"""Per-element costs of sending and applying an update (for CWMP).

A cost model maps params (or any pytree of the same structure, e.g.
``jax.ShapeDtypeStruct`` s) to a pytree of per-element costs: a positive
scalar per leaf, or an array of the leaf's shape. Presets:

* :func:`uniform_costs`: every element costs the same (CWMP = top-k).
* :func:`costs_by_layer_kind`: relative costs by the kind of leaf (conv
  kernel, dense kernel, embedding, bias/norm).
* :func:`energy_table_costs`: joules per element,
  ``c = e_tx * bits_per_element + e_mem(leaf)``, with ``e_mem`` the energy of
  reading and writing the parameter and one fp32 add, from DRAM for
  memory-intensive leaves (dense kernels, embeddings, leaves larger than the
  on-chip memory) and from SRAM for compute-efficient ones (convolution
  kernels, small leaves). 45 nm figures from Horowitz, "Computing's energy
  problem (and what we can do about it)", ISSCC 2014: 32-bit DRAM read
  640 pJ, 32-bit SRAM read (8 KB) 5 pJ, fp32 add 0.9 pJ. The transmit energy
  per bit has no figure in that source: the default 20 pJ/bit is a choice
  (an off-chip link's order of magnitude) that puts transmitting a 64-bit
  (value, index) pair and a DRAM update on the same scale; set it for your
  radio.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

PJ = 1e-12
DRAM_READ_32BIT = 640 * PJ
SRAM_READ_32BIT = 5 * PJ
FP32_ADD = 0.9 * PJ

CostModel = Callable[[Any], Any]


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path
                  ).lower()


def leaf_kind(path, leaf) -> str:
  """``"conv"``, ``"dense"``, ``"embedding"`` or ``"vector"`` (bias/norm)."""
  name = _path_name(path)
  if "embed" in name:
    return "embedding"
  ndim = len(leaf.shape)
  return {0: "vector", 1: "vector", 2: "dense"}.get(ndim, "conv")


def uniform_costs(params, cost: float = 1.0):
  """The same ``cost`` for every element."""
  return jax.tree.map(lambda _: float(cost), params)


def costs_by_layer_kind(params, *, conv: float = 1.0, dense: float = 4.0,
                        embedding: float = 4.0, vector: float = 1.0):
  """A relative cost per element by :func:`leaf_kind` (defaults: memory-bound
  dense kernels and embeddings cost 4x compute-bound conv kernels)."""
  table = {"conv": conv, "dense": dense, "embedding": embedding,
           "vector": vector}
  return jax.tree_util.tree_map_with_path(
      lambda p, x: float(table[leaf_kind(p, x)]), params)


def energy_table_costs(params, *, bits_per_element: int = 64,
                       tx_joules_per_bit: float = 20 * PJ,
                       on_chip_bytes: int = 256 * 1024,
                       dram_access: float = DRAM_READ_32BIT,
                       sram_access: float = SRAM_READ_32BIT,
                       add: float = FP32_ADD):
  """Joules per element: transmit plus read-modify-write of the parameter."""

  def cost(path, x):
    size_bytes = int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
    kind = leaf_kind(path, x)
    memory_bound = kind in ("dense", "embedding") or (
        kind != "conv" and size_bytes > on_chip_bytes)
    access = dram_access if memory_bound else sram_access
    return float(tx_joules_per_bit * bits_per_element + 2 * access + add)

  return jax.tree_util.tree_map_with_path(cost, params)


COST_MODELS = {"uniform": uniform_costs, "by_layer_kind": costs_by_layer_kind,
               "energy_table": energy_table_costs}


def resolve_costs(costs, params):
  """Costs for ``params`` from a preset name, a cost model or a pytree.

  Checks that the tree matches ``params`` and that every cost is positive,
  naming the offending leaf.
  """
  if isinstance(costs, str):
    if costs not in COST_MODELS:
      raise ValueError(f"unknown cost model {costs!r}; choose from "
                       f"{sorted(COST_MODELS)}")
    costs = COST_MODELS[costs]
  if callable(costs):
    costs = costs(params)
  params_def = jax.tree.structure(params)
  costs_def = jax.tree.structure(costs)
  if params_def != costs_def:
    raise ValueError(f"costs tree does not match the params:\n  costs:  "
                     f"{costs_def}\n  params: {params_def}")

  def check(path, c, p):
    name = jax.tree_util.keystr(path) or "<root>"
    c = np.asarray(c)
    if c.ndim and c.shape != tuple(p.shape):
      raise ValueError(f"costs{name} has shape {c.shape}, the leaf has "
                       f"{tuple(p.shape)}")
    if not np.all(np.isfinite(c)) or not np.all(c > 0):
      raise ValueError(f"costs{name} must be finite and > 0, got min "
                       f"{c.min() if c.size else c}")
    return c.astype(np.float32)

  return jax.tree_util.tree_map_with_path(check, costs, params)
