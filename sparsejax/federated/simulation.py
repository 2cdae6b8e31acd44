"""The federated simulation engine: one jitted function per round.

State for all ``N`` clients (EF residuals, compressor counters, optional
local optimizer states) is stored stacked along a leading axis of size ``N``.
A round, inside one ``jax.jit`` with no host round-trip:

1. sample ``S`` distinct clients from the state's PRNG key (uniform, without
   replacement), pad to ``S_pad``, a multiple of the device count, with dummy
   clients (id ``N``: gathered by clipping, weight 0, dropped on scatter);
2. gather their states and example-index rows; every client runs
   ``client_init``, ``H`` x ``client_step`` (``lax.scan``) and
   ``client_final``, vectorised by ``jax.vmap`` (or ``lax.map`` in chunks of
   ``client_batch_size`` to bound memory), and split over devices by
   ``jax.shard_map`` on the ``"clients"`` axis of ``mesh`` when one is given;
3. each device sums its clients' weighted decoded messages, the sums are
   ``psum``-ed, divided (:mod:`~sparsejax.federated.aggregation`) and applied
   by ``server_update``; client states are scattered back; the
   :class:`~sparsejax.federated.ledger.CommLedger` records the bits: uplink
   as counted by each client's uplink compressor (the growth of the
   :class:`~sparsejax.compress.CommCounters` in its state, so every message
   is counted once, where it is encoded), downlink as the size of the
   algorithm's ``broadcast`` (the dense model unless it compresses the
   downlink) per sampled client; the broadcast is made at the start of the
   round, before step 2.

Faults: a sampled client drops out mid-round with probability
``dropout_rate`` (a Bernoulli draw per round and client id); it received the
model (downlink counted) but sends nothing: no uplink bits, no part in the
aggregate, its state unchanged. An update whose end point ``y_H``, message or
new client state holds a NaN/Inf is rejected: its bits were sent and are
counted, but it is left out of the aggregate and its state is not updated.
The aggregate is weighted over the accepted clients only (``n_i`` renormalised
over them); with none accepted the update is zero.

Client data: the whole training set is one device array (replicated over the
mesh) and client ``i`` owns row ``i`` of an ``(N, max n_i)`` index table,
valid up to ``n_i``. Each round a client shuffles its valid positions and
cycles through them, so minibatches only ever hold its own examples (without
repetition while ``H * B <= n_i``) and the padding is never read.

Client stores: by default (``client_store="device"``) all ``N`` client
states are on the device and a round is one jit. With ``"host"`` or
``"mmap"`` they are numpy arrays in RAM or memory-mapped files
(:mod:`~sparsejax.federated.client_store`): the round's clients are sampled
first (:func:`sample_ids`, a function of the rng alone), their rows gathered
on the host and put on the device, the same round runs on them (one jit
without the gather and scatter) and the accepted clients' new rows are
written back; the next round's rows can be gathered while the device computes.

Multi-host: build ``mesh`` over the global ``jax.devices()`` after
``jax.distributed.initialize()``; every process passes the same data and seed
(taken as given, not compared across processes) and runs the same code; the
metrics and per-client outputs are replicated, so every process reads them
whole.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sparsejax.compress.accounting import CommCounters
from sparsejax.compress.accounting import find_nodes
from sparsejax.compress.bitcount import BitCount
from sparsejax.compress.bitcount import exact
from sparsejax.compress.cost_weighted import EnergyLedger
from sparsejax.federated import aggregation
from sparsejax.federated import client_store as client_store_lib
from sparsejax.federated.algorithms import ClientState
from sparsejax.federated.algorithms import FederatedAlgorithm
from sparsejax.federated.algorithms import ServerState
from sparsejax.federated.evaluation import as_xy
from sparsejax.federated.evaluation import chunked_mean
from sparsejax.federated.ledger import CommLedger
from sparsejax.federated.ledger import traffic_metrics
from sparsejax.federated.partition import ClientData
from sparsejax.feedback import ErrorFeedbackState
from sparsejax.feedback import all_finite
from sparsejax.feedback import sq_norm
from sparsejax.parallel.data_parallel import data_mesh

CLIENTS = "clients"


class ClientArrays(NamedTuple):
  """The training data on device, and which examples each client owns."""
  x: jax.Array        # all examples
  y: jax.Array
  indices: jax.Array  # (N, max n_i) int32; row i is valid up to sizes[i]
  sizes: jax.Array    # (N,) int32, n_i


class SimulationState(NamedTuple):
  """Everything a round reads and writes: checkpoint it to resume exactly."""
  server: ServerState
  clients: Any        # the algorithm's ClientState, leading axis N
  ledger: CommLedger
  rng: jax.Array


def client_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh with axis ``"clients"`` over the first ``num_devices``."""
  return data_mesh(num_devices, axis_name=CLIENTS)


