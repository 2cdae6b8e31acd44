"""The collectives move the bits the counters count (issue #18, item 3).

:func:`moved_bytes` reads the lowered HLO of a jitted ``shard_map`` and adds
up what each device contributes to every collective: an all-gather's result
divided by the group size, an all-reduce's operand. Each compressor's
message over 8 forced host devices must move its counted bits, plus the
padding its wire format documents (:mod:`sparsejax.compress.packing`: under
32 bits per packed array; the majority vote's 8-bit non-finite flag).
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from sparsejax import parallel
from sparsejax.compress import packing
from sparsejax.compress.bitcount import exact
from sparsejax.compress.messages import WIRE_CAPACITY_STEPS
from sparsejax.compress.messages import decode
from sparsejax.compress.messages import mean_over_axis
from sparsejax.compress.messages import message_size
from sparsejax.compress.messages import wire_branch
from sparsejax.compress.messages import wire_capacities

P = 8
N = 1001  # entries per device: not a multiple of 32, nor of 9 or 3 bits

_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2,
          "bf16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8,
          "f64": 8}
_COLLECTIVE = re.compile(
    r"=\s*(.*?)\s+(all-gather|all-reduce|reduce-scatter|all-to-all|"
    r"collective-permute|collective-broadcast)(?:-start)?\(")
_SHAPE = re.compile(r"\b([a-z]+[0-9]*)\[([0-9,]*)\]")


def moved_bytes(fn, *args) -> int:
  """Bytes each device contributes to the collectives of jitted ``fn``.

  Counts every collective in the HLO once (a collective inside a branch of
  a conditional counts as if taken). Other collectives than all-gather and
  all-reduce fail the test rather than go uncounted.
  """
  total = 0
  for line in fn.lower(*args).as_text(dialect="hlo").splitlines():
    match = _COLLECTIVE.search(line)
    if match is None:
      continue
    result, op = match.groups()
    assert op in ("all-gather", "all-reduce"), line
    size = sum(_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d)
               for dtype, dims in _SHAPE.findall(result))
    total += size // P if op == "all-gather" else size
  return total


def _run(tx, x, reference=None):
  """``(fn, outputs)``: the mean over devices, counted bits per device and
  ``reference(message)`` (the unpacked path) if given."""

  def f(g):
    msg, _ = tx.encode(g[0], tx.init(g[0]))
    bits = message_size(msg)[1]
    ref = () if reference is None else reference(msg)
    return mean_over_axis(msg, "data"), bits.hi[None], bits.lo[None], ref

  fn = jax.jit(jax.shard_map(
      f, mesh=parallel.data_mesh(P), in_specs=jax.P("data"),
      out_specs=(jax.P(), jax.P("data"), jax.P("data"), jax.P()),
      check_vma=False))
  return fn, fn(x)


def _gathered_mean(msg):
  """The unpacked path: all-gather of the message's own arrays."""
  dense = jax.vmap(decode)(jax.lax.all_gather(msg, "data"))
  return jnp.mean(dense, axis=0).astype(dense.dtype)


def _pad(n, bits):
  """Padding bits of ``n`` values of ``bits`` bits packed in words."""
  return 32 * packing.num_words(n, bits) - n * bits


def _gradients(seed=0, shape=(N,)):
  x = jax.random.normal(jax.random.key(seed), (P,) + shape)
  return x.at[:, :7].set(0.0)  # zeros: a sign of 0, a level of 0


def _threshold_input(count):
  """Each device: ``count`` entries of magnitude >= 1, the rest below 0.5."""
  rng = np.random.default_rng(count)
  x = rng.uniform(-0.49, 0.49, (P, N))
  for row in x:
    picked = rng.choice(N, count, replace=False)
    row[picked] = rng.choice([-1, 1], count) * rng.uniform(1, 2, count)
  return jnp.asarray(x, jnp.float32)


