"""Shared compressor configurations for the compress test suite.

Every public compressor appears here at least once, in each of its modes
(ratio / k, leaf / global scope, with / without capacity, scaled / unscaled).
"""

import jax.numpy as jnp

import sparsejax as sj

# name -> (factory, kwargs). Kwargs are chosen so that every compressor
# actually drops or rounds something on the small test trees.
COMPRESSORS = {
    "top_k_ratio_leaf": (sj.top_k, dict(ratio=0.25)),
    "top_k_k_leaf": (sj.top_k, dict(k=3)),
    "top_k_ratio_global": (sj.top_k, dict(ratio=0.25, scope="global")),
    "top_k_k_global": (sj.top_k, dict(k=3, scope="global")),
    "blockwise_top_k": (sj.blockwise_top_k, dict(ratio=0.25, block_size=4)),
    "hard_threshold": (sj.hard_threshold, dict(threshold=0.5)),
    "hard_threshold_capacity": (sj.hard_threshold,
                                dict(threshold=0.5, capacity=0.25)),
    "random_k_scaled_leaf": (sj.random_k, dict(ratio=0.25, scaled=True)),
    "random_k_unscaled_leaf": (sj.random_k, dict(k=3)),
    "random_k_scaled_global": (sj.random_k,
                               dict(k=3, scaled=True, scope="global")),
    "random_k_unscaled_global": (sj.random_k, dict(ratio=0.25,
                                                   scope="global")),
    "qsgd": (sj.qsgd, dict(levels=4)),
    "scaled_sign": (sj.scaled_sign, {}),
    "cast_bf16": (sj.cast, dict(dtype=jnp.bfloat16)),
    "no_compression": (sj.no_compression, {}),
    # Added after the core set: budgeted threshold and CWMP.
    "budgeted_hard_threshold": (sj.hard_threshold,
                                dict(budget=12, num_steps=4)),
    "cost_weighted": (sj.cost_weighted, dict(costs="by_layer_kind",
                                             energy_ratio=0.25)),
}

NAMES = sorted(COMPRESSORS)


def make(name, ef=False, **ef_kwargs):
  factory, kwargs = COMPRESSORS[name]
  tx = factory(**kwargs)
  return sj.error_feedback(tx, **ef_kwargs) if ef else tx


def make_injected(name, ef=False):
  """The same transformation built through ``optax.inject_hyperparams``."""
  import optax  # pylint: disable=g-import-not-at-top
  factory, kwargs = COMPRESSORS[name]
  inner = optax.inject_hyperparams(
      factory, static_args=factory.static_args)(**kwargs)
  if not ef:
    return inner
  # The compressor of error_feedback must be a sparsejax Compressor (it needs
  # ``encode``), so the injected one is the outer error_feedback.
  return optax.inject_hyperparams(
      sj.error_feedback, static_args=sj.error_feedback.static_args)(
          compressor=factory(**kwargs))
