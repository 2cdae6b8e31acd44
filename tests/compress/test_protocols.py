"""The message protocol, the statistics protocol and the Compressor type.

Every message type answers ``support``, ``overflow`` and ``mean`` for itself;
each is checked against a reference computed from ``to_dense`` (the mean over
8 forced host devices inside ``shard_map``, with the collective that
``sparsejax.parallel.collectives`` documents for the type).
"""

import copy
import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax.compress import base
from sparsejax.compress import messages

DEVICES = 8
N = 64


def _inputs(seed, n=N):
  """Distinct nonzero magnitudes, so a selection never sends a zero."""
  r = np.random.default_rng(seed)
  x = (r.permutation(n) + 1.0) / n * r.choice([-1.0, 1.0], n)
  return jnp.asarray(x, jnp.float32)


def _encoder(make):
  """``encode(x, device)`` of the compressor ``make(device)``."""
  def encode(x, device):
    tx = make(device)
    return tx.encode(x, tx.init(x))[0]
  return encode


def _gated(sent):
  top_k = _encoder(lambda _: sj.top_k(k=3))
  return lambda x, device: messages.GatedMessage(top_k(x, device), sent)


class Case(NamedTuple):
  encode: object           # (x, device) -> this device's message
  kind: type               # its message type
  every_coordinate: bool   # its support is every coordinate
  collective: str          # what its mean over devices must use ("switch":
                           # counts gathered, then a psum or gather branch)
  sparse_crossover: bool = True


CASES = {
    "dense": Case(_encoder(lambda _: sj.no_compression()),
                  messages.DenseMessage, True, "psum"),
    "cast": Case(_encoder(lambda _: sj.cast(jnp.bfloat16)),
                 messages.DenseMessage, True, "all_gather"),
    "sparse_below_crossover": Case(_encoder(lambda _: sj.top_k(k=3)),
                                   messages.SparseMessage, False, "all_gather"),
    "sparse_above_crossover": Case(_encoder(lambda _: sj.top_k(0.5)),
                                   messages.SparseMessage, False, "psum"),
    "sparse_forced_gather": Case(_encoder(lambda _: sj.top_k(0.5)),
                                 messages.SparseMessage, False, "all_gather",
                                 sparse_crossover=False),
    "sparse_overflow": Case(
        _encoder(lambda _: sj.hard_threshold(0.5, capacity=0.0625)),
        messages.SparseMessage, False, "all_gather"),
    "masked": Case(_encoder(lambda _: sj.hard_threshold(0.5)),
                   messages.MaskedMessage, False, "switch"),
    "seeded": Case(_encoder(lambda d: sj.random_k(k=5, seed=d)),
                   messages.SeededMessage, False, "all_gather"),
    "quantized": Case(_encoder(lambda d: sj.qsgd(4, seed=d)),
                      messages.QuantizedMessage, True, "all_gather"),
    "sign": Case(_encoder(lambda _: sj.scaled_sign()), messages.SignMessage,
                 True, "all_gather"),
    "two_value": Case(_encoder(lambda _: sj.onebit()),
                      messages.TwoValueMessage, True, "all_gather"),
    "power_of_two": Case(_encoder(lambda d: sj.natural_compression(seed=d)),
                         messages.PowerOfTwoMessage, True, "all_gather"),
    "gated_sent": Case(_gated(jnp.asarray(True)), messages.GatedMessage, False,
                       "all_gather"),
    "gated_not_sent": Case(_gated(jnp.asarray(False)), messages.GatedMessage,
                           False, "all_gather"),
}


