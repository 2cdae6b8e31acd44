r"""Federated simulation throughput: vectorised engine vs a loop over clients.

    python -m experiments.bench_federated.main --clients_per_round=8,16,32,64

Client updates per second (``S`` / seconds per round) of one SA-PEF round
(H local steps, error feedback + global top-1% uplink) for four engines,
same model, data and algorithm:

* ``loop``: a Python loop over the sampled clients, each calling one jitted
  function (:func:`sparsejax.federated.simulation.client_update` and its
  weighted message sum), client states kept as a list, then the server step;
* ``vmap``: :class:`sparsejax.federated.Simulation` on one device;
* ``shard_map``: the same over ``--devices`` devices (forced host devices on
  CPU), vmap over each device's clients;
* ``shard_map, lax.map``: the same, each device running its clients one
  after the other inside the round (``client_batch_size=1``).

The CNN's convolutions are :class:`sparsejax.models.PatchConv` (im2col +
matmul) by default: vmapped over per-client kernels, ``flax.linen.Conv``
becomes a grouped convolution that XLA:CPU runs slowly (``--conv=xla``
compares). All engines unroll the H local steps (the engine's default).

Prints a table (the speed-ups are over ``loop`` at the same ``S``; target:
>= 5x on CPU with 8 forced devices) and writes JSON and a PNG of the scaling
curve (``--json_out``, ``--plot_out``). The forced devices share
the machine's cores: runs with ``--devices`` = 1, 2, 4 give the device-scaling
curve.
"""

from experiments import launch

launch.force_host_devices(8)

# pylint: disable=g-import-not-at-top,wrong-import-position
import functools
import json
import os
import statistics
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj
from sparsejax import federated
from sparsejax import models
from sparsejax import training
from sparsejax.federated import aggregation
from sparsejax.federated import partition
from sparsejax.federated import simulation

FLAGS = flags.FLAGS
flags.DEFINE_list("clients_per_round", ["8", "16", "32", "64"],
                  "Clients per round S (the scaling curve).")
flags.DEFINE_integer("num_clients", 128, "Clients N.")
flags.DEFINE_integer("devices", 8, "Devices of the shard_map engine.")
flags.DEFINE_integer("local_steps", 5, "Local steps H.")
flags.DEFINE_integer("batch_size", 32, "Local batch size.")
flags.DEFINE_integer("repeats", 3, "Timed rounds after a warm-up round.")
flags.DEFINE_enum("conv", "patch", ["patch", "xla"],
                  "Convolution of the CNN: sparsejax.models.PatchConv (im2col "
                  "+ matmul) or flax.linen.Conv (XLA's convolution).")
flags.DEFINE_string("json_out", "", "Where to write the results.")
flags.DEFINE_string("plot_out", "", "Where to write a PNG of updates/s vs S.")


class SmallCNN(nn.Module):
  """conv3x3/2(8) -> conv3x3/2(16) -> dense: 9.1k params on 28x28x1."""
  num_classes: int = 10
  conv: type[nn.Module] = nn.Conv

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = nn.relu(self.conv(8, (3, 3), strides=2)(x))
    x = nn.relu(self.conv(16, (3, 3), strides=2)(x))
    return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))