# name -> (compressor, input, padding bits beyond the counted bits).
CASES = {
    "scaled_sign": (sj.scaled_sign, _gradients, _pad(N, 1)),
    "sign_majority_vote": (lambda: sj.sign_majority_vote(axis_name="data"),
                           _gradients, _pad(N, 1) + 8),
    "qsgd_1": (lambda: sj.qsgd(1), _gradients, _pad(N, 2)),
    "qsgd_4": (lambda: sj.qsgd(4), _gradients, _pad(N, 4)),
    "qsgd_127": (lambda: sj.qsgd(127), _gradients, _pad(N, 8)),
    "qsgd_256": (sj.qsgd, _gradients, _pad(N, 10)),
    "qsgd_32767": (lambda: sj.qsgd(2**15 - 1), _gradients, _pad(N, 16)),
    "terngrad": (sj.terngrad, _gradients, _pad(N, 2)),
    "onebit": (sj.onebit, _gradients, _pad(N, 1)),
    "natural_compression": (sj.natural_compression, _gradients, _pad(N, 9)),
    "top_k": (lambda: sj.top_k(k=50), _gradients, 0),
    "top_k_bitmap": (lambda: sj.top_k(k=100, index_encoding="bitmap"),
                     _gradients, _pad(N, 1)),
    "random_k": (lambda: sj.random_k(k=50), _gradients, 0),
    "cast_bf16": (sj.cast, _gradients, 0),
    "no_compression": (sj.no_compression, _gradients, 0),
    # capacity 0.05: 51 slots, all used.
    "hard_threshold_capacity": (
        lambda: sj.hard_threshold(0.5, capacity=0.05),
        lambda: _threshold_input(51), 0),
    "powersgd": (lambda: sj.powersgd(rank=1, start_iter=0, axis_name="data"),
                 lambda: _gradients(shape=(40, 30)), 0),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_moved_bytes_are_the_counted_bits(name):
  factory, make_input, padding = CASES[name]
  x = make_input()
  fn, (_, hi, lo, _) = _run(factory(), x)
  counted = exact(sj.compress.bitcount.BitCount(hi, lo))
  assert len(set(counted)) == 1, counted  # the same on every device
  assert 8 * moved_bytes(fn, x) == counted[0] + padding
  assert padding < 32 + 8


@pytest.mark.slow
def test_threshold_buffer_pads_its_unused_slots():
  """A threshold's buffer moves at its capacity: ``capacity - count`` unused
  (value, index) slots of 64 bits each beyond the counted bits."""
  x = _threshold_input(30)
  fn, (_, hi, lo, _) = _run(sj.hard_threshold(0.5, capacity=0.05), x)
  counted = exact(sj.compress.bitcount.BitCount(hi, lo))
  assert set(counted) == {30 * 64 + 32}
  assert 8 * moved_bytes(fn, x) == counted[0] + (51 - 30) * 64


QUANTIZERS = ["scaled_sign", "qsgd_1", "qsgd_4", "qsgd_127", "qsgd_256",
              "qsgd_32767", "terngrad", "onebit", "natural_compression",
              "cast_bf16", "random_k"]


@pytest.mark.slow
@pytest.mark.parametrize("name", QUANTIZERS)
@pytest.mark.parametrize("seed", [0, 1])
def test_packed_mean_is_bit_identical_to_the_unpacked_one(name, seed):
  factory, _, _ = CASES[name]
  x = _gradients(seed) * jnp.exp(3 * _gradients(seed + 7))  # wide exponents
  _, (mean, _, _, unpacked) = _run(factory(), x, _gathered_mean)
  np.testing.assert_array_equal(mean, unpacked)
  assert np.any(np.asarray(mean) != 0)


@pytest.mark.slow
def test_majority_vote_equals_an_int8_all_reduce():
  x = _gradients(3)
  x = x.at[:4, 11].set(-1.0).at[4:, 11].set(1.0)  # a tie: vote 0

  def reference(msg):
    votes = jax.lax.psum(jnp.where(msg.negative, -1, 1).astype(jnp.int8),
                         "data")
    return jnp.sign(votes).astype(jnp.float32)

  _, (mean, _, _, expected) = _run(sj.sign_majority_vote(axis_name="data"),
                                   x, reference)
  np.testing.assert_array_equal(mean, expected)
  assert mean[11] == 0


@pytest.mark.slow
def test_sparse_bitmap_mean_matches_the_index_gather():
  x = _gradients(4)
  _, (bitmap, *_) = _run(sj.top_k(k=100, index_encoding="bitmap"), x)
  _, (indices, *_) = _run(sj.top_k(k=100), x)
  np.testing.assert_allclose(bitmap, indices, rtol=1e-6, atol=1e-7)


def test_moved_bytes_counts_both_collectives():
  """The helper itself: one all-gather of 3 u32 and one all-reduce of 5 f32."""

  def f(a, b):
    return jax.lax.all_gather(a[0], "data"), jax.lax.psum(b[0], "data")

  fn = jax.jit(jax.shard_map(
      f, mesh=parallel.data_mesh(P), in_specs=jax.P("data"),
      out_specs=jax.P(), check_vma=False))
  assert moved_bytes(fn, jnp.zeros((P, 3), jnp.uint32),
                     jnp.zeros((P, 5))) == 3 * 4 + 5 * 4


def test_wire_capacities_halve_from_below_the_crossover():
  assert wire_capacities(N, P) == (125, 62, 31, 15, 7, 3, 1)
  assert 125 * P < N <= 126 * P
  assert wire_capacities(N, P, sparse_crossover=False)[:2] == (N, N // 2)
  assert len(wire_capacities(2**30, P)) == WIRE_CAPACITY_STEPS
  assert wire_capacities(5, P) == ()


@pytest.mark.slow
def test_threshold_mean_moves_every_branch_at_its_capacity():
  """A threshold without capacity: the counts (32 bits each), then one of
  the branches: a dense all-reduce or a gather of 64-bit slots at one
  capacity of :func:`wire_capacities` (each counted once here)."""
  x = _threshold_input(30)
  fn, _ = _run(sj.hard_threshold(0.5), x)
  branches = 32 * N + sum(64 * c for c in wire_capacities(N, P))
  assert 8 * moved_bytes(fn, x) == 32 + branches


@pytest.mark.slow
@pytest.mark.parametrize("count", [0, 1, 30, 31, 32, 125, 126, 600])
@pytest.mark.parametrize("encoding", ["int32", "bitmap"])
def test_threshold_mean_is_exact_in_every_branch(count, encoding):
  """Counts in every buffer size, and above the crossover (dense path)."""
  x = _threshold_input(count)
  x = x.at[1, 0].set(0.0)  # device 1 keeps one entry fewer, if it had it
  tx = sj.hard_threshold(0.5, index_encoding=encoding)
  dense_mean = lambda msg: jax.lax.pmean(decode(msg), "data")
  _, (mean, _, lo, expected) = _run(tx, x, dense_mean)
  assert int(np.max(lo)) > 0
  np.testing.assert_allclose(mean, expected, rtol=1e-6, atol=1e-7)
  assert np.count_nonzero(expected) >= count


def test_threshold_mean_uses_the_smallest_buffer_that_holds_the_counts():
  """Never a buffer that would truncate, never a larger one than needed."""
  capacities = wire_capacities(N, P)
  counts = np.random.default_rng(0).integers(0, N + 1, 300)
  branches = jax.jit(lambda c: wire_branch(c, capacities))(counts)
  for count, branch in zip(counts, np.asarray(branches)):
    fits = [c for c in capacities if c >= count]
    assert branch == (capacities.index(min(fits)) + 1 if fits else 0)
