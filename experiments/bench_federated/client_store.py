r"""Client stores at scale: round time and peak memory per store and ``N``.

    nice -n 10 python -m experiments.bench_federated.client_store \
        --out=/tmp/client_store.json

EF-FedAvg (global top-1% uplink, a float32 residual per client) on an MLP
784-1024-256-10 (1.07M parameters) over ``N`` clients with 4 generated
examples each (non-IID: each client holds 2 of the 10 classes), 10 clients
per round, ``--local_steps`` steps of batch 4. One subprocess per run
(``--runs``: ``store:N``, ``store:N:prefetch``, ``store:N:noprefetch`` or
``store:N:snapshot``), so that each peak is its own. ``:snapshot`` also
times a checkpoint of the store after the rounds
(``HostClientStore.save_files`` into ``--store_dir``, then ``load_files``
back, CRC-checked), the peak then including it. Each reports the round time (median of the rounds after the first,
which compiles), the time to build the simulation, the peak host memory
(``VmHWM``: resident pages, file-backed ones of a memory map included), the
device memory (``memory_stats()``; n/a on CPU, where the device store lives
in host memory), the store's logical size and, for ``mmap``, its size on disk
(allocated blocks: the files are sparse until clients are written). A run
that fails (e.g. a host store larger than RAM under heuristic overcommit) is
recorded with its error. Results: a table and JSON (``--out``).
"""

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import numpy as np
import optax

import sparsejax as sj
from sparsejax import federated
from sparsejax import training

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", ["device:1000", "host:1000", "mmap:1000",
                           "mmap:10000", "mmap:10000:prefetch", "host:10000"],
                  "store:N[:prefetch|:noprefetch] per subprocess, in this "
                  "order (default: the engine's choice).")
flags.DEFINE_integer("rounds", 6, "Rounds per run (the first compiles).")
flags.DEFINE_integer("clients_per_round", 10, "Clients per round S.")
flags.DEFINE_integer("local_steps", 2, "Local steps H.")
flags.DEFINE_integer("examples_per_client", 4, "Examples (and batch size).")
flags.DEFINE_string("store_dir", "/tmp/sparsejax_client_store_bench",
                    "Parent directory of the mmap stores (removed after).")
flags.DEFINE_string("out", "", "Where to write the JSON results.")
flags.DEFINE_string("child", "", "Internal: run one store:N and print JSON.")

CLASSES = 10