def seconds_per_round(run_round):
  """Median wall time of ``run_round()`` (which blocks) after a warm-up."""
  run_round()
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    run_round()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def loop_engine(algo, clients: federated.ClientData, s: int):
  """A round as a Python loop over ``s`` clients; returns ``run_round``."""
  sim = federated.Simulation(algo, clients, s)  # its initial state and data
  data, server = sim.data, sim.state.server
  states, rows, sizes = zip(*[
      jax.tree.map(lambda a, i=i: a[i], (sim.state.clients, data.indices,
                                         data.sizes))
      for i in range(clients.num_clients)])
  states = list(states)

  @functools.partial(jax.jit, static_argnums=0)
  def one(algo, server, client, row, size, round_key, i, x, y):
    message, client, _ = simulation.client_update(
        algo, server, client, row, size, jax.random.fold_in(round_key, i), x,
        y)
    sums = aggregation.client_sums(jax.tree.map(lambda a: a[None], message),
                                   size[None].astype(jnp.float32),
                                   algo.aggregation)
    return sums, client

  add = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b))
  server_step = jax.jit(lambda server, sums: algo.server_update(
      server, aggregation.finalize(sums)))
  rng = np.random.default_rng(0)
  key = jax.random.key(0)

  def run_round():
    nonlocal server, key
    key, round_key = jax.random.split(key)
    total = None
    for i in rng.choice(clients.num_clients, s, replace=False):
      sums, states[i] = one(algo, server, states[i], rows[i], sizes[i],
                            round_key, i, data.x, data.y)
      total = sums if total is None else add(total, sums)
    server = server_step(server, total)
    jax.block_until_ready(server)

  return run_round


def simulation_engine(algo, clients, s, mesh=None, client_batch_size=None):
  sim = federated.Simulation(algo, clients, s, mesh=mesh, probe_size=0,
                             client_batch_size=client_batch_size)
  return lambda: sim.step(evaluate=False)  # returns host values: blocks


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64 * FLAGS.num_clients, 28, 28, 1)).astype(np.float32)
  y = rng.integers(0, 10, size=x.shape[0]).astype(np.int32)
  clients = federated.ClientData(
      x, y, partition.iid_partition(y, FLAGS.num_clients), 10)
  conv = models.PatchConv if FLAGS.conv == "patch" else nn.Conv
  model = federated.classifier(SmallCNN(conv=conv), x[:1])
  algo = federated.sapef(model, optax.sgd(0.05), sj.top_k(0.01, scope="global"),
                         alpha=0.85, local_steps=FLAGS.local_steps,
                         batch_size=FLAGS.batch_size)
  mesh = federated.client_mesh(FLAGS.devices)
  rows, results = [], []
  for s in map(int, FLAGS.clients_per_round):
    engines = {"loop": loop_engine(algo, clients, s),
               "vmap": simulation_engine(algo, clients, s),
               f"shard_map x{FLAGS.devices}": simulation_engine(
                   algo, clients, s, mesh),
               f"shard_map x{FLAGS.devices}, lax.map": simulation_engine(
                   algo, clients, s, mesh, client_batch_size=1)}
    seconds = {name: seconds_per_round(run) for name, run in engines.items()}
    for name, sec in seconds.items():
      results.append({"clients_per_round": s, "engine": name,
                      "seconds_per_round": sec,
                      "updates_per_second": s / sec,
                      "speedup_over_loop": seconds["loop"] / sec})
      rows.append((s, name, 1e3 * sec, s / sec, seconds["loop"] / sec))
    print(training.format_table(rows[-4:], ("S", "engine", "ms/round",
                                            "updates/s", "x loop")), flush=True)
  table = training.format_table(rows, ("S", "engine", "ms/round", "updates/s",
                                       "speed-up over loop"))
  print(table)
  if FLAGS.plot_out:
    curves = {}
    for r in results:
      curves.setdefault(r["engine"], []).append(r)
    training.plot_curves(
        curves, FLAGS.plot_out, x="clients_per_round", y="updates_per_second",
        logx=False, xlabel="clients per round S",
        ylabel="client updates / s",
        title=f"federated throughput, {jax.default_backend()}, "
              f"{os.cpu_count()} cores")
  if FLAGS.json_out:
    with open(FLAGS.json_out, "w") as f:
      json.dump({"backend": jax.default_backend(), "jax": jax.__version__,
                 "cpu_count": os.cpu_count(), "conv": FLAGS.conv,
                 "devices": FLAGS.devices, "num_clients": FLAGS.num_clients,
                 "local_steps": FLAGS.local_steps,
                 "batch_size": FLAGS.batch_size,
                 "num_params": sum(p.size for p in jax.tree.leaves(
                     jax.eval_shape(model.init, jax.random.key(0)))),
                 "results": results}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
