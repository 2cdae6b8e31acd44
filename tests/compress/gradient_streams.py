"""A synthetic gradient stream and error-feedback runs over it.

Sahu et al.'s setting in miniature: ``g_t = s_t (drift * mu + w * z_t)`` with
per-coordinate scales ``w`` (log-normal), a fixed mean direction ``mu``,
fresh noise ``z_t`` and a gradient scale ``s_t = 1 + peak * exp(-10 t / T)``
that is large early (front-loaded) when ``peak > 0``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

import sparsejax as sj

SIZE, STEPS = 10_000, 200


def stream(peak=20.0, drift=0.0, seed=0, steps=STEPS, size=SIZE):
  """A ``(steps, size)`` float32 array of gradients."""
  kw, km, kz = jax.random.split(jax.random.key(seed), 3)
  w = jnp.exp(jax.random.normal(kw, (size,)))
  mu = 0.3 * w * jax.random.normal(km, (size,))
  z = jax.random.normal(kz, (steps, size))
  scale = 1 + peak * jnp.exp(-10.0 * jnp.arange(steps)[:, None] / steps)
  return scale * (drift * mu + w * z)


def _scan(tx, grads):
  ef = sj.error_feedback(tx)

  def step(state, g):
    _, state = ef.update(g, state)
    return state, state.inner_state

  final, per_step = jax.lax.scan(step, ef.init(grads[0]), grads)
  return final.total_error, per_step


class Run:
  """An error-feedback run: total error and the inner state after each step."""

  def __init__(self, total_error, per_step):
    self.total_error = float(total_error)
    self.states = per_step
    self.spend = np.asarray(sj.exact(per_step.counters.last_elements),
                            dtype=np.int64)
    self.spent = np.cumsum(self.spend)
    self.volume = int(self.spent[-1])

  def front_share(self, fraction=0.2):
    """The share of the volume sent in the first ``fraction`` of the steps."""
    return self.spent[int(fraction * len(self.spend)) - 1] / self.volume


def run(tx, grads) -> Run:
  """Error feedback with compressor ``tx`` over ``grads``."""
  return Run(*jax.jit(functools.partial(_scan, tx))(grads))


@jax.jit
def _threshold_scan(lam, grads):
  return _scan(sj.hard_threshold(lam), grads)


def run_threshold(lam, grads) -> Run:
  """Error feedback with a constant hard threshold (compiled once)."""
  return Run(*_threshold_scan(jnp.float32(lam), grads))