def _encode(name, x, device):
  return CASES[name].encode(x, device)


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _sharded_mean(stacked, sparse_crossover):
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:DEVICES]), ("data",))

  def mean(local):
    message = jax.tree.map(lambda x: x[0], local)
    return messages.mean_over_axis(message, "data",
                                   sparse_crossover=sparse_crossover)

  fn = jax.jit(jax.shard_map(mean, mesh=mesh, in_specs=jax.P("data"),
                             out_specs=jax.P(), check_vma=False))
  return fn(stacked), str(jax.make_jaxpr(fn)(stacked))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_support_and_overflow_agree_with_the_dense_form(name):
  x = _inputs(0)
  message = _encode(name, x, 0)
  assert isinstance(message, CASES[name].kind)
  dense = np.asarray(message.to_dense(), np.float32)
  if CASES[name].every_coordinate:
    want = np.ones(N, np.float32)
  else:  # inputs have no zero: the sent coordinates are the nonzero ones
    want = (dense != 0).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(messages.message_support(message)),
                                want)
  if name == "sparse_overflow":  # selected by the threshold, not sent
    selected = int(np.sum(np.abs(np.asarray(x)) >= 0.5))
    want_overflow = selected - int(np.count_nonzero(dense))
    assert want_overflow > 0
  else:
    want_overflow = 0
  assert sj.exact(message.overflow()) == want_overflow
  assert sj.exact(messages.message_overflow(message)) == want_overflow


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_mean_over_devices_agrees_with_the_dense_mean(name):
  collective = CASES[name].collective
  local = [_encode(name, _inputs(d), d) for d in range(DEVICES)]
  want = np.mean([np.asarray(m.to_dense(), np.float32) for m in local], 0)
  got, jaxpr = _sharded_mean(_stack(local), CASES[name].sparse_crossover)
  np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=1e-6,
                             atol=1e-7)
  if collective == "switch":  # the counts, then a dense or a sparse branch
    assert all(f"{op}[" in jaxpr for op in ("all_gather", "cond", "psum"))
    return
  other = {"psum": "all_gather", "all_gather": "psum"}[collective]
  assert f"{collective}[" in jaxpr and f"{other}[" not in jaxpr


