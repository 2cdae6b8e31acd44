r"""The prediction-space knowledge market (KTA v2) and its baselines' engine.

Only predictions on a public reference set cross the wire, so clients may use
different architectures. Per round, for each of ``S`` sampled clients ``i``
(personal models persist for all ``N``):

1. ``E`` local cross-entropy steps on the private data;
2. upload ``Z_i = f_i(X_ref)``, ``(N_ref, K)`` logits in ``value_dtype``;
3. the server's rule (:func:`~sparsejax.federated.knowledge.market_targets`):
   similarity- and accuracy-weighted teachers give targets ``Q_i``;
4. download ``Q_i`` (``N_ref * K`` values);
5. ``E_d`` distillation steps on ``T^2 KL(Q_i || softmax(f_i(x) / T))``
   over reference minibatches, plus ``private_weight`` times the
   cross-entropy of a private minibatch (default 0: pure distillation).

Choices (Du's paper leaves them open, ALGORITHMS.md section 5): the
reference minibatches of a round walk one random order of the reference set,
so ``E_d >= ceil(N_ref / distill_batch_size)`` steps use every reference
example at least once (the experiment binary sets ``E_d`` from
``distill_epochs``). The private cross-entropy term keeps a client anchored
to its own labels while it imitates a teacher that knows other
distributions; with ``private_weight = 0`` the distillation phase sees no
private data, as in FedMD.

``method="fedmd"`` replaces step 3 by the one consensus ``Q = mean_j P_j``;
``method="local"`` stops after step 1 and communicates nothing. An upload
that has the wrong shape or a non-finite value is excluded from that round's
market (counted, its bits still charged, no target sent back). Bits go to a
:class:`~sparsejax.federated.CommLedger` (exact, per client and direction),
as in the :class:`~sparsejax.federated.Simulation`.

References:
  Du, "Prediction-space knowledge markets for communication-efficient
  federated learning on multimedia tasks", 2025.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax.compress.bitcount import BitCount
from sparsejax.federated.evaluation import as_xy
from sparsejax.federated.evaluation import chunked_mean
from sparsejax.federated.knowledge import MarketConfig
from sparsejax.federated.knowledge import distillation_loss
from sparsejax.federated.knowledge import market_targets
from sparsejax.federated.ledger import CommLedger
from sparsejax.federated.ledger import dense_bits
from sparsejax.federated.ledger import traffic_metrics
from sparsejax.federated.model import FederatedModel
from sparsejax.federated.model import classifier
from sparsejax.federated.partition import ClientData
from sparsejax.federated.simulation import local_batches


class ArchitectureGroup(NamedTuple):
  """Market clients that share one architecture (a stateless Flax module)."""
  module: nn.Module
  clients: tuple[int, ...]


class MarketState(NamedTuple):
  """Everything a round reads and writes: checkpoint it to resume exactly."""
  params: tuple        # per group: its clients' personal params, stacked
  ledger: CommLedger   # exact bits per client, uplink and downlink
  excluded: jax.Array  # (N,) int32: uploads left out of the market
  round: jax.Array     # int32: rounds completed
  rng: jax.Array       # the key of the sampling and minibatches


class _GroupFns(NamedTuple):
  model: FederatedModel
  train: Any      # jitted, vmapped local training (+ reference logits)
  distill: Any    # jitted, vmapped distillation
  init: Any       # jitted, vmapped init


@functools.cache  # markets with equal settings share the compiled functions
def _group_fns(module, example_x, optimizer, local_steps, batch_size,
               distill_steps, distill_batch_size, temperature, with_logits,
               private_weight):
  model = classifier(module, example_x)
  apply = lambda p, x: module.apply({"params": p}, x, train=False)

  def run(params, loss_fn, batches):
    def step(carry, batch):
      p, s = carry
      loss, g = jax.value_and_grad(loss_fn)(p, batch)
      u, s = optimizer.update(g, s, p)
      return (optax.apply_updates(p, u), s), loss
    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)),
                                       batches)
    return params, jnp.mean(losses)

  ce = lambda p, x, y, i: model.loss(p, {"x": x[i], "y": y[i]})[0]

  def train_one(params, row, size, key, x, y, x_ref):
    ids = local_batches(key, row, size, local_steps, batch_size)
    params, loss = run(params, lambda p, i: ce(p, x, y, i), ids)
    logits = apply(params, x_ref) if with_logits else jnp.zeros((0,))
    return params, logits, loss

  def distill_one(params, targets, key, row, size, x, y, x_ref):
    n = x_ref.shape[0]
    ref_key, private_key = jax.random.split(key)
    ids = local_batches(ref_key, jnp.arange(n), n, distill_steps,
                        distill_batch_size)
    kl = lambda p, i: distillation_loss(apply(p, x_ref[i]), targets[i],
                                        temperature)
    if not private_weight:
      return run(params, kl, ids)
    private = local_batches(private_key, row, size, distill_steps, batch_size)
    return run(params, lambda p, b: kl(p, b[0]) + private_weight * ce(
        p, x, y, b[1]), (ids, private))

  return _GroupFns(
      model,
      jax.jit(jax.vmap(train_one, in_axes=(0, 0, 0, 0, None, None, None))),
      jax.jit(jax.vmap(distill_one,
                       in_axes=(0, 0, 0, 0, 0, None, None, None))),
      jax.jit(jax.vmap(model.init)))


@functools.partial(jax.jit, static_argnames=("model", "chunk_size"))
def _client_accuracy(model, params, data, rows, sizes, chunk_size):
  def one(p, row, size):
    mask = None if row is None else jnp.arange(row.shape[0]) < size
    return chunked_mean(lambda batch: model.evaluate(p, batch), data,
                        chunk_size, indices=row, mask=mask)["accuracy"]
  axes = (0, None, None) if rows is None else 0
  return jax.vmap(one, in_axes=axes)(params, rows, sizes)


def client_accuracy(model: FederatedModel, params, data=None, *,
                    parts: ClientData | None = None,
                    chunk_size: int = 256) -> np.ndarray:
  """Accuracy of each of ``n`` stacked ``params`` (leading axis ``n``).

  Every model is evaluated on all of ``data`` (a ``Dataset`` or ``(x, y)``),
  or, with ``parts`` (``n`` clients, e.g. held-out splits), model ``i`` on
  ``parts.client_indices[i]`` of ``parts.x``/``parts.y``.

  Raises:
    ValueError: neither or both of ``data`` and ``parts`` given.
  """
  if (data is None) == (parts is None):
    raise ValueError("pass exactly one of data (every model on all of it) "
                     "and parts (model i on client i's examples)")
  if parts is None:
    x, y = as_xy(data, "data")
    rows = sizes = None
  else:
    x, y = parts.x, parts.y
    rows = jnp.asarray(parts.padded_indices())
    sizes = jnp.asarray(parts.sizes.astype(np.int32))
  return np.asarray(_client_accuracy(
      model, params, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, rows, sizes,
      chunk_size))


def local_finetune(module: nn.Module, params, clients: ClientData, *,
                   optimizer: optax.GradientTransformation, steps: int,
                   batch_size: int, seed: int = 0):
  """Every client's copy of ``params`` after ``steps`` local CE steps.

  E.g. FedAvg's global model personalised with as many steps as a market
  client distils. Returns the ``N`` fine-tuned params stacked (leading axis
  ``N``), client ``i``'s minibatches drawn from its own data with key
  ``fold_in(key(seed), i)``.
  """
  if steps < 1 or batch_size < 1:
    raise ValueError(f"steps and batch_size must be >= 1, got {steps}, "
                     f"{batch_size}")
  x = jnp.asarray(clients.x)
  fns = _group_fns(module, jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype),
                   optimizer, steps, batch_size, 1, 1, 1.0, False, 0.0)
  n = clients.num_clients
  stacked = jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), params)
  key = jax.random.key(seed)
  keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(n))
  out, _, _ = fns.train(stacked, jnp.asarray(clients.padded_indices()),
                        jnp.asarray(clients.sizes.astype(np.int32)), keys, x,
                        jnp.asarray(clients.y), x[:1])
  return out


class Market:
  """Runs the market (or a baseline ``method``) over persistent personal models.

  Example::

    groups = [ArchitectureGroup(cnn, tuple(range(10))),
              ArchitectureGroup(mlp, tuple(range(10, 20)))]
    market = Market(groups, clients, (x_ref, y_ref), clients_per_round=10,
                    optimizer=optax.sgd(0.05, momentum=0.9))
    for _ in range(50):
      metrics = market.step()

  Each round samples ``S`` distinct clients (seeded); a group's sampled
  members are padded to a power of two (at most ``min(S, group size)``), so
  a group compiles its round for a few sizes only. ``market.state`` (a
  :class:`MarketState`) holds the models, the ledger and the round;
  ``market.restore(state)`` continues bit-exactly.
  """

  def __init__(self, groups: Sequence[ArchitectureGroup], clients: ClientData,
               reference, *, clients_per_round: int,
               optimizer: optax.GradientTransformation,
               config: MarketConfig = MarketConfig(), local_steps: int = 5,
               batch_size: int = 32, distill_steps: int = 5,
               distill_batch_size: int = 64, private_weight: float = 0.0,
               seed: int = 0):
    """Checks the setup and initialises every client's model.

    Args:
      groups: the architectures and their clients; every client id in
        ``[0, N)`` appears in exactly one group.
      clients: the private training data of the ``N`` clients.
      reference: ``(x_ref, y_ref)`` or a ``Dataset``: the public reference
        inputs, and labels that only the server reads.
      clients_per_round: ``S`` in ``[1, N]``.
      optimizer: client optimizer, re-initialised for each local-training and
        each distillation phase.
      config: the server rule (:class:`MarketConfig`).
      local_steps, batch_size: ``E`` cross-entropy minibatch steps.
      distill_steps, distill_batch_size: ``E_d`` distillation steps over
        one random order of the reference set (cycled).
      private_weight: weight ``>= 0`` of the cross-entropy of a private
        minibatch (``batch_size``) added to each distillation step.
      seed: seeds the model inits, sampling and minibatches.

    Raises:
      ValueError: bad groups, ``S`` or ``private_weight``; reference labels
        missing, of the wrong length, or naming classes no client holds.
    """
    self.config = config.check()
    if not private_weight >= 0:
      raise ValueError(f"private_weight must be >= 0, got {private_weight}")
    n = clients.num_clients
    ids = sorted(c for g in groups for c in g.clients)
    if ids != list(range(n)):
      raise ValueError(f"groups must cover clients 0..{n - 1} exactly once")
    if not 1 <= clients_per_round <= n:
      raise ValueError(f"clients_per_round must be in [1, {n}], "
                       f"got {clients_per_round}")
    x_ref, y_ref = as_xy(reference, "reference")
    if y_ref is None:
      raise ValueError("the reference set needs labels: the server scores "
                       "each client's reference accuracy acc_j with them")
    y_ref = np.asarray(y_ref)
    if y_ref.shape != (len(x_ref),):
      raise ValueError(f"reference labels have shape {y_ref.shape}, expected "
                       f"({len(x_ref)},)")
    held = np.unique(clients.y[np.concatenate(clients.client_indices)])
    unknown = np.setdiff1d(np.unique(y_ref), held)
    if unknown.size:
      raise ValueError(f"reference labels {unknown.tolist()} belong to no "
                       f"client (clients hold classes {held.tolist()})")
    self.groups = tuple(ArchitectureGroup(g.module, tuple(g.clients))
                        for g in groups)
    self.num_clients, self.clients_per_round = n, clients_per_round
    self.num_classes = clients.num_classes
    self._x, self._y = jnp.asarray(clients.x), jnp.asarray(clients.y)
    self._rows = jnp.asarray(clients.padded_indices())
    self._sizes = jnp.asarray(clients.sizes.astype(np.int32))
    self._x_ref, self._y_ref = jnp.asarray(x_ref), jnp.asarray(y_ref)
    fns = functools.partial(
        _group_fns, example_x=jax.ShapeDtypeStruct((1,) + self._x_ref.shape[1:],
                                                   self._x_ref.dtype),
        optimizer=optimizer,
        local_steps=local_steps, batch_size=batch_size,
        distill_steps=distill_steps, distill_batch_size=distill_batch_size,
        temperature=config.temperature, with_logits=config.method != "local",
        private_weight=float(private_weight))
    self._fns = [fns(g.module) for g in self.groups]
    key = jax.random.key(seed)
    init_key = jax.random.fold_in(key, 0)
    params = tuple(f.init(jax.vmap(lambda c: jax.random.fold_in(init_key, c))(
        jnp.asarray(g.clients))) for f, g in zip(self._fns, self.groups))
    self._state = MarketState(params, CommLedger.zeros(n),
                              jnp.zeros((n,), jnp.int32),
                              jnp.zeros((), jnp.int32), key)

  @property
  def state(self) -> MarketState:
    """The current state."""
    return self._state

  def restore(self, state: MarketState) -> None:
    """Continues from ``state`` (e.g. a restored checkpoint)."""
    self._state = MarketState(*jax.tree.map(jnp.asarray, tuple(state)))

  @property
  def round(self) -> int:
    """Rounds completed."""
    return int(self._state.round)

  @property
  def params(self) -> tuple:
    """Per group, its clients' personal params stacked in group order."""
    return self._state.params

  @property
  def ledger(self) -> CommLedger:
    """Exact uplink and downlink bits of each client so far."""
    return self._state.ledger

  @property
  def excluded(self) -> jax.Array:
    """``(N,)`` uploads of each client left out of the market so far."""
    return self._state.excluded

  def sample(self, rnd: int) -> np.ndarray:
    """The sorted ids of the ``S`` clients of round ``rnd`` (0-based)."""
    key = jax.random.fold_in(jax.random.fold_in(self._state.rng, 1), rnd)
    return np.sort(np.asarray(jax.random.choice(
        key, self.num_clients, (self.clients_per_round,), replace=False)))

  def step(self) -> dict[str, Any]:
    """One round; returns its metrics.

    ``train_loss``, ``distill_loss``, the accepted clients' mean
    ``reference_accuracy``, ``fedmd_distance`` (how far their targets are
    from the FedMD mean) and ``weight_entropy`` (see :func:`market_targets`),
    ``participants``, ``excluded``, exact cumulative bits and bytes.
    """
    rnd = self.round
    sampled = self.sample(rnd)
    train_key, distill_key = jax.random.split(
        jax.random.fold_in(jax.random.fold_in(self._state.rng, 2), rnd))
    slots, trained, uploads, losses = [], [], [], []
    for g, (group, fns) in enumerate(zip(self.groups, self._fns)):
      members = np.flatnonzero(np.isin(np.asarray(group.clients), sampled))
      if not members.size:
        continue
      width = min(1 << (members.size - 1).bit_length(), self.clients_per_round,
                  len(group.clients))
      pos = np.full(width, len(group.clients), np.int32)  # padding: dropped
      pos[:members.size] = members
      ids = np.asarray(group.clients)[np.minimum(pos, len(group.clients) - 1)]
      gathered = jax.tree.map(lambda a: jnp.take(a, pos, 0, mode="clip"),
                              self.params[g])
      keys = jax.vmap(lambda c: jax.random.fold_in(train_key, c))(
          jnp.asarray(ids))
      params, logits, loss = fns.train(gathered, self._rows[ids],
                                       self._sizes[ids], keys, self._x,
                                       self._y, self._x_ref)
      real = np.arange(width) < members.size
      slots.append((g, pos, ids, real))
      trained.append(params)
      uploads.append(logits)
      losses.append(np.asarray(loss)[real])
    params = list(self.params)
    metrics = {"round": rnd + 1, "train_loss":
               float(np.mean(np.concatenate(losses)))}
    real = np.concatenate([s[3] for s in slots])
    # Ledger ids: padding slots get N, which the ledger drops.
    ids = np.where(real, np.concatenate([s[2] for s in slots]),
                   self.num_clients)
    ledger, excluded = self.ledger, self.excluded
    if self.config.method == "local":
      for (g, pos, _, _), new in zip(slots, trained):
        params[g] = _scatter(params[g], pos, new)
      ledger = ledger.record(ids, real, BitCount.zero(), BitCount.zero())
    else:
      out, up, down, valid = self._exchange(slots, trained, uploads,
                                            distill_key, params)
      ledger = ledger.record(ids, real, up, down)
      excluded = excluded.at[ids].add((real & ~valid).astype(np.int32),
                                     mode="drop")
      metrics.update(out)
    self._state = MarketState(tuple(params), ledger, excluded,
                              self._state.round + 1, self._state.rng)
    metrics.update(traffic_metrics(*ledger.totals()))
    metrics["excluded_total"] = int(jnp.sum(excluded))
    return metrics

  def _exchange(self, slots, trained, uploads, distill_key, params):
    """Uploads -> server -> targets -> distillation (writes ``params``).

    Returns the metrics, the ``(C,)`` uplink and downlink bits of the slots,
    and which uploads the server accepted.
    """
    cfg = self.config
    expected = (self._x_ref.shape[0], self.num_classes)
    wire, ok, up_bits = [], [], []
    for (_, _, ids, real), z in zip(slots, uploads):
      z = z.astype(cfg.value_dtype)  # what goes on the wire
      good = z.shape[1:] == expected
      wire.append(z if good else jnp.zeros((len(ids),) + expected, z.dtype))
      ok.append(real & good)
      up_bits.append(jax.vmap(dense_bits)(z))
    real = np.concatenate([s[3] for s in slots])
    out = market_targets(jnp.concatenate(wire), jnp.asarray(np.concatenate(ok)),
                         self._y_ref, cfg)
    valid = np.asarray(out["valid"])
    targets = out["targets"].astype(cfg.value_dtype)  # what comes back
    up = jax.tree.map(lambda *a: jnp.concatenate(a), *up_bits).masked(real)
    down = jax.vmap(dense_bits)(targets).masked(valid)
    targets = targets.astype(jnp.float32)
    start, dloss = 0, []
    for (g, pos, group_ids, _), new in zip(slots, trained):
      sl = slice(start, start + len(group_ids))
      keep = valid[sl]
      start = sl.stop
      if keep.any():  # else nobody to distil (e.g. the group's uploads failed)
        keys = jax.vmap(lambda c: jax.random.fold_in(distill_key, c))(
            jnp.asarray(group_ids))
        distilled, loss = self._fns[g].distill(
            new, targets[sl], keys, self._rows[group_ids],
            self._sizes[group_ids], self._x, self._y, self._x_ref)
        new = jax.tree.map(lambda d, t: jnp.where(
            keep.reshape((-1,) + (1,) * (d.ndim - 1)), d, t), distilled, new)
        dloss.append(np.asarray(loss)[keep])
      params[g] = _scatter(params[g], pos, new)
    mean = lambda key: (float(np.asarray(out[key])[valid].mean())
                        if valid.any() else float("nan"))
    metrics = {"distill_loss": float(np.mean(np.concatenate(dloss)))
               if valid.any() else float("nan"),
               "reference_accuracy": mean("accuracy"),
               "fedmd_distance": mean("fedmd_distance"),
               "weight_entropy": mean("weight_entropy"),
               "participants": int(real.sum()),
               "excluded": int((real & ~valid).sum())}
    return metrics, up, down, valid

  def client_accuracy(self, data=None, *,
                      parts: ClientData | None = None) -> np.ndarray:
    """``(N,)`` accuracy of every personal model (see :func:`client_accuracy`).

    ``parts``: per-client evaluation splits (e.g. held-out data), indexed like
    the training clients; otherwise all models are scored on ``data``.
    """
    acc = np.zeros(self.num_clients)
    for g, (group, fns) in enumerate(zip(self.groups, self._fns)):
      sub = None if parts is None else ClientData(
          parts.x, parts.y, [parts.client_indices[c] for c in group.clients],
          parts.num_classes)
      acc[list(group.clients)] = client_accuracy(fns.model, self.params[g],
                                                 data, parts=sub)
    return acc


def _scatter(stacked, pos, new):
  """``stacked`` with rows ``pos`` set to ``new`` (out-of-range: dropped)."""
  return jax.tree.map(lambda a, b: a.at[pos].set(b, mode="drop"), stacked, new)
