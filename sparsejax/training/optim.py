"""Optax optimizers from configs: ``optimizer_from_config(cfg)``."""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp
import optax


def warmup_cosine_schedule(peak_value: float, end_value: float,
                           warmup_steps: int, total_steps: int):
  r"""Linear warm-up from ``peak / W`` (not 0), then cosine to ``end_value``.

  With ``r = step + 1`` (the step counted from 1, as the SA-PEF code's
  rounds, ``utils.cosine_eta_warmfloor``): ``peak * r / W`` for ``r <= W``,
  then ``end + (peak - end) / 2 * (1 + cos(pi (r - W) / (T - W)))``, which
  reaches ``end`` at ``r = T`` and stays there. jit-safe in ``step``.

  Raises:
    ValueError: ``warmup_steps < 0`` or ``total_steps < 1``.
  """
  if warmup_steps < 0 or total_steps < 1:
    raise ValueError(f"warmup_steps must be >= 0 and total_steps >= 1, got "
                     f"{warmup_steps}, {total_steps}")

  def schedule(step):
    r = jnp.asarray(step, jnp.float32) + 1.0
    warm = peak_value * r / max(warmup_steps, 1)
    t = jnp.clip((r - warmup_steps) / max(total_steps - warmup_steps, 1),
                 0.0, 1.0)
    cos = end_value + 0.5 * (peak_value - end_value) * (1 + jnp.cos(jnp.pi * t))
    return jnp.where(r <= warmup_steps, warm, cos)

  return schedule


def learning_rate_schedule(config: Mapping[str, Any], total_steps: int):
  """A float or schedule from ``learning_rate`` and ``schedule``.

  ``schedule``: ``"constant"`` (default) or ``"cosine"`` (warm-up of
  ``warmup_steps`` then cosine decay to ``end_learning_rate``).
  """
  lr = config["learning_rate"]
  kind = config.get("schedule", "constant")
  if kind == "constant":
    return lr
  if kind == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, config.get("warmup_steps", 0), max(total_steps, 1),
        config.get("end_learning_rate", 0.0))
  raise ValueError(f"unknown schedule {kind!r}; use 'constant' or 'cosine'")


def optimizer_from_config(config: Mapping[str, Any], total_steps: int = 1
                          ) -> optax.GradientTransformation:
  """``optax.<name>(learning_rate, **kwargs)``, weight decay added for sgd.

  Keys: ``name`` (any optax optimizer: sgd, adam, adamw, lion, lamb, ...),
  ``learning_rate``, ``schedule`` options, ``weight_decay`` (coupled, added
  to the gradient before the optimizer for sgd; passed through for the
  optimizers that take it) and ``kwargs`` (dict passed to the optax factory).
  """
  name = config["name"]
  factory = getattr(optax, name, None)
  if factory is None:
    raise ValueError(f"optax has no optimizer {name!r}")
  lr = learning_rate_schedule(config, total_steps)
  kwargs = dict(config.get("kwargs", {}))
  wd = config.get("weight_decay", 0.0)
  if wd and name in ("adamw", "lion", "lamb"):
    kwargs["weight_decay"] = wd
    wd = 0.0
  opt = factory(lr, **kwargs)
  return optax.chain(optax.add_decayed_weights(wd), opt) if wd else opt
