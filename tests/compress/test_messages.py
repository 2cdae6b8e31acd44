"""Bit accounting: message sizes vs an independent count, and BitCount."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax.compress.bitcount import BitCount
from sparsejax.compress.messages import message_overflow

N_W, N_B = 24, 5  # sizes of the two float leaves of _tree()


def _tree(seed=0, dtype=jnp.float32):
  r = np.random.default_rng(seed)
  w = r.normal(size=(4, 6))
  b = r.normal(size=(5,))
  return {"w": jnp.asarray(w, dtype), "b": jnp.asarray(b, dtype)}


def _nnz(x):
  return int(np.count_nonzero(np.asarray(x, np.float32)))


def _floor_k(ratio, n):
  return max(1, int(math.floor(ratio * n)))


def _expected_bits(name, g, out):
  """(elements, bits) counted independently from the docstring formulas."""
  w, b = (np.asarray(g["w"], np.float32), np.asarray(g["b"], np.float32))
  vb = 8 * np.dtype(g["w"].dtype).itemsize
  if name == "top_k_ratio_leaf":  # ratio=0.25, int32 indices
    counts = [_floor_k(0.25, w.size), _floor_k(0.25, b.size)]
    assert counts == [_nnz(out["w"]), _nnz(out["b"])]
    return sum(counts), sum(c * (vb + 32) for c in counts)
  if name == "top_k_k_global_bf16":  # k=3, value_dtype=bf16, one message
    assert _nnz(out["w"]) + _nnz(out["b"]) == 3
    return 3, 3 * (16 + 32)
  if name == "top_k_bitmap":  # k=2 per leaf, bitmap
    return 4, 2 * vb + w.size + 2 * vb + b.size
  if name == "blockwise":  # ratio .25, block 4, global over 29 entries
    n = w.size + b.size
    blocks = -(-n // 4)
    per_block = -(-_floor_k(0.25, n) // blocks)
    # every block (tail has 1 real entry) contributes min(per_block, size)
    sizes = [4] * (n // 4) + ([n % 4] if n % 4 else [])
    count = sum(min(per_block, s) for s in sizes)
    assert count == _nnz(out["w"]) + _nnz(out["b"])
    return count, count * (vb + 32)
  if name in ("threshold", "threshold_capacity", "threshold_auto"):
    els, bits = 0, 0
    for x in (w, b):
      selected = int(np.sum(np.abs(x) >= 0.5))
      sent = selected if name != "threshold_capacity" else min(
          selected, math.ceil(0.25 * x.size))
      idx_bits = 32 * sent
      if name == "threshold_auto":
        idx_bits = min(idx_bits, x.size)
      els += sent
      bits += 32 + sent * vb + idx_bits
    nnz = _nnz(out["w"]) + _nnz(out["b"])
    assert nnz == els
    return els, bits
  if name == "random_k_leaf":  # ratio 0.25: values + 64-bit key per leaf
    counts = [_floor_k(0.25, w.size), _floor_k(0.25, b.size)]
    return sum(counts), sum(c * vb + 64 for c in counts)
  if name == "random_k_global":  # k=5 over the flattened pytree
    return 5, 5 * vb + 64
  if name == "qsgd":  # levels=5: 3 bits for 0..5 plus a sign bit
    per = (5).bit_length() + 1
    return w.size + b.size, 2 * 32 + (w.size + b.size) * per
  if name == "qsgd_1":  # levels=1: 1 bit level + sign
    return w.size + b.size, 2 * 32 + (w.size + b.size) * 2
  if name == "sign":
    return w.size + b.size, 2 * 32 + w.size + b.size
  if name == "cast":
    return w.size + b.size, 16 * (w.size + b.size)
  if name == "no_compression":
    return w.size + b.size, vb * (w.size + b.size)
  raise KeyError(name)


BIT_CASES = {
    "top_k_ratio_leaf": lambda: sj.top_k(0.25),
    "top_k_k_global_bf16": lambda: sj.top_k(k=3, scope="global",
                                            value_dtype=jnp.bfloat16),
    "top_k_bitmap": lambda: sj.top_k(k=2, index_encoding="bitmap"),
    "blockwise": lambda: sj.blockwise_top_k(0.25, block_size=4),
    "threshold": lambda: sj.hard_threshold(0.5),
    "threshold_capacity": lambda: sj.hard_threshold(0.5, capacity=0.25),
    "threshold_auto": lambda: sj.hard_threshold(0.5, index_encoding="auto"),
    "random_k_leaf": lambda: sj.random_k(0.25, scaled=True),
    "random_k_global": lambda: sj.random_k(k=5, scope="global"),
    "qsgd": lambda: sj.qsgd(5),
    "qsgd_1": lambda: sj.qsgd(1),
    "sign": sj.scaled_sign,
    "cast": lambda: sj.cast(jnp.bfloat16),
    "no_compression": sj.no_compression,
}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16],
                         ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", sorted(BIT_CASES))
def test_reported_size_matches_independent_count(name, dtype):
  tx = BIT_CASES[name]()
  state = tx.init(_tree(dtype=dtype))
  total_bits, total_els = 0, 0
  for seed in range(3):
    g = _tree(seed, dtype)
    message, _ = tx.encode(g, state)
    out, state = tx.update(g, state)
    els, bits = _expected_bits(name, g, out)
    # The message itself ...
    m_els, m_bits = sj.compress.message_size(message)
    assert (sj.exact(m_els), sj.exact(m_bits)) == (els, bits)
    # ... and the counters of the state.
    c = state.counters
    assert sj.exact(c.last_bits) == bits
    assert sj.exact(c.last_elements) == els
    total_bits += bits
    total_els += els
    assert sj.exact(c.bits) == total_bits
    assert sj.exact(c.elements) == total_els
    assert int(c.steps) == seed + 1
  stats = sj.comm_stats(state)
  assert float(stats["bits_sent"]) == total_bits
  assert float(stats["bytes_sent"]) == total_bits / 8
  assert float(stats["elements_sent"]) == total_els


def test_integer_leaves_counted_as_dense():
  tx = sj.top_k(k=2, scope="global")
  g = {**_tree(), "z": jnp.arange(7, dtype=jnp.int32)}
  _, state = tx.update(g, tx.init(g))
  assert sj.exact(state.counters.last_bits) == 2 * 64 + 7 * 32
  assert sj.exact(state.counters.last_elements) == 2 + 7


@pytest.mark.slow
def test_overflow_counted():
  tx = sj.hard_threshold(0.5, capacity=0.25)
  g = {"w": jnp.ones(8), "b": jnp.full((4,), 0.1)}
  _, state = tx.update(g, tx.init(g))
  # 8 selected in w, buffer of 2: 6 overflow; nothing selected in b.
  assert sj.exact(state.counters.overflow) == 6
  assert int(sj.comm_stats(state)["overflow"]) == 6


@pytest.mark.parametrize("sent", [True, False])
def test_gated_message_costs_and_decodes_only_when_sent(sent):
  tx = sj.hard_threshold(0.5, capacity=0.25)
  g = {"w": jnp.arange(8.0), "b": jnp.full((4,), 0.1)}
  inner, _ = tx.encode(g, tx.init(g))
  gated = sj.compress.GatedMessage(inner, jnp.asarray(sent))
  elements, bits = sj.compress.message_size(inner)
  got = sj.compress.message_size(gated)
  assert [sj.exact(c) for c in got] == (
      [sj.exact(elements), sj.exact(bits)] if sent else [0, 0])
  want = sj.decode(inner) if sent else jax.tree.map(jnp.zeros_like, g)
  jax.tree.map(np.testing.assert_array_equal, sj.decode(gated), want)
  support = sj.compress.message_support(gated)["w"]
  np.testing.assert_array_equal(support, sj.compress.message_support(inner)["w"] * sent)
  # 7 entries >= 0.5 in w, a buffer of 2: 5 overflow, counted only if sent.
  assert sj.exact(message_overflow(gated)) == (5 if sent else 0)


@pytest.mark.slow
@pytest.mark.parametrize("n", [64, 70, 5])
def test_auto_index_encoding_picks_the_cheaper(n):
  # x has `c` entries >= threshold for every c in 0..n.
  xs = np.full((n + 1, n), 0.1, np.float32)
  for c in range(n + 1):
    xs[c, np.random.default_rng(c).permutation(n)[:c]] = 1.0
  sizes = {}
  for enc in ("int32", "bitmap", "auto"):
    tx = sj.hard_threshold(0.5, index_encoding=enc)
    state = tx.init(None)
    bits = jax.jit(jax.vmap(  # pylint: disable=cell-var-from-loop
        lambda x: sj.compress.message_size(tx.encode(x, state)[0])[1]))(jnp.asarray(xs))
    sizes[enc] = [(int(h) << 32) + int(l) for h, l in zip(bits.hi, bits.lo)]
  for c in range(n + 1):
    assert sizes["int32"][c] == 32 + c * 64
    assert sizes["bitmap"][c] == 32 + c * 32 + n
    assert sizes["auto"][c] == min(sizes["int32"][c], sizes["bitmap"][c])


@pytest.mark.slow
def test_seeded_message_sends_the_raw_key():
  # The seeded message sends exactly the raw key (2 x uint32 = 64 bits).
  tx = sj.random_k(k=1)
  m, _ = tx.encode(jnp.arange(10.0), tx.init(None))
  assert m.key_data.dtype == jnp.uint32 and m.key_data.size == 2
  assert sj.exact(m.size()[1]) == 32 + 64


# ----------------------------------------------------------------- BitCount


def _values(bc):
  hi = np.asarray(bc.hi, np.uint64).astype(object)
  lo = np.asarray(bc.lo, np.uint64).astype(object)
  return [int(h) * 2**32 + int(l) for h, l in zip(np.ravel(hi), np.ravel(lo))]


def _random_counts(rng, size):
  near = np.uint64(2**32) - rng.integers(1, 1000, size).astype(np.uint64)
  uniform = rng.integers(0, 2**32, size, dtype=np.uint64)
  small = rng.integers(0, 1000, size).astype(np.uint64)
  edge = np.array([0, 1, 2**16 - 1, 2**16, 2**31, 2**32 - 1], np.uint64)
  return np.concatenate([near, uniform, small, edge]).astype(np.uint32)


@pytest.mark.slow
@pytest.mark.parametrize("multiplier,offset", [
    (1, 0), (0, 5), (2**16 - 1, 2**32 - 1), (32, 0), (48, 32), (33, 2**31),
    (12345, 987654321)])
def test_bitcount_of_is_exact(multiplier, offset):
  counts = _random_counts(np.random.default_rng(multiplier), 200)
  got = _values(BitCount.of(counts, multiplier, offset))
  want = [int(c) * multiplier + offset for c in counts]
  assert got == want


def test_bitcount_of_rejects_out_of_range_constants():
  with pytest.raises(ValueError):
    BitCount.of(1, 2**16)
  with pytest.raises(ValueError):
    BitCount.of(1, -1)
  with pytest.raises(ValueError):
    BitCount.of(1, 1, 2**32)


def test_bitcount_addition_is_exact_with_carries():
  rng = np.random.default_rng(0)
  n = 500
  a_hi = rng.integers(0, 2**31, n, dtype=np.uint64).astype(np.uint32)
  b_hi = rng.integers(0, 2**31, n, dtype=np.uint64).astype(np.uint32)
  a_lo, b_lo = _random_counts(rng, 100), _random_counts(rng, 100)
  a_lo, b_lo = a_lo[:n], rng.permutation(b_lo)[:n]
  n = len(a_lo)
  a = BitCount(jnp.asarray(a_hi[:n]), jnp.asarray(a_lo))
  b = BitCount(jnp.asarray(b_hi[:n]), jnp.asarray(b_lo))
  assert _values(a + b) == [x + y for x, y in zip(_values(a), _values(b))]
  # Many carries in a row, through jit, against Python ints.
  step = BitCount.of(np.uint32(2**32 - 1), 2**16 - 1, 2**32 - 1)
  total, want = BitCount.zero(), 0
  add = jax.jit(lambda x, y: x + y)
  for _ in range(20):
    total, want = add(total, step), want + (2**32 - 1) * (2**16 - 1) + 2**32 - 1
  assert sj.exact(total) == want
  assert float(total.to_float()) == pytest.approx(want, rel=1e-6)


def test_bitcount_select():
  a = BitCount.of(7)
  b = BitCount.of(np.uint32(2**32 - 1), 3)
  assert sj.exact(a.select(jnp.array(True), b)) == 7
  assert sj.exact(a.select(jnp.array(False), b)) == (2**32 - 1) * 3


def test_cumulative_bits_beyond_2_32_under_jit():
  # A dense fp32 tensor of 2**20 entries is 2**25 bits a step: 200 steps are
  # 6.7e9 bits, past uint32 and past float32 exactness.
  tx = sj.no_compression()
  x = jnp.ones((2**20,), jnp.float32)

  @jax.jit
  def many(state):
    def body(s, _):
      _, s = tx.update(x, s)
      return s, s.counters.last_bits
    return jax.lax.scan(body, state, None, length=200)

  state, per_step = many(tx.init(x))
  assert sj.exact(state.counters.bits) == 200 * 2**25
  assert sum(_values(per_step)) == sj.exact(state.counters.bits)
  assert sj.exact(state.counters.elements) == 200 * 2**20


# --------------------------------------------------------------- comm_stats


def test_comm_stats_finds_nested_counters_and_sums():
  params = {"w": jnp.zeros((4, 6)), "b": jnp.zeros(5)}
  labels = {"w": "kernel", "b": "bias"}
  tx = optax.chain(
      optax.partition(
          {"kernel": optax.chain(
              optax.masked(sj.error_feedback(sj.top_k(k=2)),
                           {"w": True, "b": False}),
              optax.sgd(0.1, momentum=0.9)),
           "bias": optax.chain(sj.qsgd(3), optax.sgd(0.1))}, labels),
      optax.scale(1.0))
  state = tx.init(params)
  g = _tree()
  for _ in range(3):
    _, state = tx.update(g, state, params)
  stats = sj.comm_stats(state)
  per_step = (2 * 64) + (32 + 5 * ((3).bit_length() + 1))
  assert float(stats["bits_sent"]) == 3 * per_step
  assert float(stats["last_bits"]) == per_step
  assert float(stats["elements_sent"]) == 3 * (2 + 5)
  assert int(stats["steps"]) == 3
  # EF statistics come from the one EF state.
  res = np.asarray(sj.residual(state)["w"])
  assert float(stats["residual_norm"]) == pytest.approx(
      np.linalg.norm(res), rel=1e-6)
  assert int(stats["nonfinite_steps"]) == 0


def test_comm_stats_without_compressor_raises():
  tx = optax.chain(optax.adam(1e-3), optax.masked(optax.sgd(1.0), {"w": True}))
  state = tx.init({"w": jnp.zeros(3)})
  with pytest.raises(ValueError, match="no sparsejax compressor"):
    sj.comm_stats(state)
  with pytest.raises(ValueError):
    sj.comm_stats(())


def test_comm_stats_under_jit_matches_eager():
  tx = optax.chain(sj.error_feedback(sj.top_k(k=3)), optax.sgd(0.1))
  g = _tree()
  state = tx.init(g)
  for _ in range(2):
    _, state = tx.update(g, state)
  eager = sj.comm_stats(state)
  jitted = jax.jit(sj.comm_stats)(state)
  for key in eager:
    np.testing.assert_allclose(jitted[key], eager[key], rtol=1e-6)
  # total error is the sum of the per-step squared residual norms.
  assert float(eager["total_error"]) >= float(eager["residual_norm"]) ** 2


@pytest.mark.slow
def test_bitcount_total_is_exact_beyond_32_bits():
  rng = np.random.default_rng(3)
  hi = rng.integers(0, 2**10, 300, dtype=np.uint64).astype(np.uint32)
  lo = _random_counts(rng, 50)[:300]
  hi = hi[:len(lo)]
  counts = BitCount(jnp.asarray(hi), jnp.asarray(lo))
  values = _values(counts)
  assert sj.exact(jax.jit(BitCount.total)(counts)) == sum(values)
  mask = rng.random(len(values)) < 0.5
  assert sj.exact(counts.total(where=jnp.asarray(mask))) == sum(
      v for v, m in zip(values, mask) if m)
  assert list(sj.exact(counts)) == values
  assert list(sj.exact(counts.take(jnp.array([2, 0])))) == [values[2], values[0]]
  assert sj.exact(BitCount.sum([counts.take(i) for i in range(5)])) == sum(
      values[:5])
