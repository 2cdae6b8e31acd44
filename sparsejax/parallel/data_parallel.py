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
The compressor picks its collective: each message type has its own (see
:mod:`sparsejax.parallel.collectives`), and PowerSGD and the majority vote
exchange their factors or signs while encoding (``sj.powersgd(...,
axis_name="data")``, ``sj.sign_majority_vote(axis_name="data")``); the
step itself is the same for all.
Several hosts: call ``jax.distributed.initialize`` first, build one global
mesh over ``jax.devices()`` and feed each process's part of the batch with
:func:`global_batch`; the code is the same.

Replication is proved, not assumed: when the step is first traced,
:func:`check_replicated_updates` traces ``tx`` abstractly with one gradient
per device and refuses a ``tx`` whose updates could differ between devices
(one that never averages over ``axis_name``). The step itself runs
``shard_map(check_vma=False)``: with the optimizer state stacked per device,
the varying-manual-axes types would call even the identical optimizer moments
device-varying, so ``P()`` params could not be proved, and they would turn
the gradient of the replicated params into an implicit dense ``psum`` before
any compression. (They also type an ``all_gather`` result as varying, so the
proof uses vmap's batching, which knows a gathered value is the same
everywhere.)
"""

from __future__ import annotations

import functools
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
      mesh=mesh, in_specs=P(), out_specs=P(axis_name))
  return jax.jit(init)(params)


def _record(found: dict, path: str, axis_size, in_batched, x):
  """The vmap rule of a probe: notes whether ``x`` is batched."""
  del axis_size
  found[path] = in_batched[0]
  return x, in_batched[0]


def _device_dependence(fn, args, in_axes, axis_name: str, num_devices: int
                       ) -> list[dict[str, bool]]:
  """``fn`` vmapped over the devices: per output leaf, may it differ by device?

  ``fn`` returns a tuple of pytrees; the result has one ``{leaf path:
  batched}`` dict per tree. The collectives over ``axis_name`` run as under
  ``shard_map`` (``psum`` sums, ``all_gather`` stacks the devices' values), and
  JAX's batching keeps a value unbatched only when it cannot depend on the
  device, so unbatched leaves are provably equal on every device. A
  ``custom_vmap`` identity per leaf reports what vmap knows.
  """
  found = []

  def probed(*a):
    for tree in fn(*a):
      found.append({})
      for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = jax.tree_util.keystr(path)
        found[-1][key] = False  # a batched leaf calls _record below
        probe = jax.custom_batching.custom_vmap(lambda x: x)
        probe.def_vmap(functools.partial(_record, found[-1], key))
        probe(x)

  jax.eval_shape(jax.vmap(probed, in_axes=in_axes, axis_name=axis_name,
                          axis_size=num_devices), *args)
  return found


def check_replicated_updates(tx: optax.GradientTransformation, params,
                             opt_state, num_devices: int,
                             axis_name: str = "data") -> None:
  """Raises ValueError unless ``tx`` gives every device the same updates.

  Traces ``tx`` abstractly (no computation), vmapped over ``num_devices``
  devices named ``axis_name``, each with its own gradient (see
  :func:`_device_dependence`). Optimizer-state leaves start as ``tx.init`` of
  the replicated params makes them; a leaf that an update makes
  device-dependent (an error-feedback residual) is traced per device from then
  on, until no new one appears. The updates must then be device-independent,
  so by induction the replicated params stay equal on every device.

  Args:
    tx: the transformation given to :func:`make_train_step`.
    params: the replicated params (arrays or ``jax.ShapeDtypeStruct``).
    opt_state: the stacked state of :func:`init_opt_state` (leading device
      axis), or anything with its shapes and dtypes.
    num_devices: size of the ``axis_name`` mesh axis.
    axis_name: the data axis.
  """
  params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                        params)
  grads = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((num_devices, *x.shape), x.dtype), params)
  flat, treedef = jax.tree_util.tree_flatten_with_path(opt_state)
  leaves = [x for _, x in flat]
  trace = functools.partial(_device_dependence, axis_name=axis_name,
                            num_devices=num_devices)
  (init,) = trace(lambda p: (tx.init(p),), (params,), (None,))
  leaf_paths = [jax.tree_util.keystr(path) for path, _ in flat]
  unstacked = [p for p, x in zip(leaf_paths, leaves)
               if x.shape[:1] != (num_devices,)]
  if leaf_paths != list(init) or unstacked:
    raise ValueError(
        f"opt_state is not tx.init(params) stacked over the {num_devices} "
        f"devices of {axis_name!r} (leaves without that leading axis: "
        f"{unstacked or 'none'}); make it with init_opt_state(tx, params, "
        "mesh)")
  per_device = list(init.values())
  while True:
    state = [jax.ShapeDtypeStruct(x.shape if v else x.shape[1:], x.dtype)
             for x, v in zip(leaves, per_device)]
    updates, new_state = trace(
        lambda p, g, s: tx.update(g, treedef.unflatten(s), p),
        (params, grads, state),
        (None, 0, [0 if v else None for v in per_device]))
    new_per_device = [a or b for a, b in zip(per_device, new_state.values())]
    if new_per_device == per_device:
      break
    per_device = new_per_device
  varying = [path or "updates" for path, v in updates.items() if v]
  if varying:
    raise ValueError(
        f"the updates of tx differ between the devices of mesh axis "
        f"{axis_name!r} (at {', '.join(varying)}): tx never averages "
        f"the gradients over {axis_name!r}, so the replicated params would "
        "drift apart. Average inside tx: pass "
        f"axis_name={axis_name!r} to sj.error_feedback(...), or put "
        f"sparsejax.parallel.compressed_mean(compressor, {axis_name!r}) first "
        "in the chain; for a dense optimizer, optax.chain(sparsejax.parallel."
        f"compressed_mean(sj.no_compression(), {axis_name!r}), optimizer) "
        "(one pmean all-reduce).")


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
    tx: the optax transformation; it must average over ``axis_name``
      (``sj.error_feedback(..., axis_name=axis_name)``, or
      ``parallel.compressed_mean(sj.no_compression(), axis_name)`` before a
      dense optimizer). A ``tx`` whose updates could differ between devices is
      refused at the first call (:func:`check_replicated_updates`).
    mesh: a mesh with axis ``axis_name``.
    donate: donate params, model_state and opt_state buffers.

  Returns:
    ``step(params, model_state, opt_state, batch) -> (params, model_state,
    opt_state, metrics)`` with metrics averaged over devices.

  Raises:
    ValueError: at the first call, when ``tx`` does not average over
      ``axis_name``.
  """

  if axis_name not in mesh.axis_names:
    raise ValueError(f"axis_name {axis_name!r} is not an axis of the mesh "
                     f"(axes {mesh.axis_names}); pass one of those")

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

  # check_vma=False: see the module docstring; check_replicated_updates
  # proves the replicated outputs equal instead.
  sharded_step = jax.shard_map(
      local_step, mesh=mesh,
      in_specs=(P(), P(), P(axis_name), P(axis_name)),
      out_specs=(P(), P(), P(axis_name), P()), check_vma=False)

  def step(params, model_state, opt_state, batch):
    check_replicated_updates(tx, params, opt_state, mesh.shape[axis_name],
                             axis_name)
    return sharded_step(params, model_state, opt_state, batch)

  return jax.jit(step, donate_argnums=(0, 1, 2) if donate else ())


def device_sum(stats: dict) -> dict:
  """Sums per-device statistics (e.g. ``comm_stats`` of a sharded state)."""
  return {k: jnp.sum(v) for k, v in stats.items()}