def local_batches(key, row, size, num_steps: int, batch_size: int):
  """``(num_steps, batch_size)`` example ids from ``row[:size]``.

  A random order of the valid positions, cycled: no example repeats before
  all ``size`` have been used.
  """
  m = row.shape[0]
  scores = jnp.where(jnp.arange(m) < size, jax.random.uniform(key, (m,)), 2.0)
  order = jnp.argsort(scores)
  pos = jnp.arange(num_steps * batch_size) % jnp.maximum(size, 1)
  return row[order[pos]].reshape(num_steps, batch_size)


def uplink_bits_sent(client: ClientState) -> BitCount:
  """Cumulative bits counted by the compressors of a client's uplink."""
  return BitCount.sum(c.bits for c in find_nodes(client.uplink, CommCounters))


def client_update(algo: FederatedAlgorithm, server: ServerState,
                  client: ClientState, row, size, key, x, y, probe=None,
                  probe_grad=None, unroll: int | bool | None = None,
                  mismatch_alpha: float | None = None):
  """One client's round: ``(message, new client state, metrics)``.

  ``metrics["finite"]``: whether ``y_H``, the message and the new state are
  free of NaN/Inf (the engine rejects the update otherwise);
  ``metrics["uplink_bits"]``: what the uplink compressors counted for this
  message (their counters' growth: a gated or skipped message counts 0).
  ``probe``/``probe_grad``: a held-out batch and ``grad f(w)`` on it; if
  given, ``grad_mismatch = ||grad f(w) - grad f(y_0)||^2`` at the local
  start point ``y_0`` (``w + alpha e_i`` for SA-PEF) is reported, or with
  ``mismatch_alpha = a`` at ``w + a e_i`` whatever the algorithm's alpha
  (the SA-PEF code's ``metric_alpha``, 1 by default there: comparable
  across EF, SAEF and SA-PEF; 0 for an uplink without error feedback).
  ``unroll``: of the ``lax.scan`` over the ``H`` local steps (``True``: all;
  ``None``: all if ``H <= 16``, else 1).
  """
  examples = local_batches(key, row, size, algo.local_steps, algo.batch_size)
  local = algo.client_init(server, client)
  metrics = {}
  if probe is not None:
    start = (local.params if mismatch_alpha is None
             else _step_ahead(server.params, client.uplink, mismatch_alpha))
    g0 = jax.grad(lambda p: algo.model.loss(p, probe)[0])(start)
    metrics["grad_mismatch"] = sq_norm(jax.tree.map(jnp.subtract, probe_grad,
                                                    g0))

  def step(local, ids):
    return algo.client_step(local, {"x": x[ids], "y": y[ids]})

  local, step_metrics = jax.lax.scan(
      step, local, examples,
      unroll=_local_step_unroll(algo.local_steps, unroll))
  message, new_client, final_metrics = algo.client_final(server, client, local)
  metrics["finite"] = all_finite((local.params, message, new_client))
  metrics.update(final_metrics)
  metrics.update({f"train_{k}": jnp.mean(v) for k, v in step_metrics.items()})
  metrics["uplink_bits"] = (uplink_bits_sent(new_client)
                            - uplink_bits_sent(client))
  return message, new_client, metrics


def _step_ahead(params, uplink, alpha: float):
  """``w + alpha e_i`` of an error-feedback uplink; ``w`` without one."""
  found = find_nodes(uplink, ErrorFeedbackState)
  if not found:
    return params
  return jax.tree.map(lambda w, e: w + alpha * e.astype(w.dtype), params,
                      found[0].residual)


MAX_FULL_UNROLL = 16


