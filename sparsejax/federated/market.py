r"""Prediction-space knowledge market (KTA v2) and baselines on its engine.

Only predictions on a public reference set cross the wire, so clients may use
different architectures. Per round, for each of ``S`` sampled clients ``i``
(personal models persist for all ``N``):

1. ``E`` local cross-entropy steps on the private data;
2. upload ``Z_i = f_i(X_ref)``, ``(N_ref, K)`` logits in ``value_dtype``;
3. server: ``P_i = softmax(Z_i / T)``, ``acc_j`` on the reference labels,
   similarity ``S_ij`` (cosine of the flattened ``P``, or
   ``exp(-JS(P_i, P_j) / tau)``), teacher weights
   ``w_ij ∝ S_ij^beta acc_j^gamma`` over the top-``m`` most similar eligible
   clients, and targets ``Q_i = sum_j w_ij P_j``;
4. download ``Q_i`` (``N_ref * K`` values);
5. ``E_d`` distillation steps on ``T^2 KL(Q_i || softmax(f_i(x) / T))``.

``method="fedmd"`` replaces step 3 by the one consensus ``Q = mean_j P_j``
(Li & Wang, FedMD, https://arxiv.org/abs/1910.03581); ``method="local"`` stops
after step 1 and communicates nothing. An upload that has the wrong shape or a
non-finite value is excluded from that round's market (counted, its bits still
charged, no target sent back). FedAvg/FedProx run on the usual
:class:`~sparsejax.federated.Simulation` (:func:`baseline_algorithm`).

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

from sparsejax.federated.algorithms import FederatedAlgorithm
from sparsejax.federated.algorithms import fedavg
from sparsejax.federated.algorithms import fedprox
from sparsejax.federated.model import FederatedModel
from sparsejax.federated.model import classifier
from sparsejax.federated.partition import ClientData
from sparsejax.federated.simulation import local_batches

METHODS = ("kta", "fedmd", "local")
SIMILARITIES = ("cosine", "js")
_EPS = 1e-12


class MarketConfig(NamedTuple):
  """The server's rule (hashable: one compile per config).

  Attributes:
    method: ``"kta"`` (personalised market), ``"fedmd"`` (mean teacher) or
      ``"local"`` (no communication).
    similarity: ``"cosine"`` of the flattened probability matrices, or
      ``"js"``: ``exp(-JS(P_i, P_j) / tau)``, JS averaged over reference rows.
    tau: JS similarity temperature.
    beta: exponent of the similarity in the teacher weights.
    gamma: exponent of the reference accuracy in the teacher weights.
    top_m: teachers per client, the ``m`` most similar eligible ones
      (``None``: all).
    include_self: whether client ``i`` may be its own teacher.
    temperature: ``T`` of ``P = softmax(Z / T)`` and of the distillation loss.
    value_dtype: dtype of the logits and targets on the wire (``"float32"``,
      ``"bfloat16"``, ``"float16"``); bits are counted in it.
  """
  method: str = "kta"
  similarity: str = "cosine"
  tau: float = 1.0
  beta: float = 1.0
  gamma: float = 1.0
  top_m: int | None = None
  include_self: bool = False
  temperature: float = 1.0
  value_dtype: str = "float32"

  def check(self) -> "MarketConfig":
    if self.method not in METHODS:
      raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
    if self.similarity not in SIMILARITIES:
      raise ValueError(f"similarity must be one of {SIMILARITIES}, "
                       f"got {self.similarity!r}")
    if self.temperature <= 0 or self.tau <= 0:
      raise ValueError("temperature and tau must be > 0")
    if self.top_m is not None and self.top_m < 1:
      raise ValueError(f"top_m must be >= 1 or None, got {self.top_m}")
    jnp.dtype(self.value_dtype)  # raises on an unknown dtype
    return self

  @property
  def value_bits(self) -> int:
    return jnp.dtype(self.value_dtype).itemsize * 8


# -- server-side math (pure jnp) ---------------------------------------------


def similarity_matrix(probs: jax.Array, kind: str = "cosine",
                      tau: float = 1.0) -> jax.Array:
  """``(C, C)`` similarities of ``(C, N_ref, K)`` probability matrices.

  ``"cosine"``: ``<P_i, P_j> / (|P_i| |P_j|)`` of the flattened matrices.
  ``"js"``: ``exp(-JS(P_i, P_j) / tau)`` with the Jensen-Shannon divergence
  (nats) of each reference row, averaged over rows.
  """
  if kind == "cosine":
    flat = probs.reshape(probs.shape[0], -1)
    unit = flat / jnp.maximum(jnp.linalg.norm(flat, axis=1, keepdims=True),
                              _EPS)
    return unit @ unit.T
  if kind == "js":
    p, q = probs[:, None], probs[None, :]
    m = 0.5 * (p + q)
    kl = lambda a: jnp.sum(jax.scipy.special.xlogy(a, a)
                           - jax.scipy.special.xlogy(a, m), axis=-1)
    js = 0.5 * (kl(p) + kl(q))
    return jnp.exp(-jnp.mean(js, axis=-1) / tau)
  raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")


def teacher_weights(sim: jax.Array, acc: jax.Array, valid: jax.Array, *,
                    beta: float = 1.0, gamma: float = 1.0,
                    top_m: int | None = None,
                    include_self: bool = False) -> jax.Array:
  """Row-stochastic ``(C, C)`` weights ``w_ij ∝ S_ij^beta acc_j^gamma``.

  Teachers ``j`` of ``i`` are the valid clients (not ``i`` unless
  ``include_self``), cut to the ``top_m`` with the largest ``S_ij``. A row
  with no teacher of positive weight falls back to ``w_ii = 1`` (the client
  keeps its own predictions as target).
  """
  c = sim.shape[0]
  eye = jnp.eye(c, dtype=bool)
  eligible = valid[None, :] & (jnp.ones_like(eye) if include_self else ~eye)
  if top_m is not None and top_m < c:
    _, idx = jax.lax.top_k(jnp.where(eligible, sim, -jnp.inf), top_m)
    chosen = jnp.zeros_like(eye).at[jnp.arange(c)[:, None], idx].set(True)
    eligible &= chosen
  raw = jnp.where(eligible, jnp.power(jnp.maximum(sim, 0.0), beta)
                  * jnp.power(acc, gamma)[None, :], 0.0)
  total = jnp.sum(raw, axis=1, keepdims=True)
  return jnp.where(total > 0, raw / jnp.where(total > 0, total, 1.0),
                   eye.astype(raw.dtype))


def mean_teacher_weights(valid: jax.Array) -> jax.Array:
  """FedMD: every row is ``valid_j / sum(valid)``, the consensus ``mean_j P_j``."""
  w = valid.astype(jnp.float32) / jnp.maximum(jnp.sum(valid), 1)
  return jnp.broadcast_to(w, (valid.shape[0], valid.shape[0]))


@functools.partial(jax.jit, static_argnames="config")
def market_targets(logits: jax.Array, valid: jax.Array, labels: jax.Array,
                   config: MarketConfig) -> dict[str, jax.Array]:
  """The server of one round on ``(C, N_ref, K)`` uploads.

  Uploads are upcast to float32; invalid ones (``valid`` false, e.g.
  non-finite) are zeroed and are nobody's teacher; a non-finite upload also
  marks itself invalid.

  Returns:
    ``targets`` ``(C, N_ref, K)`` (float32 ``Q_i``), ``weights`` ``(C, C)``,
    ``accuracy`` ``(C,)`` on the reference labels, and ``valid`` ``(C,)``.
  """
  logits = logits.astype(jnp.float32)
  valid = valid & jnp.all(jnp.isfinite(logits), axis=(1, 2))
  logits = jnp.where(valid[:, None, None], logits, 0.0)
  probs = jax.nn.softmax(logits / config.temperature, axis=-1)
  acc = jnp.mean(jnp.argmax(logits, -1) == labels[None], axis=1)
  if config.method == "fedmd":
    weights = mean_teacher_weights(valid)
  else:
    sim = similarity_matrix(probs, config.similarity, config.tau)
    weights = teacher_weights(sim, acc, valid, beta=config.beta,
                              gamma=config.gamma, top_m=config.top_m,
                              include_self=config.include_self)
  targets = jnp.einsum("ij,jnk->ink", weights, probs)
  return {"targets": targets, "weights": weights, "accuracy": acc,
          "valid": valid}


def distillation_loss(logits: jax.Array, targets: jax.Array,
                      temperature: float = 1.0) -> jax.Array:
  """``T^2 KL(Q || softmax(logits / T))`` averaged over the batch."""
  log_p = jax.nn.log_softmax(logits / temperature, axis=-1)
  kl = jnp.sum(jax.scipy.special.xlogy(targets, targets) - targets * log_p, -1)
  return temperature**2 * jnp.mean(kl)


# -- clients -------------------------------------------------------------------


class ClientGroup(NamedTuple):
  """Clients sharing one architecture (a stateless Flax module)."""
  module: nn.Module
  clients: tuple[int, ...]


class _GroupFns(NamedTuple):
  model: FederatedModel
  train: Any      # jitted, vmapped local training (+ reference logits)
  distill: Any    # jitted, vmapped distillation
  init: Any       # jitted, vmapped init


@functools.cache  # markets with equal settings share the compiled functions
def _group_fns(module, example_x, optimizer, local_steps, batch_size,
               distill_steps, distill_batch_size, temperature, with_logits):
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

  def train_one(params, row, size, key, x, y, x_ref):
    ids = local_batches(key, row, size, local_steps, batch_size)
    params, loss = run(params, lambda p, i: model.loss(p, {"x": x[i],
                                                           "y": y[i]})[0], ids)
    logits = apply(params, x_ref) if with_logits else jnp.zeros((0,))
    return params, logits, loss

  def distill_one(params, targets, key, x_ref):
    n = x_ref.shape[0]
    ids = local_batches(key, jnp.arange(n), n, distill_steps,
                        distill_batch_size)
    return run(params, lambda p, i: distillation_loss(
        apply(p, x_ref[i]), targets[i], temperature), ids)

  return _GroupFns(
      model,
      jax.jit(jax.vmap(train_one, in_axes=(0, 0, 0, 0, None, None, None))),
      jax.jit(jax.vmap(distill_one, in_axes=(0, 0, 0, None))),
      jax.jit(jax.vmap(model.init)))


@functools.partial(jax.jit, static_argnames=("model", "chunk"))
def _client_accuracy(model, params, x, y, rows, sizes, chunk=256):
  def one(p, row, size):
    m = row.shape[0]
    pad = -(-m // chunk) * chunk - m
    row = jnp.pad(row, (0, pad)).reshape(-1, chunk)
    mask = (jnp.arange(m + pad) < size).reshape(-1, chunk)

    def part(a):
      r, k = a
      acc = model.evaluate(p, {"x": x[r], "y": y[r]})["accuracy"]
      return jnp.sum(jnp.where(k, acc, 0.0))
    return jnp.sum(jax.lax.map(part, (row, mask))) / size
  return jax.vmap(one)(params, rows, sizes)


def client_accuracy(model: FederatedModel, params, x, y,
                    parts: ClientData | None = None) -> np.ndarray:
  """Accuracy of each of ``n`` stacked ``params`` (leading axis ``n``).

  With ``parts`` (e.g. held-out splits, ``n`` clients), client ``i`` is
  evaluated on ``parts.client_indices[i]`` of ``parts.x``/``parts.y``;
  otherwise every model is evaluated on all of ``(x, y)``.
  """
  n = jax.tree.leaves(params)[0].shape[0]
  if parts is None:
    rows = np.broadcast_to(np.arange(len(y), dtype=np.int32), (n, len(y)))
    sizes = np.full((n,), len(y), np.int32)
  else:
    x, y = parts.x, parts.y
    rows, sizes = parts.padded_indices(), parts.sizes.astype(np.int32)
  return np.asarray(_client_accuracy(model, params, jnp.asarray(x),
                                     jnp.asarray(y), jnp.asarray(rows),
                                     jnp.asarray(sizes)))


# -- the engine --------------------------------------------------------------


class Market:
  """Runs the market (or a baseline ``method``) over persistent personal models.

  Example::

    groups = [ClientGroup(cnn, tuple(range(10))),
              ClientGroup(mlp, tuple(range(10, 20)))]
    market = Market(groups, clients, (x_ref, y_ref), clients_per_round=10,
                    optimizer=optax.sgd(0.05, momentum=0.9))
    for _ in range(50):
      metrics = market.step()

  Each round samples ``S`` distinct clients (seeded); a group's sampled
  members are padded to a power of two (at most ``min(S, group size)``), so
  a group compiles its round for a few sizes only. Bits are exact Python
  ints per client (``uplink_bits``, ``downlink_bits``, ``(N,)`` int64).
  """

  def __init__(self, groups: Sequence[ClientGroup], clients: ClientData,
               reference, *, clients_per_round: int,
               optimizer: optax.GradientTransformation,
               config: MarketConfig = MarketConfig(), local_steps: int = 5,
               batch_size: int = 32, distill_steps: int = 5,
               distill_batch_size: int = 64, seed: int = 0):
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
      distill_steps, distill_batch_size: ``E_d`` distillation steps.
      seed: seeds the model inits, sampling and minibatches.

    Raises:
      ValueError: bad groups or ``S``; reference labels missing, of the wrong
        length, or naming classes no client holds.
    """
    self.config = config.check()
    n = clients.num_clients
    ids = sorted(c for g in groups for c in g.clients)
    if ids != list(range(n)):
      raise ValueError(f"groups must cover clients 0..{n - 1} exactly once")
    if not 1 <= clients_per_round <= n:
      raise ValueError(f"clients_per_round must be in [1, {n}], "
                       f"got {clients_per_round}")
    x_ref, y_ref = ((reference.x, reference.y) if hasattr(reference, "x")
                    else reference)
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
    self.groups = tuple(ClientGroup(g.module, tuple(g.clients))
                        for g in groups)
    self.num_clients, self.clients_per_round = n, clients_per_round
    self.num_classes = clients.num_classes
    self._x, self._y = jnp.asarray(clients.x), jnp.asarray(clients.y)
    self._rows = jnp.asarray(clients.padded_indices())
    self._sizes = jnp.asarray(clients.sizes.astype(np.int32))
    self._x_ref, self._y_ref = jnp.asarray(x_ref), jnp.asarray(y_ref)
    self._key = jax.random.key(seed)
    fns = functools.partial(
        _group_fns, example_x=jax.ShapeDtypeStruct((1,) + self._x_ref.shape[1:],
                                                   self._x_ref.dtype),
        optimizer=optimizer,
        local_steps=local_steps, batch_size=batch_size,
        distill_steps=distill_steps, distill_batch_size=distill_batch_size,
        temperature=config.temperature, with_logits=config.method != "local")
    self._fns = [fns(g.module) for g in self.groups]
    init_key = jax.random.fold_in(self._key, 0)
    self.params = [f.init(jax.vmap(lambda c: jax.random.fold_in(init_key, c))(
        jnp.asarray(g.clients))) for f, g in zip(self._fns, self.groups)]
    self.uplink_bits = np.zeros(n, np.int64)
    self.downlink_bits = np.zeros(n, np.int64)
    self.excluded = np.zeros(n, np.int64)
    self.round = 0

  def sample(self, rnd: int) -> np.ndarray:
    """The sorted ids of the ``S`` clients of round ``rnd`` (0-based)."""
    key = jax.random.fold_in(jax.random.fold_in(self._key, 1), rnd)
    return np.sort(np.asarray(jax.random.choice(
        key, self.num_clients, (self.clients_per_round,), replace=False)))

  def step(self) -> dict[str, Any]:
    """One round; returns its metrics (bits exact, cumulative bytes)."""
    cfg = self.config
    sampled = self.sample(self.round)
    train_key, distill_key = jax.random.split(
        jax.random.fold_in(jax.random.fold_in(self._key, 2), self.round))
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
    metrics = {"round": self.round + 1, "train_loss":
               float(np.mean(np.concatenate(losses)))}
    if cfg.method != "local":
      metrics.update(self._exchange(slots, trained, uploads,
                                    distill_key))
    else:
      for (g, pos, _, _), params in zip(slots, trained):
        self._scatter(g, pos, params)
    self.round += 1
    up, down = int(self.uplink_bits.sum()), int(self.downlink_bits.sum())
    metrics.update(uplink_bits=up, downlink_bits=down, uplink_bytes=up / 8,
                   downlink_bytes=down / 8, total_bytes=(up + down) / 8,
                   excluded_total=int(self.excluded.sum()))
    return metrics

  def _scatter(self, g, pos, params):
    self.params[g] = jax.tree.map(
        lambda a, b: a.at[pos].set(b, mode="drop"), self.params[g], params)

  def _exchange(self, slots, trained, uploads, distill_key):
    """Uploads -> server -> targets -> distillation, with the bit counts."""
    cfg = self.config
    expected = (self._x_ref.shape[0], self.num_classes)
    wire, ok, up_bits = [], [], []
    for (_, _, ids, real), z in zip(slots, uploads):
      z = z.astype(cfg.value_dtype)  # what goes on the wire
      good = z.shape[1:] == expected
      wire.append(z if good else jnp.zeros((len(ids),) + expected, z.dtype))
      ok.append(real & good)
      up_bits.append(np.where(real, z[0].size * cfg.value_bits, 0))
    real = np.concatenate([s[3] for s in slots])
    ids = np.concatenate([s[2] for s in slots])
    out = market_targets(jnp.concatenate(wire), jnp.asarray(np.concatenate(ok)),
                         self._y_ref, cfg)
    valid = np.asarray(out["valid"])
    np.add.at(self.uplink_bits, ids[real], np.concatenate(up_bits)[real])
    np.add.at(self.downlink_bits, ids[valid], np.prod(expected) * cfg.value_bits)
    np.add.at(self.excluded, ids[real & ~valid], 1)
    targets = out["targets"].astype(cfg.value_dtype).astype(jnp.float32)
    start, dloss = 0, []
    for (g, pos, group_ids, _), params in zip(slots, trained):
      sl = slice(start, start + len(group_ids))
      keep = valid[sl]
      start = sl.stop
      if not keep.any():  # nobody to distil (e.g. the group's uploads failed)
        self._scatter(g, pos, params)
        continue
      keys = jax.vmap(lambda c: jax.random.fold_in(distill_key, c))(
          jnp.asarray(group_ids))
      distilled, loss = self._fns[g].distill(params, targets[sl], keys,
                                             self._x_ref)
      self._scatter(g, pos, jax.tree.map(lambda d, t: jnp.where(
          keep.reshape((-1,) + (1,) * (d.ndim - 1)), d, t), distilled, params))
      dloss.append(np.asarray(loss)[keep])
    nan = float("nan")
    return {"distill_loss": float(np.mean(np.concatenate(dloss)))
            if valid.any() else nan,
            "reference_accuracy": float(np.asarray(out["accuracy"])[valid]
                                        .mean()) if valid.any() else nan,
            "participants": int(real.sum()),
            "excluded": int((real & ~valid).sum())}

  def client_accuracy(self, x=None, y=None,
                      parts: ClientData | None = None) -> np.ndarray:
    """``(N,)`` accuracy of every personal model (see :func:`client_accuracy`).

    ``parts``: per-client evaluation splits (e.g. held-out data), indexed like
    the training clients; otherwise all models are scored on ``(x, y)``.
    """
    acc = np.zeros(self.num_clients)
    for g, (group, fns) in enumerate(zip(self.groups, self._fns)):
      sub = None if parts is None else ClientData(
          parts.x, parts.y, [parts.client_indices[c] for c in group.clients],
          parts.num_classes)
      acc[list(group.clients)] = client_accuracy(fns.model, self.params[g],
                                                 x, y, sub)
    return acc