class MLP(nn.Module):
  """784-1024-256-10: 1,068,810 parameters."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = nn.relu(nn.Dense(1024)(x))
    x = nn.relu(nn.Dense(256)(x))
    return nn.Dense(CLASSES)(x)


def synthetic_clients(num_clients: int, per_client: int,
                      seed: int = 0) -> federated.ClientData:
  """Gaussian class clusters in 784-d; client ``i`` holds 2 classes."""
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(CLASSES, 784)).astype(np.float32)
  classes = (np.arange(num_clients)[:, None]
             + np.array([0, CLASSES // 2])) % CLASSES
  y = classes[:, np.arange(per_client) % 2].reshape(-1).astype(np.int32)
  x = means[y] + rng.normal(size=(y.size, 784)).astype(np.float32)
  parts = np.arange(y.size).reshape(num_clients, per_client)
  return federated.ClientData(x, y, list(parts), CLASSES)


def _peak_host_bytes() -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) * 1024
  raise RuntimeError("no VmHWM in /proc/self/status")


def _device_bytes():
  stats = jax.devices()[0].memory_stats()
  if not stats:
    return None
  return {k: stats.get(k) for k in ("peak_bytes_in_use", "bytes_in_use")}


def _disk_bytes(files) -> int:
  return sum(os.stat(f).st_blocks * 512 for f in files)


def run_one(spec: str) -> dict:
  """One ``store:N[:prefetch|:noprefetch]`` run in this process."""
  store, n, *rest = spec.split(":")
  snapshot = rest == ["snapshot"]
  n, prefetch = int(n), {(): None, ("prefetch",): True, ("snapshot",): None,
                         ("noprefetch",): False}[tuple(rest)]
  store_dir = (os.path.join(FLAGS.store_dir, spec.replace(":", "_"))
               if store == "mmap" else None)
  clients = synthetic_clients(n, FLAGS.examples_per_client)
  model = federated.classifier(MLP(), clients.x[:1])
  algo = federated.ef_fedavg(model, optax.sgd(0.05),
                             sj.top_k(0.01, scope="global"),
                             local_steps=FLAGS.local_steps,
                             batch_size=FLAGS.examples_per_client)
  result = {"run": spec, "store": store, "num_clients": n}
  start = time.perf_counter()
  try:
    sim = federated.Simulation(algo, clients, FLAGS.clients_per_round,
                               probe_size=0, client_store=store,
                               store_dir=store_dir, prefetch=prefetch)
    result["build_seconds"] = time.perf_counter() - start
    result["prefetch"] = sim.prefetch
    times = []
    for _ in range(FLAGS.rounds):
      start = time.perf_counter()
      metrics, _ = sim.step(evaluate=False)  # returns host values: blocks
      times.append(time.perf_counter() - start)
    result.update(
        num_params=sum(p.size for p in jax.tree.leaves(sim.params)),
        first_round_seconds=times[0],
        round_seconds=statistics.median(times[1:]),
        round_seconds_all=times, train_loss=metrics["train_loss"],
        store_bytes=sum(a.nbytes for a in jax.tree.leaves(sim.state.clients)))
    if sim.client_store is not None and sim.client_store.files():
      sim.client_store.flush()
      result["disk_bytes"] = _disk_bytes(sim.client_store.files())
    if snapshot:
      result.update(_time_snapshot(sim.client_store, store_dir + "_snapshot"))
  except (MemoryError, ValueError, RuntimeError) as e:  # recorded, not fatal
    result["error"] = f"{type(e).__name__}: {e}"[:300]
  finally:
    if store_dir is not None:
      shutil.rmtree(store_dir, ignore_errors=True)
  result["peak_host_bytes"] = _peak_host_bytes()
  result["device_memory"] = _device_bytes()
  return result


def _time_snapshot(store, directory) -> dict:
  """Seconds to save the store's snapshot and to load (and check) it."""
  try:
    start = time.perf_counter()
    store.save_files(directory)
    saved = time.perf_counter() - start
    size = sum(os.path.getsize(os.path.join(directory, f))
               for f in os.listdir(directory))
    start = time.perf_counter()
    store.load_files(directory)
    return {"snapshot_save_seconds": saved, "snapshot_bytes": size,
            "snapshot_load_seconds": time.perf_counter() - start}
  finally:
    shutil.rmtree(directory, ignore_errors=True)


def _gib(b):
  return "n/a" if b is None else f"{b / 2**30:.2f}"


def results_table(results) -> str:
  """The markdown table of the runs' results (also from ``--out``'s JSON)."""
  rows = [(r["run"], r.get("num_params", ""),
           f"{1e3 * r['round_seconds']:.0f}" if "round_seconds" in r else "",
           f"{r['build_seconds']:.1f}" if "build_seconds" in r else "",
           _gib(r.get("peak_host_bytes")),
           _gib((r.get("device_memory") or {}).get("peak_bytes_in_use")),
           _gib(r.get("store_bytes")), _gib(r.get("disk_bytes")),
           *(f"{r[k]:.1f}" if k in r else "" for k in
             ("snapshot_save_seconds", "snapshot_load_seconds")),
           r.get("error", "")[:60]) for r in results]
  return training.format_table(rows, (
      "run", "params", "ms/round", "build s", "peak host GiB",
      "peak device GiB", "store GiB", "on disk GiB", "snapshot save s",
      "load s", "error"))


def main(argv):
  del argv
  if FLAGS.child:
    print(json.dumps(run_one(FLAGS.child)), flush=True)
    return
  results = []
  for spec in FLAGS.runs:
    args = [sys.executable, "-m", "experiments.bench_federated.client_store",
            f"--child={spec}"] + [
                f"--{k}={getattr(FLAGS, k)}" for k in
                ("rounds", "clients_per_round", "local_steps",
                 "examples_per_client", "store_dir")]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
      result = {"run": spec, "error": f"exit {proc.returncode}: "
                                      f"{proc.stderr.strip()[-300:]}"}
    else:
      result = json.loads(lines[-1])
    results.append(result)
    print(json.dumps(result), flush=True)
  print(results_table(results))
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump({"backend": jax.default_backend(), "jax": jax.__version__,
                 "cpu_count": os.cpu_count(),
                 "clients_per_round": FLAGS.clients_per_round,
                 "local_steps": FLAGS.local_steps,
                 "examples_per_client": FLAGS.examples_per_client,
                 "results": results}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