def _local_step_unroll(local_steps: int,
                       unroll: int | bool | None) -> int | bool:
  """The local-step scan's unroll; ``None``: all of ``H <= 16`` steps, else 1.

  XLA:CPU runs convolutions in a loop body 2-3x slower than unrolled ones
  (measured in BUILD_NOTES.md); unrolling costs compile time linear in ``H``.
  """
  if unroll is None:
    return local_steps <= MAX_FULL_UNROLL
  if not isinstance(unroll, bool) and unroll < 1:
    raise ValueError(f"unroll must be True, False or >= 1, got {unroll}")
  return unroll


def _fold_keys(tree, i):
  """Makes PRNG keys in a client's state distinct per client id ``i``."""
  def fold(x):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.fold_in(x, i)
    return x
  return jax.tree.map(fold, tree)


def _to_host(tree):
  """Concrete values of replicated outputs (also with several processes)."""
  def one(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
      a = a.addressable_data(0)
    return np.asarray(a)
  return jax.tree.map(one, tree)


class RoundConfig(NamedTuple):
  """The static part of a round (hashable: equal configs share one compile)."""
  algo: FederatedAlgorithm
  num_clients: int
  clients_per_round: int
  padded_clients: int           # S rounded up to a multiple of the devices
  mesh: Mesh | None
  client_batch_size: int | None
  unroll: int | bool
  mismatch_alpha: float | None  # None: at the algorithm's start point


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 5))
def _initial_state(algo: FederatedAlgorithm, num_clients: int,
                   sharding: NamedSharding | None, key, params,
                   one_client: bool = False):
  """The initial state; ``one_client``: one client's state, keys unfolded."""
  if params is None:
    params = algo.model.init(jax.random.fold_in(key, 0))
  if one_client:  # the template of a HostClientStore
    clients = algo.client_state_init(params)
  else:
    clients = jax.vmap(
        lambda i: _fold_keys(algo.client_state_init(params), i))(
            jnp.arange(num_clients))
  state = SimulationState(algo.init(params), clients,
                          CommLedger.zeros(num_clients),
                          jax.random.fold_in(key, 1))
  if sharding is None:
    return state
  return jax.lax.with_sharding_constraint(state, sharding)


def _device_round(config: RoundConfig, server, clients, rows, sizes, weights,
                  keys, x, y, probe, probe_grad):
  """The clients of one device: their new states, metrics and message sums.

  ``weights``: ``n_i``, 0 for padding and dropped clients; a non-finite
  update gets weight 0 too.
  """
  algo = config.algo

  def one(client, row, size, key):
    return client_update(algo, server, client, row, size, key, x, y, probe,
                         probe_grad, config.unroll, config.mismatch_alpha)

  args = (clients, rows, sizes, keys)
  if config.client_batch_size is None:
    messages, clients, metrics = jax.vmap(one)(*args)
  else:
    messages, clients, metrics = jax.lax.map(
        lambda a: one(*a), args, batch_size=config.client_batch_size)
  weights = jnp.where(metrics["finite"], weights, 0).astype(jnp.float32)
  sums = aggregation.client_sums(messages, weights, algo.aggregation)
  if config.mesh is not None:
    sums = jax.lax.psum(sums, CLIENTS)
  return sums, clients, metrics


def _sample_ids(config: RoundConfig, rng):
  """The round's ``S_pad`` client ids (``N`` for padding) and the next rng.

  A function of the round's rng only: the next round's clients are known
  before this round is computed (the host store prefetches their rows).
  """
  n, s = config.num_clients, config.clients_per_round
  next_rng, sample_key, _, _ = jax.random.split(rng, 4)
  ids = jax.random.choice(sample_key, n, (s,), replace=False)
  ids = jnp.concatenate([ids.astype(jnp.int32),
                         jnp.full((config.padded_clients - s,), n,
                                  jnp.int32)])
  return ids, next_rng