def test_flat_message_protocol_follows_its_inner_message():
  tx = sj.hard_threshold(0.5, capacity=0.0625)
  ints = jnp.arange(3, dtype=jnp.int32)

  def encode(device):
    g = {"a": _inputs(device, 40), "b": _inputs(device + 50, 24), "z": ints}
    leaves, treedef = jax.tree.flatten(g)
    flat, pack = base.flatten_floats(leaves, treedef)
    inner = tx.encode(flat, tx.init(flat))[0]
    return pack(inner), inner

  message, inner = encode(0)
  assert isinstance(message, messages.FlatMessage)
  support = messages.message_support(message)
  np.testing.assert_array_equal(
      np.concatenate([support["a"], support["b"]]), inner.support())
  np.testing.assert_array_equal(support["z"], [1, 1, 1])  # sent whole
  assert sj.exact(message.overflow()) == sj.exact(inner.overflow()) > 0
  local = [encode(d)[0] for d in range(DEVICES)]
  got, jaxpr = _sharded_mean(_stack(local), True)
  for key in ("a", "b"):
    want = np.mean([np.asarray(m.to_dense()[key]) for m in local], 0)
    np.testing.assert_allclose(got[key], want, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(got["z"], ints)
  assert "all_gather[" in jaxpr and "psum[" not in jaxpr


def test_messages_are_pytrees_with_replace():
  x = _inputs(0)
  message = _encode("sparse_below_crossover", x, 0)
  leaves, treedef = jax.tree.flatten(message)
  assert len(leaves) == 3  # values, indices, count; layout is static
  again = jax.tree.unflatten(treedef, leaves)
  np.testing.assert_array_equal(again.to_dense(), message.to_dense())
  doubled = message.replace(values=2 * message.values)
  np.testing.assert_array_equal(doubled.to_dense(), 2 * message.to_dense())
  assert doubled.shape == message.shape and doubled.indices is message.indices
  batched = jax.vmap(lambda v: message.replace(values=v).to_dense())(
      jnp.stack([message.values, -message.values]))
  np.testing.assert_array_equal(batched[1], -message.to_dense())
  with pytest.raises(dataclasses.FrozenInstanceError):
    message.values = None  # pytype: disable=not-writable


# ------------------------------------------------------------ Compressor


def test_compressor_survives_replace_copy_and_tree_functions():
  # pylint: disable=protected-access
  c = sj.top_k(k=2)
  x = jnp.asarray([1.0, -4.0, 3.0, 0.5])
  want, _ = c.update(x, c.init(x))
  assert isinstance(c, optax.GradientTransformation)
  assert isinstance(c, optax.GradientTransformationExtraArgs)

  def new_init(params):
    return c.init(params)

  replaced = c._replace(init=new_init)
  assert isinstance(replaced, sj.Compressor)
  assert replaced.init is new_init
  assert replaced.encode is c.encode and replaced.update is c.update
  for other in (copy.copy(c), copy.deepcopy(c),
                jax.tree.map(lambda f: f, c),
                sj.Compressor._make((c.init, c.encode, c.update))):
    assert isinstance(other, sj.Compressor)
    assert other.encode is c.encode
    out, _ = other.update(x, other.init(x))
    np.testing.assert_array_equal(out, want)
    message, _ = other.encode(x, other.init(x))
    np.testing.assert_array_equal(sj.decode(message), want)
  assert len(jax.tree.leaves(c)) == 3
  with pytest.raises(ValueError, match="unexpected field names"):
    c._replace(encoder=c.encode)


def test_replaced_update_is_kept_and_encode_can_be_replaced():
  # pylint: disable=protected-access
  c = sj.top_k(k=1)
  x = jnp.asarray([1.0, -4.0, 3.0])

  def halved(updates, state, params=None):
    out, state = c.update(updates, state, params)
    return out / 2, state

  r = c._replace(update=halved)
  np.testing.assert_array_equal(r.update(x, r.init(x))[0], [0.0, -2.0, 0.0])
  assert r.encode is c.encode
  other = sj.top_k(k=2)
  e = c._replace(encode=other.encode)
  assert e.encode is other.encode and e.update is c.update


# ------------------------------------------------------------ comm_stats


class DroppedLeaves(NamedTuple):
  """A user's state type, unknown to sparsejax, implementing the protocol."""
  dropped: jax.Array  # leaves zeroed so far
  largest: jax.Array  # norm of the largest leaf zeroed
  norm: jax.Array     # norm of everything zeroed

  comm_stats_combine = {"largest_drop": "max", "drop_norm": "norm"}

  def comm_stats(self):
    return {"leaves_dropped": self.dropped, "largest_drop": self.largest,
            "drop_norm": self.norm}


def drop_leaves(threshold):
  """Zeroes leaves whose norm is below ``threshold``; counts them."""

  def init(params):
    del params
    z = jnp.zeros((), jnp.float32)
    return DroppedLeaves(jnp.zeros((), jnp.int32), z, z)

  def update(updates, state, params=None):
    del params
    norms = [jnp.linalg.norm(u) for u in jax.tree.leaves(updates)]
    drop = [n < threshold for n in norms]
    dropped = sum(d.astype(jnp.int32) for d in drop)
    largest = jnp.max(jnp.stack([jnp.where(d, n, 0.0)
                                 for d, n in zip(drop, norms)]))
    norm = jnp.sqrt(sum(jnp.where(d, n * n, 0.0) for d, n in zip(drop, norms)))
    leaves, treedef = jax.tree.flatten(updates)
    kept = [jnp.where(d, 0.0, u) for d, u in zip(drop, leaves)]
    return jax.tree.unflatten(treedef, kept), DroppedLeaves(
        state.dropped + dropped, jnp.maximum(state.largest, largest),
        jnp.sqrt(state.norm ** 2 + norm ** 2))

  return optax.GradientTransformation(init, update)


@pytest.mark.slow
def test_comm_stats_combines_a_user_defined_state_type():
  g = {"a": jnp.asarray([3.0, 4.0]), "b": jnp.asarray([0.1, 0.2]),
       "c": jnp.asarray([0.0, 0.3])}
  norm_b, norm_c = np.hypot(0.1, 0.2), 0.3
  tx = optax.chain(drop_leaves(1.0), sj.error_feedback(sj.top_k(k=1)),
                   drop_leaves(5.0), optax.sgd(0.1))
  state = tx.init(g)
  _, state = jax.jit(tx.update)(g, state)
  stats = sj.comm_stats(state)
  # The first stage zeroes b and c; top-1 leaves a = [0, 4] (norm 4), which
  # the second stage zeroes with b and c: 2 + 3 leaves, largest max(0.3, 4).
  assert int(stats["leaves_dropped"]) == 5
  assert float(stats["largest_drop"]) == pytest.approx(4.0)
  assert float(stats["drop_norm"]) == pytest.approx(
      np.sqrt(norm_b**2 + norm_c**2 + 4.0**2), rel=1e-6)
  assert float(stats["bits_sent"]) == 3 * 64  # top-1 of each leaf
  assert float(stats["total_error"]) == pytest.approx(9.0)  # a's 3 kept back
  # Alone (no compressor in the state), the user's statistics still work.
  alone = drop_leaves(1.0)
  _, s = alone.update(g, alone.init(g))
  assert int(sj.comm_stats(s)["leaves_dropped"]) == 2
  assert float(sj.comm_stats(s)["largest_drop"]) == pytest.approx(norm_c)


def test_comm_stats_rejects_two_rules_for_one_name():
  class Other(DroppedLeaves):
    comm_stats_combine = {"largest_drop": "sum", "drop_norm": "norm"}

  z = jnp.zeros(())
  with pytest.raises(ValueError, match="largest_drop"):
    sj.comm_stats((DroppedLeaves(z, z, z), Other(z, z, z)))


# ------------------------------------------------------------ overflow


def test_overflow_is_exact_beyond_int32():
  # Each message selects 2**31 - 1 entries into a 1-slot buffer: 2**31 - 2
  # overflow per step, past int32 after the second step.
  message = messages.SparseMessage(
      jnp.ones((1,), jnp.float32), jnp.zeros((1,), jnp.int32),
      jnp.asarray(2**31 - 1, jnp.int32), (2**31,), jnp.float32, "int32",
      True)
  steps = 5

  @jax.jit
  def run(counters):
    return jax.lax.fori_loop(0, steps, lambda _, c: c.record(message),
                             counters)

  counters = run(sj.compress.CommCounters.zero())
  assert sj.exact(counters.overflow) == steps * (2**31 - 2)
  stats = sj.comm_stats(counters)
  assert float(stats["overflow"]) == pytest.approx(steps * (2**31 - 2),
                                                   rel=1e-6)
  assert sj.exact(counters.elements) == steps


# ------------------------------------------------------------ registry


def test_create_compressor_from_a_name_or_a_config():
  x = _inputs(0)
  ref = sj.top_k(k=3, value_dtype=jnp.bfloat16)
  want = ref.encode(x, ref.init(x))[0]
  for c in (sj.create_compressor("top_k", k=3, value_dtype="bfloat16"),
            sj.create_compressor({"name": "top_k", "k": 3,
                                  "value_dtype": "bfloat16"}),
            sj.create_compressor(ml_collections.ConfigDict(
                {"name": "top_k", "k": 5, "value_dtype": "bfloat16"}), k=3)):
    got = c.encode(x, c.init(x))[0]
    assert got.values.dtype == jnp.bfloat16
    np.testing.assert_array_equal(got.to_dense(), want.to_dense())
  assert sorted(sj.COMPRESSORS) == sorted(
      ["blockwise_top_k", "cast", "cost_weighted", "dgc", "hard_threshold",
       "natural_compression", "no_compression", "onebit", "powersgd", "qsgd",
       "random_k", "scaled_sign", "sign_majority_vote", "terngrad", "top_k"])
  with pytest.raises(ValueError, match="no 'name'"):
    sj.create_compressor({"k": 3})
  with pytest.raises(ValueError, match="unknown compressor 'identity'"):
    sj.create_compressor("identity")
  with pytest.raises(TypeError, match="config mapping"):
    sj.create_compressor(3)
