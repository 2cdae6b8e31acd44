r"""Compressed data-parallel step time against the dense step, same run.

    python -m experiments.bench_step.main --model=resnet9 --devices=8

Both steps are ``parallel.make_train_step`` on the same model, mesh and
batch; ``dense`` averages gradients with one all-reduce (``no_compression``),
``compressed`` runs ``--compressor``: error feedback + global top-k and the
sparse all-gather (default), blockwise top-k, the volume-matched hard
threshold, PowerSGD of ``--rank`` under error feedback (two all-reduces of
its factors), or DGC (momentum correction, top-k of its accumulator, the
sparse all-gather; followed by SGD without momentum).
Prints the median step times and their ratio (target: <= 1.15 on GPU for a
ResNet-18-sized model) and writes JSON.
"""

from experiments import launch

launch.force_host_devices(8)

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import statistics
import time

from absl import app
from absl import flags
import jax
import numpy as np
import optax

import sparsejax as sj
from sparsejax import models
from sparsejax import parallel
from sparsejax import training

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "resnet9", "Model name (sparsejax.models).")
flags.DEFINE_integer("width", 16, "Width of the ResNets.")
flags.DEFINE_integer("devices", 8, "Data-parallel devices.")
flags.DEFINE_integer("batch_size", 64, "Global batch size.")
flags.DEFINE_float("ratio", 0.001, "Top-k ratio of the compressed step.")
flags.DEFINE_enum("compressor", "top_k",
                  ["top_k", "blockwise_top_k", "hard_threshold", "powersgd",
                   "dgc"], "The compressed step's compressor.")
flags.DEFINE_integer("rank", 2, "PowerSGD's rank.")
flags.DEFINE_integer("repeats", 10, "Timed steps after warm-up.")
flags.DEFINE_string("json_out", "", "Where to write the results.")


def aggregation(num_params):
  """The compressed step's transformation, averaging over ``"data"``."""
  if FLAGS.compressor == "dgc":
    return sj.dgc(FLAGS.ratio, num_workers=FLAGS.devices, axis_name="data")
  if FLAGS.compressor == "powersgd":
    c = sj.powersgd(FLAGS.rank, start_iter=0, axis_name="data")
  elif FLAGS.compressor == "hard_threshold":
    k = max(1, int(FLAGS.ratio * num_params))
    c = sj.hard_threshold(sj.volume_matched_threshold(k))
  elif FLAGS.compressor == "blockwise_top_k":
    c = sj.blockwise_top_k(FLAGS.ratio)
  else:
    c = sj.top_k(FLAGS.ratio, scope="global")
  return sj.error_feedback(c, axis_name="data")


def time_step(step, state, batch):
  params, model_state, opt_state = state
  times = []
  for i in range(FLAGS.repeats + 2):
    start = time.perf_counter()
    params, model_state, opt_state, metrics = step(params, model_state,
                                                   opt_state, batch)
    jax.block_until_ready((params, opt_state, metrics))
    if i >= 2:  # warm-up: compilation and first run
      times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  mesh = parallel.data_mesh(FLAGS.devices)
  kwargs = {"width": FLAGS.width, "norm": "group"} if "resnet" in FLAGS.model \
      else {}
  model = models.create_model(FLAGS.model, 10, **kwargs)
  x = np.random.default_rng(0).normal(
      size=(FLAGS.batch_size, 32, 32, 3)).astype(np.float32)
  y = np.arange(FLAGS.batch_size, dtype=np.int32) % 10
  params, model_state = training.split_variables(
      models.init_variables(model, jax.random.key(0), x[:1]))
  num_params = sum(p.size for p in jax.tree.leaves(params))
  loss_fn = training.classification_loss(model)
  transforms = {
      "dense": parallel.compressed_mean(sj.no_compression(), "data"),
      "compressed": aggregation(num_params),
  }
  results = {"model": FLAGS.model, "num_params": num_params,
             "devices": FLAGS.devices, "batch_size": FLAGS.batch_size,
             "compressor": FLAGS.compressor, "ratio": FLAGS.ratio,
             "rank": FLAGS.rank,
             "backend": jax.default_backend(),
             "device_kind": jax.devices()[0].device_kind,
             "jax": jax.__version__}
  for name, aggregate in transforms.items():
    momentum = None if (name, FLAGS.compressor) == ("compressed", "dgc") else 0.9
    tx = optax.chain(aggregate, optax.sgd(0.01, momentum=momentum))
    state = (jax.device_put(params, parallel.replicated(mesh)), model_state,
             parallel.init_opt_state(tx, params, mesh))
    step = parallel.make_train_step(loss_fn, tx, mesh, donate=False)
    results[f"{name}_ms"] = 1e3 * time_step(step, state, (x, y))
  results["ratio_compressed_over_dense"] = (results["compressed_ms"] /
                                            results["dense_ms"])
  print(json.dumps(results, indent=1))
  if FLAGS.json_out:
    with open(FLAGS.json_out, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
