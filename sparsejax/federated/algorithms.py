r"""Federated algorithms with local training and a (compressed) model delta.

An algorithm (fedjax's design) is a :class:`FederatedAlgorithm`: ``init`` of
the server state, per-client persistent state, and the client work split in
``client_init`` / ``client_step`` (one local minibatch) / ``client_final``
(the message to send), then ``server_update`` with the aggregate. The engine
(:class:`~sparsejax.federated.Simulation`) samples clients, feeds batches,
vectorises clients and aggregates; it knows nothing about the rules below.

The local-update algorithms here (FedAvg, FedProx, EF-FedAvg, SA-PEF) are
instances of one round, for a sampled client ``i`` with ``n_i`` examples,
global model ``w`` and uplink state ``e_i``:

.. math::
   y_0 = w + \alpha e_i, \quad
   y_{t+1} = \mathrm{opt}(y_t, \nabla f_i(y_t) + \mu (y_t - w)), \quad
   \Delta_i = y_H - w, \quad
   m_i = \mathcal{U}(\Delta_i; e_i), \quad
   w \leftarrow w + \eta_g\, \mathrm{agg}_i(m_i)

where the uplink ``U`` is a compressor (FedAvg, FedProx; no memory) or
``sj.error_feedback(C, carry=1-alpha)``: ``u = Delta + (1-alpha) e_i``,
``m = C(u)``, ``e_i <- u - m`` (EF-FedAvg for ``alpha = 0``, SA-PEF). The
residual ``e_i`` persists while client ``i`` is not sampled.

Periodic residual reset (CSER-style, the SA-PEF code's baseline;
``reset_every = R``): in rounds ``R, 2R, ...`` each sampled client also sends
``r_i = C_r(e_i)`` (default global top-10%) of its new residual and keeps
``e_i <- e_i - r_i``; the server aggregates the ``r_i`` like the updates
and adds them: ``w <- w + eta_g (agg_i(m_i) + agg_i(r_i))``. The local
optimizer is fresh each round (``persistent_opt=False``) and may depend on
the round: pass ``local_opt`` as ``round -> optax.GradientTransformation``.

:func:`scaffold` (SCAFFOLD) adds client and server control variates.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax.compress.accounting import find_nodes
from sparsejax.compress.base import Compressor
from sparsejax.compress.messages import GatedMessage
from sparsejax.compress.messages import decode
from sparsejax.compress.messages import message_size
from sparsejax.compress.quantizers import no_compression
from sparsejax.compress.sparsifiers import top_k
from sparsejax.federated.aggregation import check_aggregation
from sparsejax.federated.ledger import dense_bits
from sparsejax.federated.model import FederatedModel
from sparsejax.feedback import EF21State
from sparsejax.feedback import ef21
from sparsejax.feedback import error_feedback
from sparsejax.feedback import error_feedback_state
from sparsejax.feedback import residual
from sparsejax.feedback import sq_norm
from sparsejax.feedback import with_residual

LocalOpt = optax.GradientTransformation | Callable[[jax.Array],
                                                    optax.GradientTransformation]


DEFAULT_LOCAL_STEPS = 5
DEFAULT_RESET_RATIO = 0.1


class ServerState(NamedTuple):
  """Global model, rounds completed, server optimizer and downlink states."""
  params: Any
  round: jax.Array    # int32
  opt_state: Any = ()  # server_opt's state (FedOpt); () without one
  downlink: Any = ()   # DownlinkState of a compressed downlink; () without
  estimate: Any = ()   # EF21's G = sum_j n_j g_j / sum_j n_j; () without


class DownlinkState(NamedTuple):
  """A compressed downlink: the clients' model and the compressor's state.

  The server's residual of what it has not broadcast is ``params - model``.
  """
  model: Any       # x_hat, the model every client holds
  compressor: Any  # the downlink compressor's state


class ClientState(NamedTuple):
  """Per-client state kept across rounds (stacked over clients by the engine)."""
  uplink: Any     # the uplink compressor's state (counters, EF residual
                  # e_i), paired with the reset compressor's if reset_every
  opt_state: Any  # local optimizer state if persistent_opt, else ()


class LocalState(NamedTuple):
  """The carry of local training within one round."""
  params: Any     # y_t
  opt_state: Any
  anchor: Any     # w, the global model of this round
  round: jax.Array


class FederatedAlgorithm(NamedTuple):
  """An algorithm as pure functions, run by the simulation engine.

  Attributes:
    model: the :class:`FederatedModel` trained.
    local_steps: ``H``, minibatch steps per client per round.
    batch_size: local minibatch size.
    aggregation: ``"mean"`` or ``"support"``
      (:mod:`sparsejax.federated.aggregation`).
    init: ``params -> ServerState``.
    client_state_init: ``params -> ClientState`` of one client.
    client_init: ``(ServerState, ClientState) -> LocalState``.
    client_step: ``(LocalState, batch) -> (LocalState, metrics)``.
    client_final: ``(ServerState, ClientState, LocalState) -> (message,
      ClientState, metrics)``.
    server_update: ``(ServerState, aggregated update, participation) ->
      ServerState``; ``participation`` is the share ``sum_i n_i / sum_j n_j``
      of all training examples held by the clients aggregated this round.
    broadcast: ``ServerState -> (ServerState, bits)``, at the start of a
      round: what every sampled client receives (it may update the server
      state, e.g. a downlink's replica) and its exact size, a scalar
      :class:`~sparsejax.BitCount` the ledger counts per sampled client.
  """
  model: FederatedModel
  local_steps: int
  batch_size: int
  aggregation: str
  init: Callable
  client_state_init: Callable
  client_init: Callable
  client_step: Callable
  client_final: Callable
  server_update: Callable
  broadcast: Callable


def _check_arguments(model, local_opt, **compressors) -> None:
  """Refuses, at construction, what would fail deep in the engine.

  ``model`` must be a :class:`FederatedModel` (a Flax module is named as
  such), ``local_opt`` an optax optimizer or a ``round -> optimizer``
  function but not a compressor, and each of ``compressors`` (by argument
  name) a sparsejax :class:`~sparsejax.Compressor` or None.
  """
  if not isinstance(model, FederatedModel):
    hint = ("; it looks like a Flax module: wrap it with "
            "sj.federated.classifier(module, example_x)"
            if hasattr(model, "apply") and hasattr(model, "init") else "")
    raise TypeError("model must be a sparsejax.federated.FederatedModel, got "
                    f"{type(model).__name__}{hint}")
  if isinstance(local_opt, Compressor):
    raise TypeError(
        "local_opt is a sparsejax compressor; pass the client optimizer as "
        "local_opt (e.g. optax.sgd(0.01, momentum=0.9)) and the compressor as "
        "compressor= (arguments swapped?)")
  if not (isinstance(local_opt, optax.GradientTransformation)
          or callable(local_opt)):
    raise TypeError("local_opt must be an optax GradientTransformation or a "
                    f"round -> optimizer function, got {type(local_opt).__name__}")
  for name, c in compressors.items():
    if c is not None and not isinstance(c, Compressor):
      kind = ("an optax optimizer"
              if isinstance(c, optax.GradientTransformation)
              else type(c).__name__)
      raise TypeError(
          f"{name} must be a sparsejax Compressor (e.g. sj.top_k(0.01, "
          f"scope='global')), got {kind}; the client optimizer goes in "
          "local_opt")


def _refuse_ef21(uplink_state):
  """``uplink_state``, unless its compressor is EF21 (raises TypeError).

  An EF21 uplink sends ``c_i = C(delta_i - g_i)``, a difference to the
  client's estimate ``g_i``; the engine applies the aggregated messages as
  the model update, which would silently be wrong.
  """
  if find_nodes(uplink_state, EF21State):
    raise TypeError(
        "an EF21 uplink sends c_i = C(delta_i - g_i), a difference to the "
        "client's estimate, but the federated engine applies the aggregated "
        "messages as the model update: use ef_fedavg(model, opt, compressor) "
        "(classic error feedback) or a bare compressor")
  return uplink_state


def _round_optimizer(local_opt: LocalOpt):
  """``round -> optimizer`` of ``local_opt`` (an optimizer or already one)."""
  if isinstance(local_opt, optax.GradientTransformation):
    return lambda _: local_opt
  return local_opt


def _local_step(model: FederatedModel, opt_at, local, batch, adjust=None):
  """One local optimizer step on ``batch``: ``(local, metrics)``.

  ``local`` has ``params``, ``opt_state`` and ``round``; ``adjust(grads,
  local)``, if given, changes the gradient first (a proximal term, a
  control-variate correction).
  """
  (loss, metrics), grads = jax.value_and_grad(model.loss, has_aux=True)(
      local.params, batch)
  if adjust is not None:
    grads = adjust(grads, local)
  updates, opt_state = opt_at(local.round).update(grads, local.opt_state,
                                                  local.params)
  params = optax.apply_updates(local.params, updates)
  return local._replace(params=params, opt_state=opt_state), dict(metrics,
                                                                  loss=loss)


def _check_server_opt(server_opt, server_lr: float) -> None:
  """A server optimizer is an optax one and replaces ``server_lr``."""
  if server_opt is None:
    return
  if isinstance(server_opt, Compressor):
    raise TypeError("server_opt is a sparsejax compressor; pass an optax "
                    "optimizer (e.g. optax.adam(1e-2, b1=0.9, b2=0.99, "
                    "eps=1e-3)); a downlink compressor goes in downlink=")
  if not isinstance(server_opt, optax.GradientTransformation):
    raise TypeError("server_opt must be an optax GradientTransformation "
                    "(e.g. optax.adam(1e-2, b1=0.9, b2=0.99, eps=1e-3)) or "
                    f"None, got {type(server_opt).__name__}")
  if server_lr != 1.0:
    raise ValueError("server_lr applies only without server_opt (got "
                     f"server_lr={server_lr}): put the server learning rate "
                     "in server_opt")


def _server_step(server, update, server_opt, server_lr: float):
  """``(params, opt_state)`` after applying the aggregate ``update``.

  ``w + server_lr * update`` without a server optimizer, else
  ``w + server_opt.update(-update)`` (FedOpt: the negated aggregate is the
  pseudo-gradient), its state ``server.opt_state``.
  """
  if server_opt is None:
    return (jax.tree.map(lambda w, u: w + server_lr * u.astype(w.dtype),
                         server.params, update), server.opt_state)
  pseudo_grad = jax.tree.map(lambda w, u: -u.astype(w.dtype), server.params,
                             update)
  updates, opt_state = server_opt.update(pseudo_grad, server.opt_state,
                                         server.params)
  return optax.apply_updates(server.params, updates), opt_state


def compressed_downlink(downlink: Compressor | None):
  """``(broadcast, client_model, init)`` of a downlink compressor.

  With a compressor ``C``, round ``t`` starts with the server (model
  ``x_t``) broadcasting ``b_t = C(x_t - x_hat_{t-1})`` and every client's
  model becomes ``x_hat_t = x_hat_{t-1} + b_t``; local training starts
  from ``x_hat_t`` and the deltas are measured from it. This is error
  feedback on the server's model updates (DoubleSqueeze; Tang, Yu, Lian,
  Zhang, Liu, ICML 2019, https://arxiv.org/abs/1905.05957): with residual
  ``e_t = x_t - x_hat_t`` it sends ``C((x_t - x_{t-1}) + e_{t-1})``. All
  ``N`` clients are assumed to receive every broadcast, the sampled and the
  others (the literature's convention), so they share the one replica
  ``x_hat`` and no client holds a stale model; the ledger counts the
  broadcast's bits for the sampled clients only. (A client that listens
  only when sampled would need the broadcasts it missed, or the dense
  ``x_hat`` when cheaper: the same model, more bits.) The initial model
  ``x_hat_{-1} = x_0`` is taken as known to all (a shared seed) and not
  counted.

  ``init``: ``params -> ServerState.downlink``; ``broadcast``: ``server ->
  (server, bits of b_t)``; ``client_model``: ``server -> x_hat_t``.
  ``None``: the dense model ``x_t`` is broadcast, no state.
  """
  if downlink is None:
    return ((lambda server: (server, dense_bits(server.params))),
            (lambda server: server.params), (lambda params: ()))

  def init(params):
    return DownlinkState(params, downlink.init(params))

  def broadcast(server):
    state = server.downlink
    message, compressor_state = downlink.encode(
        jax.tree.map(jnp.subtract, server.params, state.model),
        state.compressor)
    model = jax.tree.map(lambda m, b: m + b.astype(m.dtype), state.model,
                         decode(message))
    return (server._replace(downlink=DownlinkState(model, compressor_state)),
            message_size(message)[1])

  return broadcast, lambda server: server.downlink.model, init


def local_update_algorithm(
    model: FederatedModel, local_opt: LocalOpt, uplink: Compressor, *,
    alpha: float = 0.0, mu: float = 0.0, has_residual: bool = False,
    local_steps: int = DEFAULT_LOCAL_STEPS, batch_size: int = 32, aggregation: str = "mean",
    server_lr: float = 1.0,
    server_opt: optax.GradientTransformation | None = None,
    downlink: Compressor | None = None, persistent_opt: bool = False,
    reset_every: int = 0, reset_compressor: Compressor | None = None,
    server_estimate: bool = False,
) -> FederatedAlgorithm:
  """The round in the module docstring, for any uplink; the factories' core.

  Args:
    model: the model.
    local_opt: the client optimizer, or ``round -> optimizer`` (the round
      index is a traced int32, e.g. for a cosine schedule over rounds).
    uplink: compressor applied to the model delta; its state is per client.
    alpha: step-ahead ``y_0 = w + alpha * e_i`` (needs ``has_residual``).
    mu: FedProx proximal coefficient, ``mu/2 ||y - w||^2`` added to the loss.
    has_residual: whether ``uplink`` is error feedback (its residual is used
      for the step-ahead and reported as ``residual_norm``).
    local_steps: ``H``.
    batch_size: local minibatch size.
    aggregation: ``"mean"`` or ``"support"``.
    server_lr: ``eta_g`` of the server step ``w <- w + eta_g * agg``.
    server_opt: a server optimizer (FedOpt; Reddi et al., "Adaptive
      Federated Optimization", ICLR 2021, https://arxiv.org/abs/2003.00295)
      used instead of ``server_lr``: the negated aggregate ``-agg`` is its
      pseudo-gradient and ``w <- w + server_opt.update(-agg, ...)``, its
      state is ``ServerState.opt_state``. FedAdam with the paper's settings
      is ``optax.adam(eta_g, b1=0.9, b2=0.99, eps=1e-3)``; FedYogi
      ``optax.yogi``, FedAdagrad ``optax.adagrad``, server momentum
      ``optax.sgd(eta_g, momentum=0.9)``; ``optax.sgd(eta_g)`` is
      ``server_lr=eta_g``. A round with no accepted client gives a zero
      pseudo-gradient (a momentum still moves ``w``). ``None``: the plain
      ``server_lr`` step.
    downlink: compressor of the broadcast, with server-side error feedback
      (:func:`compressed_downlink`); ``None``: the dense model.
    persistent_opt: keep each client's optimizer state across its rounds
      instead of re-initialising it every round.
    reset_every: ``R`` of the periodic residual reset (module docstring);
      0: none. Needs ``has_residual``.
    reset_compressor: ``C_r`` of the reset (default
      ``sj.top_k(0.1, scope="global")``).
    server_estimate: ``uplink`` is :func:`sparsejax.ef21`: the server keeps
      ``G`` (``ServerState.estimate``), adds the round's share of the
      messages and steps with ``G`` (:func:`ef21_fedavg`).
  """
  _check_arguments(model, local_opt, uplink=uplink,
                  reset_compressor=reset_compressor, downlink=downlink)
  _check_server_opt(server_opt, server_lr)
  check_aggregation(aggregation)
  if local_steps < 1 or batch_size < 1:
    raise ValueError(f"local_steps and batch_size must be >= 1, got "
                     f"{local_steps}, {batch_size}")
  if mu < 0:
    raise ValueError(f"mu must be >= 0, got {mu}")
  if alpha and not has_residual:
    raise ValueError("a step-ahead (alpha > 0) needs an error-feedback uplink")
  if reset_every < 0:
    raise ValueError(f"reset_every must be >= 0, got {reset_every}")
  if reset_every and not has_residual:
    raise ValueError("a residual reset (reset_every > 0) needs an "
                     "error-feedback uplink")
  if server_estimate and aggregation != "mean":
    raise ValueError("EF21's server estimate needs aggregation='mean' (G is "
                     f"the clients' weighted average), got {aggregation!r}")
  reset = reset_compressor or top_k(DEFAULT_RESET_RATIO, scope="global")
  opt_at = _round_optimizer(local_opt)

  broadcast, client_model, downlink_init = compressed_downlink(downlink)

  def init(params):
    return ServerState(params, jnp.zeros((), jnp.int32),
                       () if server_opt is None else server_opt.init(params),
                       downlink_init(params),
                       jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32),
                                    params) if server_estimate else ())

  def client_state_init(params):
    opt_state = (opt_at(jnp.zeros((), jnp.int32)).init(params)
                 if persistent_opt else ())
    uplink_state = uplink.init(params)
    if not server_estimate:
      _refuse_ef21(uplink_state)
    if reset_every:
      uplink_state = (uplink_state, reset.init(params))
    return ClientState(uplink_state, opt_state)

  def client_init(server, client):
    w = client_model(server)
    y0 = w
    if alpha:
      y0 = jax.tree.map(lambda w, e: w + alpha * e, y0, residual(client.uplink))
    opt_state = (client.opt_state if persistent_opt
                 else opt_at(server.round).init(y0))
    return LocalState(y0, opt_state, w, server.round)

  def proximal(grads, local):
    return jax.tree.map(lambda g, y, w: g + mu * (y - w), grads, local.params,
                        local.anchor)

  def client_step(local, batch):
    return _local_step(model, opt_at, local, batch, proximal if mu else None)

  def client_final(server, client, local):
    delta = jax.tree.map(jnp.subtract, local.params, local.anchor)
    uplink_state, reset_state = (client.uplink if reset_every
                                 else (client.uplink, None))
    message, uplink_state = uplink.encode(delta, uplink_state)
    if reset_every:
      due = (server.round + 1) % reset_every == 0
      e = residual(uplink_state)
      reset_message, new_reset_state = reset.encode(e, reset_state)
      uplink_state = with_residual(uplink_state, jax.tree.map(
          lambda old, r: jnp.where(due, old - r.astype(old.dtype), old), e,
          decode(reset_message)))
      reset_state = jax.tree.map(lambda n, o: jnp.where(due, n, o),
                                 new_reset_state, reset_state)
      message = (message, GatedMessage(reset_message, due))
      uplink_state = (uplink_state, reset_state)
    opt_state = local.opt_state if persistent_opt else ()
    if has_residual:
      memory_sq_norm = error_feedback_state(uplink_state).residual_sq_norm
    elif server_estimate:  # ||u - g_i|| after the update
      memory_sq_norm = find_nodes(uplink_state, EF21State)[0].residual_sq_norm
    else:
      memory_sq_norm = jnp.zeros(())
    metrics = {
        "residual_norm": jnp.sqrt(memory_sq_norm),
        "drift": jnp.sqrt(sq_norm(delta)),
    }
    return message, ClientState(uplink_state, opt_state), metrics

  def server_update(server, update, participation=None):
    # The aggregate is already weighted by n_i; EF21 adds the round's share.
    if reset_every:  # the aggregated (updates, residual resets)
      update = jax.tree.map(jnp.add, *update)
    estimate = server.estimate
    if server_estimate:  # G += sum_S n_i c_i / sum_j n_j
      estimate = jax.tree.map(lambda g, c: g + participation * c, estimate,
                              update)
      update = estimate
    params, opt_state = _server_step(server, update, server_opt, server_lr)
    return server._replace(params=params, round=server.round + 1,
                           opt_state=opt_state, estimate=estimate)

  return FederatedAlgorithm(model, local_steps, batch_size, aggregation, init,
                            client_state_init, client_init, client_step,
                            client_final, server_update, broadcast)


def fedavg(model: FederatedModel, local_opt: LocalOpt, *,
           compressor: Compressor | None = None, **kwargs) -> FederatedAlgorithm:
  r"""Federated averaging: ``w <- w + eta_g sum_i n_i (y_H^i - w) / sum_i n_i``.

  Args:
    model: the model.
    local_opt: client optimizer (or ``round -> optimizer``).
    compressor: uplink compressor without memory (default
      :func:`sparsejax.no_compression`, the dense fp32 delta).
    **kwargs: ``local_steps``, ``batch_size``, ``aggregation``, ``server_lr``,
      ``server_opt``, ``downlink``, ``persistent_opt`` of
      :func:`local_update_algorithm`.

  References:
    McMahan, Moore, Ramage, Hampson, Aguera y Arcas, "Communication-Efficient
    Learning of Deep Networks from Decentralized Data", AISTATS 2017,
    https://arxiv.org/abs/1602.05629
  """
  return local_update_algorithm(model, local_opt,
                                compressor or no_compression(), **kwargs)


def fedprox(model: FederatedModel, local_opt: LocalOpt, *, mu: float,
            compressor: Compressor | None = None,
            **kwargs) -> FederatedAlgorithm:
  r"""FedProx: FedAvg with local loss ``f_i(y) + mu/2 ||y - w||^2``.

  ``mu = 0`` is :func:`fedavg`. Other arguments as :func:`fedavg`.

  References:
    Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith, "Federated Optimization in
    Heterogeneous Networks", MLSys 2020, https://arxiv.org/abs/1812.06127
  """
  return local_update_algorithm(model, local_opt,
                                compressor or no_compression(), mu=mu,
                                **kwargs)


def theory_alpha(local_lr: float, local_steps: int,
                 smoothness: float = 1.0) -> float:
  r"""SA-PEF's contraction-minimising ``alpha* = 1 / (1 + 12 s^2)``, ``s = lr L H``."""
  s = local_lr * smoothness * local_steps
  return 1.0 / (1.0 + 12.0 * s * s)


def sapef(model: FederatedModel, local_opt: LocalOpt, compressor: Compressor,
          *, alpha: float | str = 0.85, local_lr: float | None = None,
          smoothness: float = 1.0, **kwargs) -> FederatedAlgorithm:
  r"""Step-ahead partial error feedback (SA-PEF).

  Client ``i`` with residual ``e_i``:

  .. math::
     y_0 = w + \alpha e_i, \quad y_H = \mathrm{LocalSGD}(y_0, H), \quad
     u = (y_H - w) + (1 - \alpha) e_i, \quad
     \text{send } C(u), \quad e_i \leftarrow u - C(u).

  ``alpha = 0`` is error feedback (:func:`ef_fedavg`), ``alpha = 1`` is
  step-ahead EF (SAEF). Implemented as ``sj.error_feedback(compressor,
  carry=1 - alpha)`` on the delta measured from ``w`` (not from ``y_0``).

  Args:
    model: the model.
    local_opt: client optimizer (or ``round -> optimizer``), fresh each round.
    compressor: any sparsejax compressor, e.g. ``sj.top_k(0.01,
      scope="global")`` as in the paper.
    alpha: in ``[0, 1]``, or ``"auto"`` for :func:`theory_alpha` with
      ``local_lr``, ``smoothness`` and ``local_steps``.
    local_lr: client learning rate (only for ``alpha="auto"``).
    smoothness: ``L`` estimate for ``alpha="auto"``.
    **kwargs: ``local_steps``, ``batch_size``, ``aggregation``, ``server_lr``,
      ``server_opt``, ``downlink``, ``persistent_opt``, ``reset_every``,
      ``reset_compressor`` of :func:`local_update_algorithm`.

  Raises:
    ValueError: ``alpha`` outside ``[0, 1]``, or ``"auto"`` without
      ``local_lr``.

  Example::

    algo = sj.federated.sapef(model, optax.sgd(0.05, momentum=0.9),
                              sj.top_k(0.01, scope="global"), alpha=0.85)

  References:
    Redie, Arablouei, Werner, "SA-PEF: Step-Ahead Partial Error Feedback for
    Efficient Federated Learning"; code: https://github.com/Dawitkiros/SA-PEF
  """
  _check_arguments(model, local_opt, compressor=compressor)
  if alpha == "auto":
    if local_lr is None:
      raise ValueError('alpha="auto" needs local_lr')
    alpha = theory_alpha(local_lr, kwargs.get("local_steps", DEFAULT_LOCAL_STEPS), smoothness)
  if isinstance(alpha, str) or not 0.0 <= alpha <= 1.0:
    raise ValueError(f'alpha must be in [0, 1] or "auto", got {alpha!r}')
  alpha = float(alpha)
  return local_update_algorithm(
      model, local_opt, error_feedback(compressor, carry=1.0 - alpha),
      alpha=alpha, has_residual=True, **kwargs)


def ef_fedavg(model: FederatedModel, local_opt: LocalOpt,
              compressor: Compressor, **kwargs) -> FederatedAlgorithm:
  r"""FedAvg with a compressed uplink and per-client error feedback.

  ``u = (y_H - w) + e_i``, send ``C(u)``, ``e_i <- u - C(u)``; the residual of
  a client persists while it is not sampled. Same as :func:`sapef` with
  ``alpha = 0``; arguments as there.

  References:
    Karimireddy, Rebjock, Stich, Jaggi, "Error Feedback Fixes SignSGD and
    other Gradient Compression Schemes", ICML 2019,
    https://arxiv.org/abs/1901.09847
  """
  return sapef(model, local_opt, compressor, alpha=0.0, **kwargs)


def ef21_fedavg(model: FederatedModel, local_opt: LocalOpt,
                compressor: Compressor, **kwargs) -> FederatedAlgorithm:
  r"""FedAvg with an EF21 uplink under partial participation (EF21-PP).

  Client ``i`` keeps the estimate ``g_i`` of its model delta; the server
  keeps ``G = sum_j n_j g_j / sum_j n_j`` over all ``N`` clients (all
  start at 0). In a round with clients ``S``:

  .. math::
     c_i = C(\Delta_i - g_i), \quad g_i \leftarrow g_i + c_i, \quad
     G \leftarrow G + \frac{\sum_{i \in S} n_i c_i}{\sum_j n_j}, \quad
     w \leftarrow w + \eta_g G,

  so an unsampled client's last estimate keeps its share of ``G``. With
  every client sampled this is EF21 (``G = mean_i g_i``). ``G`` is
  ``sim.state.server.estimate`` (checkpointed); ``residual_norm`` reports
  ``||Delta_i - g_i||`` after the update. ``C`` must be contractive (top-k,
  scaled sign, ...).

  Args:
    model: the model.
    local_opt: client optimizer (or ``round -> optimizer``), fresh each round.
    compressor: the bare compressor ``C`` (wrapped in :func:`sparsejax.ef21`
      here).
    **kwargs: ``local_steps``, ``batch_size``, ``server_lr``,
      ``server_opt``, ``downlink``, ``persistent_opt`` of
      :func:`local_update_algorithm`; ``aggregation`` must be ``"mean"``.

  References:
    Richtarik, Sokolov, Fatkhullin, "EF21: A New, Simpler, Theoretically
    Better, and Practically Faster Error Feedback", NeurIPS 2021,
    https://arxiv.org/abs/2106.05203; Fatkhullin, Sokolov, Gorbunov, Li,
    Richtarik, "EF21 with Bells & Whistles" (partial participation),
    https://arxiv.org/abs/2110.03294
  """
  _check_arguments(model, local_opt, compressor=compressor)
  return local_update_algorithm(model, local_opt, ef21(compressor),
                                server_estimate=True, **kwargs)


class ScaffoldServerState(NamedTuple):
  """SCAFFOLD's server: global model, rounds completed, control ``c``, and
  the server optimizer's and downlink's states (as :class:`ServerState`)."""
  params: Any
  round: jax.Array  # int32
  control: Any      # c, like params
  opt_state: Any = ()  # server_opt's state; () without one
  downlink: Any = ()   # DownlinkState of a compressed downlink; () without


class ScaffoldClientState(NamedTuple):
  """A SCAFFOLD client: its uplink compressors' states and ``c_i``."""
  uplink: Any   # (model delta compressor's state, control compressor's state)
  control: Any  # c_i, like params


class ScaffoldLocalState(NamedTuple):
  """The carry of SCAFFOLD's local training within one round."""
  params: Any      # y_k
  opt_state: Any
  correction: Any  # c - c_i, added to every local gradient
  round: jax.Array


def scaffold(model: FederatedModel, local_opt: LocalOpt, *,
             local_lr: float | Callable[[jax.Array], Any],
             compressor: Compressor | None = None,
             control_compressor: Compressor | None = None,
             local_steps: int = DEFAULT_LOCAL_STEPS, batch_size: int = 32,
             aggregation: str = "mean",
             server_lr: float = 1.0,
             server_opt: optax.GradientTransformation | None = None,
             downlink: Compressor | None = None) -> FederatedAlgorithm:
  r"""SCAFFOLD with option II control variates.

  Client ``i`` with control variate ``c_i``, server model ``x`` and control
  variate ``c``:

  .. math::
     y_0 = x, \quad
     y_{k+1} = \mathrm{opt}(y_k, \nabla f_i(y_k) - c_i + c), \quad
     \Delta y_i = y_K - x, \quad
     \Delta c_i = -c - \Delta y_i / (K \eta_l)

  (so ``c_i + Delta c_i = c_i - c + (x - y_K) / (K eta_l)``, option II); it
  sends ``m_i = C(Delta y_i)`` and ``q_i = C_c(Delta c_i)`` and keeps
  ``c_i <- c_i + q_i``. The server, over the aggregated clients ``S``
  (weights ``n_i``, ``p = sum_{i in S} n_i / sum_j n_j`` of all examples):

  .. math::
     x \leftarrow x + \eta_g \frac{\sum_S n_i m_i}{\sum_S n_i}, \quad
     c \leftarrow c + p \frac{\sum_S n_i q_i}{\sum_S n_i}
     = c + \sum_S \frac{n_i}{\sum_j n_j} q_i,

  which keeps ``c = sum_j n_j c_j / sum_j n_j`` (all clients start at
  ``c_j = c = 0``); with equal ``n_i`` it is the paper's ``x += eta_g
  mean(Delta y)``, ``c += (|S|/N) mean(Delta c)``. The uplink carries two
  messages, both counted; the downlink is ``x`` (dense, or compressed with
  server-side error feedback: then clients start from and measure
  ``Delta y_i`` from the replica ``x_hat``, :func:`compressed_downlink`) and
  ``c``, dense. With a ``server_opt``, ``x`` moves by
  ``server_opt.update(-sum_S n_i m_i / sum_S n_i)`` instead (FedOpt).

  Args:
    model: the model.
    local_opt: client optimizer (or ``round -> optimizer``), fresh each
      round; the paper's is ``optax.sgd(local_lr)``.
    local_lr: ``eta_l`` of option II (or ``round -> eta_l`` for a schedule),
      the local optimizer's step size: ``(x - y_K) / (K eta_l)`` must
      estimate the gradient, so with a momentum optimizer pass its
      effective step (``experiments.federated.train.momentum_gain``).
    compressor: uplink compressor of ``Delta y`` (default
      :func:`sparsejax.no_compression`).
    control_compressor: uplink compressor of ``Delta c`` (default
      :func:`sparsejax.no_compression`); a client adds what it sent to its
      ``c_i``, so the server's ``c`` stays the clients' average.
    local_steps: ``K``.
    batch_size: local minibatch size.
    aggregation: ``"mean"`` only (the update of ``c`` above needs it).
    server_lr: ``eta_g``.
    server_opt: a server optimizer used instead of ``server_lr``, as in
      :func:`local_update_algorithm`.
    downlink: compressor of the model broadcast (:func:`compressed_downlink`);
      ``None``: the dense model.

  Raises:
    ValueError: ``local_lr`` not > 0, ``local_steps``/``batch_size`` < 1,
      ``aggregation`` other than ``"mean"``, or ``server_lr`` != 1 with a
      ``server_opt``.

  References:
    Karimireddy, Kale, Mohri, Reddi, Stich, Suresh, "SCAFFOLD: Stochastic
    Controlled Averaging for Federated Learning", ICML 2020,
    https://arxiv.org/abs/1910.06378
  """
  _check_arguments(model, local_opt, compressor=compressor,
                   control_compressor=control_compressor, downlink=downlink)
  _check_server_opt(server_opt, server_lr)
  if not callable(local_lr) and not (isinstance(local_lr, (int, float))
                                     and local_lr > 0):
    raise ValueError("local_lr must be a number > 0 or a round -> lr "
                     f"function, got {local_lr!r}")
  if local_steps < 1 or batch_size < 1:
    raise ValueError(f"local_steps and batch_size must be >= 1, got "
                     f"{local_steps}, {batch_size}")
  if aggregation != "mean":
    raise ValueError("scaffold needs aggregation='mean' (its control variate "
                     f"update keeps c the clients' average), got "
                     f"{aggregation!r}")
  compressor = compressor or no_compression()
  control_compressor = control_compressor or no_compression()
  opt_at = _round_optimizer(local_opt)
  lr_at = local_lr if callable(local_lr) else lambda _: local_lr
  broadcast_model, client_model, downlink_init = compressed_downlink(downlink)

  def init(params):
    return ScaffoldServerState(
        params, jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params),
        () if server_opt is None else server_opt.init(params),
        downlink_init(params))

  def client_state_init(params):
    return ScaffoldClientState(
        _refuse_ef21((compressor.init(params), control_compressor.init(params))),
        jax.tree.map(jnp.zeros_like, params))

  def client_init(server, client):
    correction = jax.tree.map(jnp.subtract, server.control, client.control)
    x = client_model(server)
    return ScaffoldLocalState(x, opt_at(server.round).init(x), correction,
                              server.round)

  def corrected(grads, local):
    return jax.tree.map(jnp.add, grads, local.correction)

  def client_step(local, batch):
    return _local_step(model, opt_at, local, batch, corrected)

  def client_final(server, client, local):
    delta = jax.tree.map(jnp.subtract, local.params, client_model(server))
    scale = 1.0 / (local_steps * lr_at(local.round))
    delta_c = jax.tree.map(lambda d, c: (-c - scale * d).astype(c.dtype),
                           delta, server.control)
    state_y, state_c = client.uplink
    message_y, state_y = compressor.encode(delta, state_y)
    message_c, state_c = control_compressor.encode(delta_c, state_c)
    control = jax.tree.map(lambda c, q: c + q.astype(c.dtype), client.control,
                           decode(message_c))
    metrics = {"drift": jnp.sqrt(sq_norm(delta)),
               "control_norm": jnp.sqrt(sq_norm(control))}
    return ((message_y, message_c),
            ScaffoldClientState((state_y, state_c), control), metrics)

  def server_update(server, update, participation):
    delta_y, delta_c = update
    params, opt_state = _server_step(server, delta_y, server_opt, server_lr)
    control = jax.tree.map(lambda c, q: (c + participation * q).astype(c.dtype),
                           server.control, delta_c)
    return server._replace(params=params, round=server.round + 1,
                           control=control, opt_state=opt_state)

  def broadcast(server):
    server, model_bits = broadcast_model(server)
    return server, model_bits + dense_bits(server.control)

  return FederatedAlgorithm(model, local_steps, batch_size, "mean", init,
                            client_state_init, client_init, client_step,
                            client_final, server_update, broadcast)


#: The algorithm factories by name (``fedavg``, ``fedprox``, ``ef_fedavg``,
#: ``ef21_fedavg``, ``sapef``, ``scaffold``): what configs and experiment
#: binaries name.
ALGORITHMS = {"fedavg": fedavg, "fedprox": fedprox, "ef_fedavg": ef_fedavg,
              "ef21_fedavg": ef21_fedavg, "sapef": sapef,
              "scaffold": scaffold}