sample_ids = jax.jit(_sample_ids, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def run_round(config: RoundConfig, state: SimulationState, data: ClientArrays,
              dropout_rate, probe=None):
  """One round (see the module docstring): ``(state, (metrics, per_client))``.

  ``metrics`` are means over the accepted clients plus exact ``BitCount`` s;
  ``per_client`` holds the ``S_pad`` slot ids (``N`` for padding), their
  uplink bits and ``dropped``/``rejected`` flags. ``state`` is donated.
  """
  ids, _ = _sample_ids(config, state.rng)

  def take(a):
    return jnp.take(a, ids, axis=0, mode="clip")

  server, new_clients, accepted, ledger, rng, outputs = _sampled_round(
      config, state.server, state.ledger, state.rng,
      jax.tree.map(take, state.clients), ids, data, dropout_rate, probe)
  scatter_ids = jnp.where(accepted, ids, config.num_clients)  # N: not written
  clients = jax.tree.map(lambda a, b: a.at[scatter_ids].set(b, mode="drop"),
                         state.clients, new_clients)
  return SimulationState(server, clients, ledger, rng), outputs


def _sampled_round(config: RoundConfig, server, ledger, rng, clients, ids,
                   data: ClientArrays, dropout_rate, probe):
  """The round of the sampled clients' states ``clients`` (rows ``ids``).

  ``ids``: :func:`sample_ids` of ``rng``. Returns ``(server, new client
  states, accepted, ledger, next rng, (metrics, per_client))``: the caller
  writes back the new states of the ``accepted`` slots.
  """
  algo = config.algo
  n, s, s_pad = config.num_clients, config.clients_per_round, config.padded_clients
  rng, _, client_key, dropout_key = jax.random.split(rng, 4)
  valid = jnp.arange(s_pad) < s
  dropped = valid & jax.vmap(lambda i: jax.random.bernoulli(
      jax.random.fold_in(dropout_key, i), dropout_rate))(ids)
  sent = valid & ~dropped

  def take(a):
    return jnp.take(a, ids, axis=0, mode="clip")

  sizes = jnp.where(valid, take(data.sizes), 0)
  keys = jax.vmap(lambda i: jax.random.fold_in(client_key, i))(ids)
  server, downlink = algo.broadcast(server)
  probe_grad = None
  if probe is not None:
    probe_grad = jax.grad(lambda p: algo.model.loss(p, probe)[0])(
        server.params)

  device_round = functools.partial(_device_round, config)
  if config.mesh is not None:
    c = P(CLIENTS)
    device_round = jax.shard_map(
        device_round, mesh=config.mesh,
        in_specs=(P(), c, c, c, c, c, P(), P(), P(), P()),
        out_specs=(P(), c, c), check_vma=False)
  sums, new_clients, metrics = device_round(
      server, clients, take(data.indices),
      sizes, jnp.where(sent, sizes, 0), keys, data.x, data.y, probe,
      probe_grad)

  finite = metrics.pop("finite")
  accepted, rejected = sent & finite, sent & ~finite
  participation = (jnp.sum(jnp.where(accepted, sizes, 0))
                   / jnp.sum(data.sizes)).astype(jnp.float32)
  server = algo.server_update(server, aggregation.finalize(sums),
                              participation)
  uplink = metrics.pop("uplink_bits").masked(sent)
  ledger = ledger.record(ids, valid, uplink, downlink)

  count = jnp.sum(accepted)  # metrics are NaN in a round with none accepted
  out = {k: jnp.sum(jnp.where(accepted, v, 0)) / count
         for k, v in metrics.items()}
  out["dropped_clients"] = jnp.sum(dropped)
  out["rejected_clients"] = jnp.sum(rejected)
  out["round_uplink_bits"] = uplink.total()
  out["round_downlink_bits"] = (BitCount.zero((s_pad,)) + downlink).total(
      where=valid)
  out["uplink_bits"], out["downlink_bits"] = ledger.totals()
  per_client = {"clients": ids, "uplink_bits": uplink, "dropped": dropped,
                "rejected": rejected}
  if config.mesh is not None:  # replicated: every process reads them whole
    out, per_client = jax.lax.with_sharding_constraint(
        (out, per_client), NamedSharding(config.mesh, P()))
  return server, new_clients, accepted, ledger, rng, (out, per_client)


_sampled_round_jit = jax.jit(_sampled_round, static_argnums=0)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _evaluate(model, params, test, chunk_size):
  return chunked_mean(lambda batch: model.evaluate(params, batch), test,
                      chunk_size)


class Simulation:
  """Runs a :class:`FederatedAlgorithm` over simulated clients.

  Example::

    algo = sj.federated.sapef(model, optax.sgd(0.05, momentum=0.9),
                              sj.top_k(0.01, scope="global"), alpha=0.85)
    sim = sj.federated.Simulation(algo, clients=partition,
                                  clients_per_round=10, test_data=test)
    for rnd, metrics in sim.run(num_rounds=200):
      ...

  ``sim.state`` is a pytree (server params and round, all client states, the
  ledger, the PRNG key); ``sim.restore(state)`` continues bit-exactly.
  """

  def __init__(self, algo: FederatedAlgorithm, clients: ClientData,
               clients_per_round: int, *, seed: int = 0, params=None,
               test_data=None, eval_every: int = 1, eval_batch_size: int = 256,
               probe_size: int = 64, mesh: Mesh | None = None,
               client_batch_size: int | None = None,
               unroll: int | bool | None = None,
               dropout_rate: float = 0.0,
               mismatch_alpha: float | None = None,
               client_store: str = "device", store_dir: str | None = None,
               prefetch: bool | None = None):
    """Builds the initial state and the jitted round.

    Args:
      algo: the algorithm.
      clients: the partitioned training data.
      clients_per_round: ``S``, in ``[1, N]``.
      seed: seeds the model init (unless ``params``), sampling and batches.
      params: initial global params (default ``algo.model.init``).
      test_data: ``Dataset`` or ``(x, y)`` for the test metrics; its first
        ``probe_size`` examples are also the held-out probe batch of the
        gradient mismatch (``probe_size=0`` turns that off).
      eval_every: evaluate every this many rounds (and at the end of ``run``).
      eval_batch_size: examples per evaluation chunk.
      mesh: a mesh with a ``"clients"`` axis (:func:`client_mesh`) to split
        clients over devices with ``shard_map``; ``None``: one device, vmap.
      client_batch_size: vectorise this many clients at a time per device
        (``lax.map``) instead of all of them (``None``).
      unroll: unroll factor of the scan over the ``H`` local steps (``True``:
        all); ``None``: all if ``H <= 16``, else 1. XLA:CPU runs
        convolutions in a loop body 2-3x slower than unrolled; unrolling
        costs compile time linear in ``H``.
      dropout_rate: probability that a sampled client drops out mid-round
        (see the module docstring), in ``[0, 1]``.
      mismatch_alpha: where ``grad_mismatch`` is measured (with a probe):
        ``None``: at each client's start point ``y_0``; a float ``a``: at
        ``w + a e_i`` for every algorithm (:func:`client_update`).
      client_store: where the ``N`` clients' states live: ``"device"``
        (stacked in device memory, the whole round in one jit), ``"host"``
        (numpy arrays in RAM) or ``"mmap"`` (memory-mapped files under
        ``store_dir``), see :mod:`~sparsejax.federated.client_store`. The
        host stores gather the sampled clients' rows, run the same round on
        them and write the accepted ones back: the same results.
      store_dir: the directory of the ``"mmap"`` store's files (required for
        it, not allowed for the others).
      prefetch: host stores: gather the next round's rows while the device
        computes this round (the clients are sampled from the rng alone).
        ``None``: unless the devices are CPUs, where the gather competes with
        the round for the same cores (slower on 2 cores, BUILD_NOTES.md).

    Raises:
      ValueError: ``clients_per_round`` outside ``[1, N]``, ``dropout_rate``
        outside ``[0, 1]``, ``eval_every``, ``client_batch_size`` or
        ``unroll`` < 1, a mesh without a ``"clients"`` axis,
        ``client_store`` not one of ``"device"``, ``"host"``, ``"mmap"``,
        ``store_dir`` missing for (given without) ``"mmap"``, or a host
        store with several processes.
    """
    n = clients.num_clients
    if not 1 <= clients_per_round <= n:
      raise ValueError(f"clients_per_round must be in [1, {n}], "
                       f"got {clients_per_round}")
    if eval_every < 1:
      raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    if client_batch_size is not None and client_batch_size < 1:
      raise ValueError(f"client_batch_size must be >= 1, got "
                       f"{client_batch_size}")
    if mesh is not None and CLIENTS not in mesh.axis_names:
      raise ValueError(f"mesh needs a {CLIENTS!r} axis, has {mesh.axis_names}")
    if client_store not in client_store_lib.STORES:
      raise ValueError(f"client_store must be one of "
                       f"{client_store_lib.STORES}, got {client_store!r}")
    if (store_dir is None) == (client_store == "mmap"):
      raise ValueError(f"store_dir is required for client_store='mmap' and "
                       f"only for it, got store_dir={store_dir!r} with "
                       f"client_store={client_store!r}")
    if client_store != "device" and jax.process_count() > 1:
      raise ValueError(f"client_store={client_store!r} needs one process, "
                       f"running {jax.process_count()}")
    self.algo = algo
    self.dropout_rate = dropout_rate
    self.eval_every = eval_every
    devices = 1 if mesh is None else mesh.shape[CLIENTS]
    self.config = RoundConfig(algo, n, clients_per_round,
                              -(-clients_per_round // devices) * devices,
                              mesh, client_batch_size,
                              _local_step_unroll(algo.local_steps, unroll),
                              None if mismatch_alpha is None
                              else float(mismatch_alpha))
    self._sharding = None if mesh is None else NamedSharding(mesh, P())
    self.data = self._put(ClientArrays(
        clients.x, clients.y, clients.padded_indices(),
        clients.sizes.astype(np.int32)))
    self._test = self._probe = None
    self._eval_batch_size = eval_batch_size
    if test_data is not None:
      tx, ty = map(np.asarray, as_xy(test_data, "test_data"))
      self._test = self._put({"x": tx, "y": ty})
      if probe_size:
        self._probe = self._put({"x": tx[:probe_size], "y": ty[:probe_size]})
    self._store = None
    self._prefetch = (jax.devices()[0].platform != "cpu" if prefetch is None
                      else prefetch)
    self._pending = None  # the next round's (ids, rows, rng after it)
    if client_store == "device":
      self._state = _initial_state(algo, n, self._sharding,
                                   jax.random.key(seed), params)
    else:
      self._rows_sharding = (None if mesh is None
                             else NamedSharding(mesh, P(CLIENTS)))
      state = _initial_state(algo, n, self._sharding, jax.random.key(seed),
                             params, True)
      self._store = client_store_lib.HostClientStore(
          state.clients, n, store_dir)
      self._state = state._replace(clients=None)
    self._round = 0

  # -- state -----------------------------------------------------------------

  def _put(self, tree):
    if self._sharding is None:
      return jax.device_put(tree, may_alias=False)
    if jax.process_count() == 1:
      return jax.device_put(tree, self._sharding, may_alias=False)

    # Several processes: host values are taken as given on each process.
    # device_put would all-gather them to check that they agree (the whole
    # dataset), and NaNs (a faulty client's data) never compare equal.
    def put(a):
      if isinstance(a, jax.Array):
        return jax.device_put(a, self._sharding, may_alias=False)
      a = np.asarray(a)
      return jax.make_array_from_callback(a.shape, self._sharding,
                                          lambda index: a[index])

    return jax.tree.map(put, tree)

  @property
  def state(self) -> SimulationState:
    """The current state; its buffers are donated to the next round.

    With a host store, ``clients`` holds the store's live numpy arrays (the
    next round writes them; a ``Checkpointer`` copies them when saving).
    """
    if self._store is None:
      return self._state
    return self._state._replace(clients=self._store.tree())

  @property
  def prefetch(self) -> bool:
    """Whether a host store gathers the next round's rows during a round."""
    return self._prefetch

  @property
  def client_store(self) -> client_store_lib.HostClientStore | None:
    """The host store of the clients' states (``None``: on the device)."""
    return self._store

  def restore(self, state: SimulationState) -> None:
    """Continues from ``state`` (copied; e.g. a restored checkpoint).

    Any store can restore the state of any other (same clients and
    algorithm).
    """
    if self._store is None:
      self._state = self._put(state)
    else:
      self._store.load(state.clients)
      self._state = self._put(state._replace(clients=None))
      self._pending = None
    self._round = int(_to_host(self._state.server.round))

  @property
  def dropout_rate(self) -> float:
    """Probability that a sampled client drops out; may change between rounds."""
    return self._dropout_rate

  @dropout_rate.setter
  def dropout_rate(self, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
      raise ValueError(f"dropout_rate must be in [0, 1], got {rate}")
    self._dropout_rate = float(rate)

  @property
  def round(self) -> int:
    """Rounds completed."""
    return self._round

  @property
  def params(self):
    """The global model."""
    return self._state.server.params

  # -- running ---------------------------------------------------------------

  def step(self, evaluate: bool | None = None) -> tuple[dict, dict]:
    """Runs one round.

    Args:
      evaluate: compute test metrics; ``None``: every ``eval_every`` rounds.

    Returns:
      ``(metrics, per_client)``. ``metrics``: Python scalars, ``round``
      (rounds completed), means over the accepted clients (``train_loss``,
      ``train_<metric>``, ``residual_norm``, ``drift`` = ``||y_H - w||``,
      ``grad_mismatch``; NaN if none was accepted), ``dropped_clients`` and
      ``rejected_clients`` (counts), exact ``round_uplink_bits``,
      ``round_downlink_bits``, cumulative ``uplink_bits``, ``downlink_bits``
      (ints) and ``uplink_bytes``, ``downlink_bytes``, ``total_bytes``
      (floats), and ``test_<metric>`` when evaluated. ``per_client``:
      ``clients`` (the ``S`` sampled ids), their ``uplink_bits`` (0 if
      dropped) and bool ``dropped`` and ``rejected``.
    """
    if self._store is None:
      self._state, (out, per_client) = run_round(
          self.config, self._state, self.data, self._dropout_rate,
          self._probe)
    else:
      out, per_client = self._host_store_round()
    out, per_client = _to_host((out, per_client))
    self._round += 1
    metrics = {"round": self._round}
    for k, v in out.items():
      metrics[k] = exact(v) if isinstance(v, BitCount) else v.item()
    metrics.update(traffic_metrics(out["uplink_bits"], out["downlink_bits"]))
    energy = _energy_joules(self.state.clients)
    if energy is not None:
      metrics["energy_joules"] = energy
    if evaluate is None:
      evaluate = self._round % self.eval_every == 0
    if evaluate and self._test is not None:
      metrics.update({f"test_{k}": v for k, v in self.evaluate().items()})
    s = self.config.clients_per_round
    per_client = jax.tree.map(lambda a: a[:s], per_client)
    per_client["uplink_bits"] = exact(per_client["uplink_bits"])
    return metrics, per_client

  def _draw(self, rng):
    """``(ids, next rng)`` of the round run from ``rng``, on the host."""
    ids, next_rng = sample_ids(self.config, rng)
    return np.asarray(ids), next_rng

  def _host_store_round(self):
    """A round on the host store's sampled rows: ``(metrics, per_client)``.

    With ``prefetch``, the next round's clients are drawn before this round
    is dispatched and their rows gathered while the device runs it; rows of
    clients this round updates are read again after the write-back.
    """
    store = self._store
    if self._pending is None:
      ids, next_rng = self._draw(self._state.rng)
      rows = store.gather(ids)
    else:
      ids, rows, next_rng = self._pending
      self._pending = None
    if self._prefetch:
      next_ids, after_next = self._draw(next_rng)
    server, new_rows, accepted, ledger, rng, outputs = _sampled_round_jit(
        self.config, self._state.server, self._state.ledger, self._state.rng,
        store.to_device(rows, self._rows_sharding), ids, self.data,
        self._dropout_rate, self._probe)
    if self._prefetch:  # numpy, while the device computes
      next_rows = store.gather(next_ids)
    accepted = np.asarray(accepted)
    written = ids[accepted]
    store.scatter(written, [r[accepted] for r in store.from_device(new_rows)])
    if self._prefetch:
      stale = np.isin(np.minimum(next_ids, self.config.num_clients - 1),
                      written)
      if stale.any():
        for r, fresh in zip(next_rows, store.gather(next_ids[stale])):
          r[stale] = fresh
      self._pending = next_ids, next_rows, after_next
    self._state = SimulationState(server, None, ledger, rng)
    return outputs

  def run(self, num_rounds: int) -> Iterator[tuple[int, dict]]:
    """Runs until ``num_rounds`` rounds are completed (continues a restore).

    Yields:
      ``(round, metrics)`` after each round (see :meth:`step`); the last
      round is always evaluated.
    """
    while self._round < num_rounds:
      metrics, _ = self.step(evaluate=True if self._round + 1 == num_rounds
                             else None)
      yield metrics["round"], metrics

  # -- evaluation ------------------------------------------------------------

  def evaluate(self, params=None) -> dict[str, float]:
    """Test metrics of ``params`` (default: the global model)."""
    if self._test is None:
      raise ValueError("no test_data given")
    out = _evaluate(self.algo.model, self.params if params is None else params,
                    self._test, self._eval_batch_size)
    return {k: float(v) for k, v in _to_host(out).items()}


def _energy_joules(client_states) -> float | None:
  """Cumulative uplink energy over all clients, if their uplinks meter it."""
  ledgers = find_nodes(client_states, EnergyLedger)
  if not ledgers:
    return None
  return float(sum(jnp.sum(e.total) for e in ledgers))
