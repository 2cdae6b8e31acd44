"""dp_train runs DGC and Signum by config, and gives the data axis to the
factories that take one (PowerSGD, the majority vote, Signum, DGC)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments.dp_train import train
from experiments.dp_train.configs import smoke
import sparsejax as sj
from sparsejax import parallel

DEVICES = 4
PARAMS = {"w": jnp.zeros((8, 6)), "b": jnp.zeros(6)}


def _per_device_updates(tx):
  """``tx.update`` of one step inside ``shard_map``, each device its own
  gradient; the outputs of every device, stacked."""
  rng = np.random.default_rng(0)
  grads = jax.tree.map(
      lambda p: jnp.asarray(rng.normal(size=(DEVICES,) + p.shape),
                            jnp.float32), PARAMS)

  def local(g):
    g = jax.tree.map(lambda x: x[0], g)
    out, _ = tx.update(g, tx.init(PARAMS), PARAMS)
    return jax.tree.map(lambda x: x[None], out)

  mesh = parallel.data_mesh(DEVICES)
  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("data"),
                               out_specs=P("data"), check_vma=False))(grads)


@pytest.mark.slow
@pytest.mark.parametrize("method,by_hand", [
    ({"name": "powersgd", "rank": 1, "start_iter": 0},
     lambda axis: sj.error_feedback(sj.powersgd(1, start_iter=0,
                                                axis_name=axis),
                                    axis_name="data")),
    ({"name": "sign_majority_vote", "error_feedback": False},
     lambda axis: parallel.compressed_mean(
         sj.sign_majority_vote(axis_name=axis), "data")),
    ({"name": "dgc", "ratio": 0.25, "clip_norm": 0.5,
      "error_feedback": False},
     lambda axis: parallel.compressed_mean(
         sj.dgc(0.25, clip_norm=0.5, axis_name=axis), "data")),
    ({"name": "signum", "beta": 0.5, "error_feedback": False},
     lambda axis: sj.signum(0.5, axis_name=axis)),
], ids=["powersgd", "sign_majority_vote", "dgc", "signum"])
def test_the_data_axis_is_given_to_factories_that_take_one(method, by_hand):
  built = _per_device_updates(
      train.build_compressor(method, 54, 8, "data", None))
  want = _per_device_updates(by_hand("data"))
  for got, expected in zip(jax.tree.leaves(built), jax.tree.leaves(want)):
    np.testing.assert_array_equal(got, expected)
  # Without the axis the result would differ: PowerSGD and the vote refuse
  # to be averaged, DGC clips at clip_norm instead of clip_norm * sqrt(4).
  if method["name"] == "dgc":
    without = _per_device_updates(by_hand(None))
    assert not np.allclose(without["w"], built["w"])
  elif method["name"] == "signum":  # each device would step its own signs
    without = _per_device_updates(by_hand(None))
    assert all(np.array_equal(built["w"][0], w) for w in built["w"])
    assert not all(np.array_equal(without["w"][0], w) for w in without["w"])
  else:
    with pytest.raises(ValueError, match="axis_name='data'"):
      _per_device_updates(by_hand(None))


@pytest.mark.parametrize("method", [{"name": "dgc", "ratio": 0.01},
                                    {"name": "signum", "beta": 0.9}])
def test_dgc_and_signum_under_error_feedback_are_refused_at_start(tmp_path,
                                                                  method):
  config = smoke.get_config()
  config.methods = {"m": method}
  with pytest.raises(ValueError, match="config.methods.m: .*error_feedback="
                                       "False"):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.slow
def test_dgc_runs_by_config_with_exact_bytes(tmp_path):
  config = smoke.get_config()
  config.methods = {"dgc": {"name": "dgc", "ratio": 0.001,
                            "error_feedback": False, "warmup_steps": 4,
                            "optimizer": {"kwargs": {}}}}
  runs = train.train_and_evaluate(config, str(tmp_path))
  # The smoke MLP: (8*8) -> 16 -> 4, d = 1108 parameters, one global top-k;
  # warm-up densities 1/4, 1/16, 1/64, 1/256 for one step each, then 0.001.
  d = 64 * 16 + 16 + 16 * 4 + 4
  ks = [max(1, int(np.floor(d * r))) for r in
        (0.25, 0.0625, 0.015625, 0.00390625)]
  ks += [max(1, int(np.floor(d * 0.001)))] * (config.num_steps - 4)
  assert runs["dgc"][-1]["bytes_sent"] == config.num_devices * 8 * sum(ks)
  assert runs["dgc"][-1]["loss"] < runs["dgc"][0]["loss"]