# -- setup helpers -----------------------------------------------------------


def split_off(dataset, size: int, *, seed: int = 0):
  """``(part, rest)``: a seeded random ``size`` examples and the others.

  Draws the public reference set from the training split before it is
  partitioned (so no client holds a reference example), or a subset.
  """
  n = dataset.x.shape[0]
  if not 1 <= size < n:
    raise ValueError(f"size must be in [1, {n}), got {size}")
  perm = np.random.default_rng(seed).permutation(n)

  def take(idx):
    idx = np.sort(idx)
    return dataset._replace(x=dataset.x[idx], y=dataset.y[idx], groups=(
        None if dataset.groups is None else dataset.groups[idx]))
  return take(perm[:size]), take(perm[size:])


def holdout_split(clients: ClientData, fraction: float, *,
                  seed: int = 0) -> tuple[ClientData, ClientData]:
  """``(train, held_out)``: each client keeps ``1 - fraction`` of its data.

  Client ``i``'s held-out part (at least one example) is its personalised
  test set, drawn from its own (non-IID) distribution.
  """
  if not 0 < fraction < 1:
    raise ValueError(f"fraction must be in (0, 1), got {fraction}")
  rng = np.random.default_rng(seed)
  train, held = [], []
  for c, idx in enumerate(clients.client_indices):
    if idx.size < 2:
      raise ValueError(f"client {c} has {idx.size} example(s); need >= 2")
    perm = rng.permutation(idx)
    k = min(max(1, round(idx.size * fraction)), idx.size - 1)
    held.append(np.sort(perm[:k]))
    train.append(np.sort(perm[k:]))
  make = lambda parts: ClientData(clients.x, clients.y, parts,
                                  clients.num_classes)
  return make(train), make(held)


def baseline_algorithm(name: str, groups: Sequence[ClientGroup], example_x,
                       local_opt, **kwargs) -> FederatedAlgorithm:
  """FedAvg or FedProx (``name``) on the one architecture of ``groups``.

  Raises:
    ValueError: clients use different architectures: parameter averaging
      needs one shared model (use :class:`Market`, which only exchanges
      predictions), or ``name`` is unknown.
  """
  modules = {g.module for g in groups}
  if len(modules) != 1:
    raise ValueError(
        f"{name} averages parameters, so all clients need one architecture; "
        f"got {len(modules)}: {sorted(type(m).__name__ for m in modules)}. "
        "Heterogeneous clients can only use the prediction-space market.")
  algos = {"fedavg": fedavg, "fedprox": fedprox}
  if name not in algos:
    raise ValueError(f"baseline must be one of {sorted(algos)}, got {name!r}")
  return algos[name](classifier(modules.pop(), example_x), local_opt, **kwargs)
