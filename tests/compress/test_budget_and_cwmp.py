"""Budgeted hard threshold and cost-weighted magnitude pruning (CWMP)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj


def _params():
  return {"conv": {"kernel": jnp.zeros((3, 3, 2, 4))},
          "dense": {"kernel": jnp.zeros((8, 5)), "bias": jnp.zeros(5)}}


def _grad(seed, scale=1.0):
  keys = jax.random.split(jax.random.key(seed), 3)
  p = _params()
  return jax.tree.map(lambda x, k: scale * jax.random.normal(k, x.shape),
                      p, {"conv": {"kernel": keys[0]},
                          "dense": {"kernel": keys[1], "bias": keys[2]}})


@pytest.mark.slow
@pytest.mark.parametrize("correction_steps", [None, 3.0])
def test_budget_never_exceeded_and_nearly_spent(correction_steps):
  steps, total = 60, 60 * 12
  tx = sj.error_feedback(sj.hard_threshold(
      budget=total, num_steps=steps, correction_steps=correction_steps))
  update = jax.jit(tx.update)
  state = tx.init(_params())
  spent, reserve = [], 0.1 * total / steps
  for t in range(steps):
    # Large gradients early, small late: the spend must still follow budget.
    _, state = update(_grad(t, 4.0 / (1 + t / 10)), state)
    stats = sj.comm_stats(state)
    spent.append(float(stats["elements_sent"]))
    assert spent[-1] <= total
    assert spent[-1] + float(stats["budget_left"]) == total
    # Every later step keeps its reserve: none is starved.
    assert float(stats["budget_left"]) >= reserve * (steps - 1 - t) - 1e-3
  assert spent[-1] >= 0.98 * total


@pytest.mark.slow
def test_budget_in_bits_counts_headers_and_indices():
  steps = 10
  bits = steps * (32 + 20 * 64)   # 20 (value, index) pairs + header per step
  tx = sj.hard_threshold(budget=bits, num_steps=steps, unit="bits")
  state = tx.init(_params())
  for t in range(steps):
    _, state = tx.update(_grad(t), state)
  assert sj.exact(state.counters.bits) <= bits
  assert sj.exact(state.counters.elements) <= 20 * steps


@pytest.mark.slow
def test_budget_sends_largest_entries_above_threshold():
  tx = sj.hard_threshold(budget=30, num_steps=3, initial_threshold=1e-6,
                         reserve=0.5)
  g = _grad(0)
  out, state = tx.update(g, tx.init(g))
  flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
  sent = np.concatenate([np.ravel(x) for x in jax.tree.leaves(out)])
  n = np.count_nonzero(sent)
  # The threshold admits everything; the budget (30 - 2 steps * 5 reserve)
  # admits 20, and they are the 20 largest magnitudes.
  assert n == 20
  assert np.min(np.abs(sent[sent != 0])) >= np.sort(np.abs(flat))[-20]
  assert sj.exact(state.counters.overflow) == flat.size - 20


def test_budget_bad_input():
  with pytest.raises(ValueError, match="exactly one of threshold and budget"):
    sj.hard_threshold(0.1, budget=10, num_steps=2)
  with pytest.raises(ValueError, match="num_steps"):
    sj.hard_threshold(budget=10)
  with pytest.raises(ValueError, match="budget"):
    sj.hard_threshold(budget=-5, num_steps=2)
  with pytest.raises(ValueError, match="unit"):
    sj.hard_threshold(budget=5, num_steps=2, unit="joules")
  with pytest.raises(ValueError, match="do not apply with budget"):
    sj.hard_threshold(budget=5, num_steps=2, capacity=0.1)
  with pytest.raises(ValueError, match="do not apply with budget"):
    sj.hard_threshold(budget=5, num_steps=2, index_encoding="bitmap")


@pytest.mark.slow
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_cwmp_equal_costs_is_top_k(power):
  g = _grad(3)
  d = sum(x.size for x in jax.tree.leaves(g))
  k = 9
  cw = sj.cost_weighted(sj.uniform_costs, budget=float(k), power=power)
  tk = sj.top_k(k=k, scope="global")
  out_cw, state = cw.update(g, cw.init(g))
  out_tk, _ = tk.update(g, tk.init(g))
  jax.tree.map(np.testing.assert_array_equal, out_cw, out_tk)
  assert float(state.energy.total) == k
  assert d > k


def test_cwmp_matches_greedy_reference_and_respects_budget():
  rng = np.random.default_rng(0)
  g = _grad(5)
  costs = jax.tree.map(
      lambda x: rng.uniform(0.5, 3.0, x.shape).astype(np.float32), g)
  for budget in (1.0, 7.5, 40.0):
    tx = sj.cost_weighted(costs, budget=budget)
    out, state = tx.update(g, tx.init(g))
    x = np.concatenate([np.ravel(v) for v in jax.tree.leaves(g)])
    c = np.concatenate([np.ravel(v) for v in jax.tree.leaves(costs)])
    order = sorted(range(x.size), key=lambda i: (-abs(x[i]) / c[i], i))
    chosen, total = set(), 0.0
    for i in order:        # the greedy knapsack: longest fitting prefix
      if total + c[i] > budget:
        break
      chosen.add(i)
      total += c[i]
    sent = np.concatenate([np.ravel(v) for v in jax.tree.leaves(out)])
    assert set(np.flatnonzero(sent)) == chosen
    assert float(state.energy.total) <= budget + 1e-5
    np.testing.assert_allclose(float(state.energy.total), total, rtol=1e-5)


@pytest.mark.slow
def test_cwmp_energy_ratio_and_ledger_in_comm_stats():
  g = _grad(1)
  tx = sj.error_feedback(sj.cost_weighted("energy_table", energy_ratio=0.1))
  state = tx.init(g)
  for t in range(3):
    _, state = tx.update(_grad(t), state)
  stats = sj.comm_stats(state)
  full = sum(float(np.sum(np.broadcast_to(c, x.shape))) for c, x in zip(
      jax.tree.leaves(sj.energy_table_costs(g)), jax.tree.leaves(g)))
  assert 0 < float(stats["energy_joules"]) <= 3 * 0.1 * full * (1 + 1e-6)
  assert float(stats["last_energy_joules"]) <= 0.1 * full * (1 + 1e-6)


def test_cost_presets():
  p = _params()
  kinds = sj.costs_by_layer_kind(p)
  assert kinds["conv"]["kernel"] < kinds["dense"]["kernel"]
  energy = sj.energy_table_costs(p)
  # Dense kernels update from DRAM, conv kernels from SRAM: 2*(640-5) pJ apart.
  np.testing.assert_allclose(
      energy["dense"]["kernel"] - energy["conv"]["kernel"], 2 * 635e-12,
      rtol=1e-6)


def test_cwmp_bad_input_names_leaf_or_argument():
  p = _params()
  with pytest.raises(ValueError, match="does not match"):
    sj.cost_weighted({"conv": 1.0}, budget=1.0).init(p)
  bad = jax.tree.map(lambda _: 1.0, p)
  bad["dense"]["bias"] = -1.0
  with pytest.raises(ValueError, match=r"\['dense'\]\['bias'\].*> 0"):
    sj.cost_weighted(bad, budget=1.0).init(p)
  with pytest.raises(ValueError, match="budget"):
    sj.cost_weighted("uniform", budget=-1.0)
  with pytest.raises(ValueError, match="energy_ratio"):
    sj.cost_weighted("uniform", energy_ratio=1.5)
  with pytest.raises(ValueError, match="unknown cost model"):
    sj.cost_weighted("solar", budget=1.0).init(p)


@pytest.mark.slow
def test_cwmp_kernel_buffer_overflow_is_counted():
  x = jnp.arange(1.0, 11.0)
  tx = sj.cost_weighted(1.0, budget=6.0, max_ratio=0.3)
  out, state = tx.update(x, tx.init(x))
  assert sj.exact(state.counters.overflow) == 3   # 6 chosen, buffer of 3
  assert np.count_nonzero(out) == 3


@pytest.mark.slow
def test_energy_metered_top_k_is_the_cost_of_what_it_sent():
  g = _grad(2)
  costs = sj.energy_table_costs(g)
  tx = sj.energy_metered(sj.top_k(k=7, scope="global"), costs)
  out, state = tx.update(g, tx.init(g))
  expected = sum(float(np.sum(np.broadcast_to(c, x.shape) * (x != 0)))
                 for c, x in zip(jax.tree.leaves(costs), jax.tree.leaves(out)))
  np.testing.assert_allclose(float(sj.comm_stats(state)["energy_joules"]),
                             expected, rtol=1e-6)
  assert int(sj.comm_stats(state)["elements_sent"]) == 7


def test_cwmp_spends_at_most_top_k_energy_for_the_same_ratio_budget():
  # With unequal costs, CWMP at energy ratio r never spends more than r of
  # the dense energy; top-k at ratio r may (it ignores costs).
  g = _grad(4)
  r = 0.1
  cw = sj.cost_weighted("energy_table", energy_ratio=r)
  _, state = cw.update(g, cw.init(g))
  dense = sum(float(np.sum(np.broadcast_to(c, x.shape))) for c, x in zip(
      jax.tree.leaves(sj.energy_table_costs(g)), jax.tree.leaves(g)))
  assert float(state.energy.total) <= r * dense * (1 + 1e-6)


def test_energy_metered_refuses_a_second_ledger():
  g = _grad(0)
  with pytest.raises(ValueError, match="twice"):
    sj.energy_metered(sj.cost_weighted("uniform", budget=3.0)).init(g)


def _greedy(x, c, budget, key):
  """The numpy greedy prefix: visit by decreasing ``key``, stop when over."""
  chosen, total = [], 0.0
  for i in sorted(range(x.size), key=lambda i: (-key[i], i)):
    if total + c[i] > budget:
      break
    chosen.append(i)
    total += c[i]
  return chosen, total


@pytest.mark.parametrize("n,max_ratio", [
    (300, None), pytest.param(20000, 0.5, marks=pytest.mark.slow),
    pytest.param(20000, 0.002, marks=pytest.mark.slow)])
def test_energy_matched_top_k_is_the_cost_budgeted_magnitude_prefix(
    n, max_ratio):
  # n = 20000 runs the threshold-search kernel (n > SMALL_N); max_ratio =
  # 0.002 makes the prefix overflow the buffer (its radix-search branch).
  rng = np.random.default_rng(n)
  x = rng.standard_normal(n).astype(np.float32)
  c = rng.choice([1.0, 8.0, 64.0], n).astype(np.float32)  # dyadic: exact sums
  for budget in (5.0, 0.01 * c.sum(), 0.2 * c.sum()):
    tx = sj.cost_weighted(jnp.asarray(c), budget=float(budget),
                          rank="magnitude", max_ratio=max_ratio)
    out, state = tx.update(jnp.asarray(x), tx.init(jnp.asarray(x)))
    chosen, total = _greedy(x, c, budget, np.abs(x))
    buffer = n if max_ratio is None else int(np.ceil(max_ratio * n))
    sent = np.flatnonzero(np.asarray(out))
    assert set(sent) == set(chosen[:buffer])
    np.testing.assert_array_equal(np.asarray(out)[sent], x[sent])
    assert (sj.exact(state.counters.elements)           # the whole prefix
            + sj.exact(state.counters.overflow)) == len(chosen)
    spent = float(state.energy.total)        # the energy of what was sent
    np.testing.assert_allclose(spent, c[sent].sum(), rtol=1e-6)
    assert spent <= budget
    if buffer >= len(chosen):   # stops only when the next entry won't fit
      assert total + c[np.argsort(-np.abs(x), stable=True)[len(chosen)]] > (
          budget)


@pytest.mark.slow
def test_energy_matched_top_k_keeps_the_largest_entries_cwmp_does_not():
  g = _grad(6)
  costs = sj.energy_table_costs(g, tx_joules_per_bit=0.0)  # 117x disparity
  budget = 0.3 * sum(float(np.sum(np.broadcast_to(c, x.shape)))
                     for c, x in zip(jax.tree.leaves(costs),
                                     jax.tree.leaves(g)))
  mag = sj.cost_weighted(costs, budget=budget, rank="magnitude")
  cw = sj.cost_weighted(costs, budget=budget)
  out_m, state_m = mag.update(g, mag.init(g))
  out_c, state_c = cw.update(g, cw.init(g))
  flat = lambda t: np.concatenate([np.ravel(v) for v in jax.tree.leaves(t)])
  x, sent_m, sent_c = flat(g), flat(out_m) != 0, flat(out_c) != 0
  # Magnitude: exactly the count largest |x|, whatever they cost.
  top = np.argsort(-np.abs(x), stable=True)[:sent_m.sum()]
  assert set(np.flatnonzero(sent_m)) == set(top)
  # CWMP prefers the cheap conv entries: it sends more, and a different set.
  assert sent_c.sum() > sent_m.sum()
  assert not np.array_equal(sent_c, sent_m)
  for state in (state_m, state_c):
    assert float(state.energy.total) <= budget * (1 + 1e-6)


@pytest.mark.slow
def test_energy_matched_top_k_with_equal_costs_is_top_k_and_cwmp():
  g = _grad(7)
  k = 11
  mag = sj.cost_weighted("uniform", budget=float(k), rank="magnitude")
  cw = sj.cost_weighted("uniform", budget=float(k))
  tk = sj.top_k(k=k, scope="global")
  out_m, state = mag.update(g, mag.init(g))
  for other in (tk, cw):
    out, _ = other.update(g, other.init(g))
    jax.tree.map(np.testing.assert_array_equal, out_m, out)
  assert float(state.energy.total) == k


def test_rank_bad_input():
  with pytest.raises(ValueError, match="rank must be one of"):
    sj.cost_weighted("uniform", budget=1.0, rank="size")
  with pytest.raises(ValueError, match="power=2.0 has no effect"):
    sj.cost_weighted("uniform", budget=1.0, rank="magnitude", power=2.0)
