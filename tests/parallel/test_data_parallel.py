"""Data-parallel compressed training over shard_map on 8 forced CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax import parallel
from tests import multihost
from tests.parallel import dp_problem

COMPRESSORS = {
    "top_k_leaf": lambda: sj.top_k(0.1),
    "top_k_global": lambda: sj.top_k(k=5, scope="global"),
    "top_k_dense_crossover": lambda: sj.top_k(0.5),
    "hard_threshold": lambda: sj.hard_threshold(0.05),
    "blockwise": lambda: sj.blockwise_top_k(0.2, block_size=8),
    "random_k": lambda: sj.random_k(0.2, scaled=True),
    "qsgd": lambda: sj.qsgd(8),
    "scaled_sign": sj.scaled_sign,
    "cast": sj.cast,
}


def sequential_reference(compressor, num_devices):
  """Each worker's EF message computed alone, averaged by hand."""
  ef = sj.error_feedback(compressor)
  opt = optax.sgd(0.5, momentum=0.9)
  params = {"w": jnp.zeros(dp_problem.DIM), "b": jnp.zeros(())}
  ef_states = [ef.init(params) for _ in range(num_devices)]
  opt_state = opt.init(params)
  rows = dp_problem.BATCH // num_devices
  for t in range(dp_problem.STEPS):
    x, y = dp_problem.data(t)
    sent = []
    for i in range(num_devices):
      part = (x[i * rows:(i + 1) * rows], y[i * rows:(i + 1) * rows])
      g = jax.grad(lambda p: dp_problem.loss_fn(p, {}, part)[0])(params)
      out, ef_states[i] = ef.update(g, ef_states[i])
      sent.append(out)
    mean = jax.tree.map(lambda *s: sum(s) / num_devices, *sent)
    updates, opt_state = opt.update(mean, opt_state, params)
    params = optax.apply_updates(params, updates)
  return params, ef_states


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_matches_per_worker_reference(name):
  params, bits = dp_problem.train(8, compressor=COMPRESSORS[name]())
  ref, ref_states = sequential_reference(COMPRESSORS[name](), 8)
  np.testing.assert_allclose(params["w"], ref["w"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(params["b"], ref["b"], rtol=1e-5, atol=1e-6)
  ref_bits = sum(float(sj.comm_stats(s)["bits_sent"]) for s in ref_states)
  assert float(bits) == ref_bits


@pytest.mark.slow
def test_residuals_stay_per_device():
  mesh = parallel.data_mesh(4)
  tx = dp_problem.make_tx(sj.top_k(0.1))
  params = {"w": jnp.zeros(dp_problem.DIM), "b": jnp.zeros(())}
  opt_state = parallel.init_opt_state(tx, params, mesh)
  step = parallel.make_train_step(dp_problem.loss_fn, tx, mesh, donate=False)
  params, _, opt_state, metrics = step(params, {}, opt_state,
                                       dp_problem.data(0))
  residual = np.asarray(opt_state[0].residual["w"])
  assert residual.shape == (4, dp_problem.DIM)
  # Different data on each device gives different residuals.
  assert not np.allclose(residual[0], residual[1])
  assert 0.0 <= float(metrics["accuracy"]) <= 1.0


def test_sparse_gather_equals_dense_psum():
  mesh = parallel.data_mesh(4)
  x = jax.random.normal(jax.random.key(0), (4, 64))

  def run(crossover):
    tx = parallel.compressed_mean(sj.top_k(0.5), "data",
                                  sparse_crossover=crossover)

    def f(g):
      out, _ = tx.update(g[0], tx.init(g[0]))
      return out

    return jax.jit(jax.shard_map(f, mesh=mesh, in_specs=jax.P("data"),
                                 out_specs=jax.P(), check_vma=False))(x)

  tk = sj.top_k(0.5)
  expected = sum(tk.update(x[i], tk.init(x[i]))[0] for i in range(4)) / 4
  np.testing.assert_allclose(run(True), expected, rtol=1e-6)
  np.testing.assert_allclose(run(False), expected, rtol=1e-6)


@pytest.mark.slow
def test_two_processes_match_single_process(tmp_path):
  outs = multihost.run_workers("tests.parallel.multihost_worker", tmp_path,
                               timeout=240)
  single, single_bits = dp_problem.train(4)
  for got in outs:
    np.testing.assert_allclose(got["w"], single["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["b"], single["b"], rtol=1e-5, atol=1e-6)
    assert float(got["bits"]) == float(single_bits)
