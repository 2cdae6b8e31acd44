r"""The knowledge market's server rule and distillation loss (pure ``jnp``).

For ``C`` uploads ``Z_i`` (``(N_ref, K)`` logits on the public reference set):
``P_i = softmax(Z_i / T)``, ``acc_j`` on the reference labels, similarity
``S_ij`` (cosine of the flattened ``P``, or ``exp(-JS(P_i, P_j) / tau)``),
teacher weights over the top-``m`` most similar eligible clients, and targets
``Q_i = sum_j w_ij P_j``; FedMD's rule is the one consensus
``Q = mean_j P_j``. Two teacher rules (``teacher_rule``):

* ``"power"``: ``w_ij ∝ S_ij^beta acc_j^gamma``. Cosine similarities of
  probability matrices lie close together (0.3-0.7 measured on CIFAR-10), so
  these weights are nearly uniform and the targets nearly FedMD's;
* ``"softmax"``: ``w_ij ∝ exp(S_ij / teacher_tau) acc_j^gamma``, which
  separates teachers whose similarities differ by a few ``teacher_tau``.

Every round reports how personal the market is: each target's mean
total-variation distance from the FedMD mean, and the entropy of its
weights. Clients then distil on ``T^2 KL(Q_i || softmax(f_i(x) / T))``. The
engine that runs it is :class:`sparsejax.federated.Market`.

References:
  Du, "Prediction-space knowledge markets for communication-efficient
  federated learning on multimedia tasks", 2025.
  Li & Wang, "FedMD: Heterogenous Federated Learning via Model
  Distillation", https://arxiv.org/abs/1910.03581
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

METHODS = ("kta", "fedmd", "local")
SIMILARITIES = ("cosine", "js")
TEACHER_RULES = ("power", "softmax")
_EPS = 1e-12


class MarketConfig(NamedTuple):
  """The server's rule (hashable: one compile per config).

  Attributes:
    method: ``"kta"`` (personalised market), ``"fedmd"`` (mean teacher) or
      ``"local"`` (no communication).
    similarity: ``"cosine"`` of the flattened probability matrices, or
      ``"js"``: ``exp(-JS(P_i, P_j) / tau)``, JS averaged over reference rows.
    tau: JS similarity temperature.
    teacher_rule: ``"power"`` (``S_ij^beta acc_j^gamma``) or ``"softmax"``
      (``exp(S_ij / teacher_tau) acc_j^gamma``).
    beta: exponent of the similarity in the ``"power"`` weights.
    teacher_tau: temperature of the ``"softmax"`` weights.
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
  teacher_rule: str = "power"
  beta: float = 1.0
  teacher_tau: float = 0.05
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
    if self.teacher_rule not in TEACHER_RULES:
      raise ValueError(f"teacher_rule must be one of {TEACHER_RULES}, "
                       f"got {self.teacher_rule!r}")
    if min(self.temperature, self.tau, self.teacher_tau) <= 0:
      raise ValueError(f"temperature, tau and teacher_tau must be > 0, got "
                       f"{self.temperature}, {self.tau}, {self.teacher_tau}")
    if self.top_m is not None and self.top_m < 1:
      raise ValueError(f"top_m must be >= 1 or None, got {self.top_m}")
    jnp.dtype(self.value_dtype)  # raises on an unknown dtype
    return self


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
                    rule: str = "power", beta: float = 1.0,
                    teacher_tau: float = 0.05, gamma: float = 1.0,
                    top_m: int | None = None,
                    include_self: bool = False) -> jax.Array:
  """Row-stochastic ``(C, C)`` teacher weights.

  ``rule="power"``: ``w_ij ∝ max(S_ij, 0)^beta acc_j^gamma``;
  ``rule="softmax"``: ``w_ij ∝ exp(S_ij / teacher_tau) acc_j^gamma`` (computed
  from ``S_ij - max_j S_ij``, so it never overflows). Teachers ``j`` of ``i``
  are the valid clients (not ``i`` unless ``include_self``), cut to the
  ``top_m`` with the largest ``S_ij``. A row with no teacher of positive
  weight falls back to ``w_ii = 1`` (the client keeps its own predictions as
  target).
  """
  if rule not in TEACHER_RULES:
    raise ValueError(f"rule must be one of {TEACHER_RULES}, got {rule!r}")
  c = sim.shape[0]
  eye = jnp.eye(c, dtype=bool)
  eligible = valid[None, :] & (jnp.ones_like(eye) if include_self else ~eye)
  if top_m is not None and top_m < c:
    _, idx = jax.lax.top_k(jnp.where(eligible, sim, -jnp.inf), top_m)
    chosen = jnp.zeros_like(eye).at[jnp.arange(c)[:, None], idx].set(True)
    eligible &= chosen
  if rule == "power":
    score = jnp.power(jnp.maximum(sim, 0.0), beta)
  else:
    top = jnp.max(jnp.where(eligible, sim, -jnp.inf), axis=1, keepdims=True)
    score = jnp.exp((sim - jnp.where(jnp.isfinite(top), top, 0.0))
                    / teacher_tau)
  raw = jnp.where(eligible, score * jnp.power(acc, gamma)[None, :], 0.0)
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
    ``accuracy`` ``(C,)`` on the reference labels, ``valid`` ``(C,)``,
    ``fedmd_distance`` ``(C,)``: the mean over reference rows of the
    total-variation distance ``0.5 sum_k |Q_i - mean_j P_j|`` of each target
    from the FedMD mean of the valid clients, and ``weight_entropy`` ``(C,)``:
    ``-sum_j w_ij log w_ij`` (nats; ``log C_valid`` for uniform weights).
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
    weights = teacher_weights(
        sim, acc, valid, rule=config.teacher_rule, beta=config.beta,
        teacher_tau=config.teacher_tau, gamma=config.gamma,
        top_m=config.top_m, include_self=config.include_self)
  targets = jnp.einsum("ij,jnk->ink", weights, probs)
  consensus = jnp.einsum("j,jnk->nk", mean_teacher_weights(valid)[0], probs)
  distance = 0.5 * jnp.mean(jnp.sum(jnp.abs(targets - consensus), -1), -1)
  entropy = -jnp.sum(jax.scipy.special.xlogy(weights, weights), axis=1)
  return {"targets": targets, "weights": weights, "accuracy": acc,
          "valid": valid, "fedmd_distance": distance,
          "weight_entropy": entropy}


def distillation_loss(logits: jax.Array, targets: jax.Array,
                      temperature: float = 1.0) -> jax.Array:
  """``T^2 KL(Q || softmax(logits / T))`` averaged over the batch."""
  log_p = jax.nn.log_softmax(logits / temperature, axis=-1)
  kl = jnp.sum(jax.scipy.special.xlogy(targets, targets) - targets * log_p, -1)
  return temperature**2 * jnp.mean(kl)
