r"""Data-parallel training over a mesh axis with compressed aggregation.

Layout inside the jitted step (``jax.shard_map`` over ``axis_name``):

* ``params`` and ``model_state`` (e.g. BatchNorm statistics) are replicated;
* ``opt_state`` has a leading device axis sharded over ``axis_name``: each
  device keeps its own error-feedback residual and counters (never averaged).
  Optimizer moments after the aggregation are computed identically on every
  device, so their copies stay equal;
* the global batch is split along its first axis.

Per step, each device computes its gradient, the transformation (e.g.
``sj.error_feedback(sj.top_k(1e-3), axis_name="data")`` followed by an optax
optimizer) sends its message and receives the mean, and all devices apply the
same update. ``model_state`` and metrics are averaged with ``pmean``.
Several hosts: call ``jax.distributed.initialize`` first, build one global
mesh over ``jax.devices()`` and feed each process's part of the batch with
:func:`global_batch`; the code is the same.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

# loss_fn(params, model_state, batch) -> (loss, (model_state, metrics))
LossFn = Callable[[Any, Any, Any], tuple[jax.Array, tuple[Any, dict]]]


def data_mesh(num_devices: int | None = None, axis_name: str = "data") -> Mesh:
  """A 1-D mesh over the first ``num_devices`` devices (all by default)."""
  devices = jax.devices()
  num_devices = len(devices) if num_devices is None else num_devices
  if not 1 <= num_devices <= len(devices):
    raise ValueError(f"num_devices must be in [1, {len(devices)}], "
                     f"got {num_devices}")
  return Mesh(np.array(devices[:num_devices]), (axis_name,))


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of arrays copied on every device of ``mesh``."""
  return NamedSharding(mesh, P())


def init_opt_state(tx: optax.GradientTransformation, params, mesh: Mesh,
                   axis_name: str = "data"):
  """``tx.init(params)`` on every device, stacked along a sharded axis 0."""
  init = jax.shard_map(
      lambda p: jax.tree.map(lambda x: x[None], tx.init(p)),
      mesh=mesh, in_specs=P(), out_specs=P(axis_name), check_vma=False)
  return jax.jit(init)(params)


def global_batch(local_batch, mesh: Mesh, axis_name: str = "data"):
  """A global array from this process's rows, sharded along ``axis_name``."""
  sharding = NamedSharding(mesh, P(axis_name))
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x),
      local_batch)


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation,
                    mesh: Mesh, axis_name: str = "data", donate: bool = True):
  """Builds the jitted step ``(params, model_state, opt_state, batch) -> ...``.

  Args:
    loss_fn: ``(params, model_state, batch) -> (loss, (model_state, metrics))``
      on the local part of the batch.
    tx: the optax transformation; its compressor must average over
      ``axis_name`` (``sj.error_feedback(..., axis_name=axis_name)``), else
      each device applies its own update and the replicas drift.
    mesh: a mesh with axis ``axis_name``.
    donate: donate params, model_state and opt_state buffers.

  Returns:
    ``step(params, model_state, opt_state, batch) -> (params, model_state,
    opt_state, metrics)`` with metrics averaged over devices.
  """

  def local_step(params, model_state, opt_state, batch):
    opt_state = jax.tree.map(lambda x: x[0], opt_state)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (model_state, metrics)), grads = grad_fn(params, model_state, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = dict(metrics, loss=loss)
    metrics, model_state = jax.lax.pmean((metrics, model_state), axis_name)
    opt_state = jax.tree.map(lambda x: x[None], opt_state)
    return params, model_state, opt_state, metrics

  step = jax.shard_map(
      local_step, mesh=mesh,
      in_specs=(P(), P(), P(axis_name), P(axis_name)),
      out_specs=(P(), P(), P(axis_name), P()), check_vma=False)
  return jax.jit(step, donate_argnums=(0, 1, 2) if donate else ())


def device_sum(stats: dict) -> dict:
  """Sums per-device statistics (e.g. ``comm_stats`` of a sharded state)."""
  return {k: jnp.sum(v) for k, v in stats.items()}
