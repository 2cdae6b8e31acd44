"""Shared compressor configurations for the compress test suite.

Every public compressor appears here at least once, in each of its modes
(ratio / k, leaf / global scope, with / without capacity, scaled / unscaled),
and each runs bare, under error feedback and under EF21 (:data:`FEEDBACKS`).
"""

import jax.numpy as jnp

import sparsejax as sj
from sparsejax import feedback
from sparsejax.compress.accounting import find_nodes
from sparsejax.compress.dgc import DGCState

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
    # Issue #18: the quantizers of GRACE.
    "terngrad": (sj.terngrad, {}),
    "terngrad_clipped": (sj.terngrad, dict(clip_sigma=1.0, seed=3)),
    "natural_compression": (sj.natural_compression, {}),
    "onebit": (sj.onebit, {}),
    # Issue #18: PowerSGD (no warm-up, so step 1 compresses) and signSGD
    # with majority vote.
    "powersgd": (sj.powersgd, dict(rank=1, start_iter=0)),
    "powersgd_rank2": (sj.powersgd, dict(rank=2, start_iter=0,
                                         min_compression_rate=1.0, seed=5)),
    "sign_majority_vote": (sj.sign_majority_vote, {}),
    # Issue #18: DGC (its own momentum and residual: never under EF/EF21).
    "dgc": (sj.dgc, dict(ratio=0.25, momentum=0.5, clip_norm=4.0)),
    "dgc_warmup_leaf": (sj.dgc, dict(ratio=0.1, momentum=0.9,
                                     warmup_steps=2, scope="leaf")),
}

NAMES = sorted(COMPRESSORS)

#: How a compressor is wrapped: bare, error feedback, EF21.
FEEDBACKS = (False, True, "ef21")

#: Compressors that keep their own residual: only run bare (error feedback
#: around them is refused, tested in test_dgc.py).
OWN_RESIDUAL = ("dgc", "dgc_warmup_leaf")


def feedbacks(name):
  """The wrappings :data:`FEEDBACKS` that ``name`` runs under."""
  return (False,) if name in OWN_RESIDUAL else FEEDBACKS


def params(extra=()):
  """``pytest.param(name, ef, *extra)`` for every compressor and wrapping."""
  import pytest  # pylint: disable=g-import-not-at-top
  return [pytest.param(name, ef, *extra, id=case_id(name, ef))
          for name in NAMES for ef in feedbacks(name)]


_PREFIXES = {False: "", True: "ef-", "ef21": "ef21-"}


def case_id(name, ef):
  """The test id of ``name`` wrapped as ``ef``: ``ef-top_k``, ``ef21-...``."""
  return _PREFIXES[ef] + name


def _wrapper(ef):
  return sj.ef21 if ef == "ef21" else sj.error_feedback


def make(name, ef=False, **ef_kwargs):
  """The compressor ``name``, wrapped as ``ef`` (one of :data:`FEEDBACKS`);
  ``residual_dtype`` is EF21's ``estimate_dtype``."""
  factory, kwargs = COMPRESSORS[name]
  tx = factory(**kwargs)
  if not ef:
    return tx
  if ef == "ef21" and "residual_dtype" in ef_kwargs:
    ef_kwargs["estimate_dtype"] = ef_kwargs.pop("residual_dtype")
  return _wrapper(ef)(tx, **ef_kwargs)


def memory(state):
  """The params-shaped memory of the feedback: EF's residual, EF21's
  estimate or DGC's accumulation ``v``."""
  if find_nodes(state, feedback.EF21State):
    return feedback.estimate(state)
  dgc_states = find_nodes(state, DGCState)
  if dgc_states:
    return dgc_states[0].accumulation
  return sj.residual(state)


def make_injected(name, ef=False):
  """The same transformation built through ``optax.inject_hyperparams``."""
  import optax  # pylint: disable=g-import-not-at-top
  factory, kwargs = COMPRESSORS[name]
  inner = optax.inject_hyperparams(
      factory, static_args=factory.static_args)(**kwargs)
  if not ef:
    return inner
  # The compressor of error_feedback must be a sparsejax Compressor (it needs
  # ``encode``), so the injected one is the outer error_feedback (or EF21).
  wrapper = _wrapper(ef)
  return optax.inject_hyperparams(wrapper, static_args=wrapper.static_args)(
      compressor=factory(**kwargs))
