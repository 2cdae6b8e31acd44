"""Host and memory-mapped client stores: same rounds as the device store."""

import functools
import os

import jax
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax import federated as fed
from sparsejax.federated import client_store as client_store_lib
from sparsejax.training import Checkpointer
from sparsejax.training import ClientStoreCheckpointer
from sparsejax.training import CorruptCheckpointError
from tests.federated import problem

# Orbax leaves read coroutines of a failed restore to the garbage collector.
pytestmark = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning")

FAULTS = dict(dropout_rate=0.3, nan_clients=(2,))  # as problem.multihost_run


@functools.cache
def _random_k_ef():
  """EF with random-k: a PRNG key in every client's state."""
  return fed.ef_fedavg(problem.MODEL, optax.sgd(problem.LR),
                       sj.random_k(k=problem.TOP_K), **problem.kwargs())


ALGORITHMS = {
    "ef_topk": lambda: problem.algorithm("ef_topk"),
    "sapef": lambda: problem.algorithm("sapef", alpha=0.5,
                                       aggregation="support"),
    "ef_random_k": _random_k_ef,
}


def _sim(tmp_path, algo, store, seed=0, name="store", **options):
  nan_clients = options.pop("nan_clients", ())
  if store == "mmap":
    options["store_dir"] = str(tmp_path / name)
  return fed.Simulation(ALGORITHMS[algo](),
                        problem.clients(nan_clients=nan_clients),
                        problem.PER_ROUND, seed=seed, probe_size=0,
                        client_store=store, **options)


def _assert_rounds_equal(ra, rb, exact=True):
  for (ma, pa), (mb, pb) in zip(ra, rb, strict=True):
    for k in ("clients", "uplink_bits", "dropped", "rejected"):
      np.testing.assert_array_equal(pa[k], pb[k])
    assert ma.keys() == mb.keys()
    for k in ma:
      if exact:
        np.testing.assert_array_equal(ma[k], mb[k], err_msg=k)
      else:
        assert ma[k] == pytest.approx(mb[k], rel=1e-5, abs=1e-6, nan_ok=True), k


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_host_and_mmap_stores_match_device_store(tmp_path, algo):
  # host prefetches, mmap does not (the default on CPU).
  sims = {store: _sim(tmp_path, algo, store, **FAULTS, **options)
          for store, options in (("device", {}), ("host", {"prefetch": True}),
                                 ("mmap", {}))}
  assert sims["host"].prefetch and not sims["mmap"].prefetch
  rounds = {store: problem.run(sim, 4) for store, sim in sims.items()}
  # The faults happened: some client dropped out, client 2 was rejected.
  assert sum(m["dropped_clients"] for m, _ in rounds["device"]) > 0
  assert sum(m["rejected_clients"] for m, _ in rounds["device"]) > 0
  # host and mmap run the same executable on the same rows: bit-identical.
  _assert_rounds_equal(rounds["host"], rounds["mmap"])
  problem.assert_trees_close(sims["host"].state, sims["mmap"].state, 0, 0)
  # The device store's round is one jit (gather, round and scatter fused):
  # XLA may reassociate the aggregate's float sums (1 ulp seen), nothing else.
  _assert_rounds_equal(rounds["device"], rounds["host"], exact=False)
  problem.assert_trees_close(sims["device"].state, sims["host"].state)
  # The NaN client's update was never written to the store.
  for leaf in jax.tree.leaves(problem.to_numpy(sims["mmap"].state.clients)):
    assert np.all(np.isfinite(leaf))


@pytest.mark.slow
def test_host_store_over_a_mesh_pads_and_matches(tmp_path):
  """S = 3 over 4 devices: a padded slot (id N) reads row N-1, never writes."""
  device = _sim(tmp_path, "sapef", "device", **FAULTS)
  host = _sim(tmp_path, "sapef", "host", mesh=fed.client_mesh(4), **FAULTS)
  _assert_rounds_equal(problem.run(device, 4), problem.run(host, 4),
                       exact=False)
  problem.assert_trees_close(device.state, host.state)


@pytest.mark.slow
def test_prefetch_rereads_rows_the_round_wrote(tmp_path):
  on = _sim(tmp_path, "ef_topk", "host", prefetch=True)
  off = _sim(tmp_path, "ef_topk", "host", prefetch=False)
  rounds_on, rounds_off = problem.run(on, 6), problem.run(off, 6)
  _assert_rounds_equal(rounds_on, rounds_off)
  problem.assert_trees_close(on.state, off.state, 0, 0)
  picks = [set(p["clients"].tolist()) for _, p in rounds_on]
  # Consecutive rounds shared clients: their prefetched rows were stale.
  assert any(a & b for a, b in zip(picks, picks[1:]))


def test_mmap_store_files_hold_the_client_states(tmp_path):
  sim = _sim(tmp_path, "ef_topk", "mmap")
  store = sim.client_store
  files = store.files()
  assert len(files) == len(jax.tree.leaves(sim.state.clients))
  assert all(os.path.dirname(f) == str(tmp_path / "store") for f in files)
  assert sum(os.path.getsize(f) for f in files) == store.nbytes
  (_, per_client), = problem.run(sim, 1)
  store.flush()
  residual = sj.residual(sim.state.clients.uplink)["w"]
  on_disk = np.fromfile(
      next(f for f in files if "residual" in f and f.endswith("_w_.bin")),
      np.float32).reshape(residual.shape)
  np.testing.assert_array_equal(on_disk, residual)
  sampled = per_client["clients"]
  assert np.all(np.any(on_disk[sampled] != 0, axis=(1, 2)))
  others = np.setdiff1d(np.arange(problem.NUM_CLIENTS), sampled)
  assert not np.any(on_disk[others])


@pytest.mark.slow
@pytest.mark.parametrize("store", ["host", "mmap"])
def test_exact_resume(tmp_path, store):
  full = _sim(tmp_path, "ef_random_k", store, name="full", **FAULTS)
  problem.run(full, 4)
  # With prefetch the rows of round 3 are gathered before the save.
  first = _sim(tmp_path, "ef_random_k", store, name="first", prefetch=True,
               **FAULTS)
  problem.run(first, 2)
  with Checkpointer(tmp_path / "ckpt") as ckpt:
    ckpt.save(2, first.state)
    ckpt.wait()
    problem.run(first, 1)  # the store changes after the save
    fresh = _sim(tmp_path, "ef_random_k", store, seed=123, name="fresh",
                 **FAULTS)
    fresh.restore(ckpt.restore(2, target=fresh.state))
  assert fresh.round == 2
  list(fresh.run(4))
  problem.assert_trees_close(fresh.state, full.state, 0, 0)


@pytest.mark.slow
def test_corrupt_store_in_checkpoint_fails_loudly(tmp_path):
  sim = _sim(tmp_path, "ef_topk", "mmap")
  problem.run(sim, 1)
  with Checkpointer(tmp_path / "ckpt") as ckpt:
    ckpt.save(1, sim.state)
    ckpt.wait()
    step_dir = ckpt.step_directory(1)
    files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs
             if os.path.basename(d) == "d"]  # array data, not metadata
    data = max(files, key=os.path.getsize)  # the residuals' chunk file
    with open(data, "r+b") as f:
      f.seek(os.path.getsize(data) // 2)
      f.write(b"\xff" * 8)
    with pytest.raises(CorruptCheckpointError, match="checksum|cannot be read"):
      ckpt.restore(1, target=sim.state)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["host", "mmap"])
def test_store_checkpointer_resumes_exactly_from_snapshots(
    tmp_path, store, monkeypatch):
  """The clients go to streamed file snapshots (blocks of 2 rows here), the
  rest of the state through orbax; snapshots follow the kept steps."""
  monkeypatch.setattr(client_store_lib, "_BLOCK_BYTES", 1)
  full = _sim(tmp_path, "ef_random_k", store, name="full", **FAULTS)
  problem.run(full, 4)
  first = _sim(tmp_path, "ef_random_k", store, name="first", **FAULTS)
  with ClientStoreCheckpointer(Checkpointer(tmp_path / "ckpt", max_to_keep=2),
                               first.client_store) as ckpt:
    for step in (1, 2):
      problem.run(first, 1)
      ckpt.save(step, first.state)
    ckpt.wait()
    problem.run(first, 1)  # the store changes after the save
    ckpt.save(3, first.state)
    ckpt.wait()
    assert sorted(os.listdir(ckpt.directory)) == ["2", "3"]
    # orbax holds no client arrays: the snapshot is the only copy.
    assert ckpt.checkpointer.restore(2).get("clients") in ((), [], None, {})
    fresh = _sim(tmp_path, "ef_random_k", store, seed=123, name="fresh",
                 **FAULTS)
    fresh_ckpt = ClientStoreCheckpointer(ckpt.checkpointer, fresh.client_store)
    fresh.restore(fresh_ckpt.restore(2, target=fresh.state))
  assert fresh.round == 2
  list(fresh.run(4))
  problem.assert_trees_close(fresh.state, full.state, 0, 0)


def _snapshot(tmp_path):
  sim = _sim(tmp_path, "ef_random_k", "mmap")
  problem.run(sim, 1)
  sim.client_store.save_files(str(tmp_path / "snap"))
  return sim, tmp_path / "snap"


def test_store_snapshot_damage_fails_loudly(tmp_path):
  sim, snap = _snapshot(tmp_path)
  store = sim.client_store
  biggest = max(os.listdir(snap), key=lambda f: os.path.getsize(snap / f))
  with open(snap / biggest, "r+b") as f:
    f.seek(os.path.getsize(snap / biggest) // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0xFF]))
  with pytest.raises(fed.CorruptStoreError, match=rf"{biggest} fails its CRC"):
    store.load_files(str(snap))
  with open(snap / biggest, "r+b") as f:
    f.truncate(8)
  with pytest.raises(fed.CorruptStoreError, match=r"has 8 bytes, expected"):
    store.load_files(str(snap))
  os.remove(snap / client_store_lib.MANIFEST)
  with pytest.raises(fed.CorruptStoreError, match=r"cannot read manifest"):
    store.load_files(str(snap))


def test_store_snapshot_of_another_population_is_refused(tmp_path):
  _, snap = _snapshot(tmp_path)
  other = fed.Simulation(ALGORITHMS["ef_random_k"](), problem.clients(
      num_clients=problem.NUM_CLIENTS + 1), problem.PER_ROUND, probe_size=0,
      client_store="host")
  with pytest.raises(fed.CorruptStoreError, match=r"another N or model"):
    other.client_store.load_files(str(snap))
  with pytest.raises(fed.CorruptStoreError, match=r"no client-store snapshot"):
    with Checkpointer(tmp_path / "ckpt") as inner:
      inner.save(1, other.state._replace(clients=()))
      ClientStoreCheckpointer(inner, other.client_store).restore(
          target=other.state)


def test_store_checkpointer_needs_a_host_store(tmp_path):
  with pytest.raises(TypeError, match=r"store must be a HostClientStore"):
    ClientStoreCheckpointer(Checkpointer(tmp_path), None)


def test_store_load_rejects_other_shapes(tmp_path):
  sim = _sim(tmp_path, "ef_topk", "host")
  state = sim.state
  clients = jax.tree.map(lambda a: a[:-1], state.clients)
  with pytest.raises(ValueError, match=r"clients.*residual.*store holds"):
    sim.restore(state._replace(clients=clients))


def test_bad_store_arguments_raise(tmp_path):
  algo, data = problem.algorithm("fedavg"), problem.clients()
  with pytest.raises(ValueError, match="client_store must be one of"):
    fed.Simulation(algo, data, 2, client_store="disk")
  with pytest.raises(ValueError, match="store_dir is required"):
    fed.Simulation(algo, data, 2, client_store="mmap")
  with pytest.raises(ValueError, match="store_dir"):
    fed.Simulation(algo, data, 2, client_store="host", store_dir=str(tmp_path))
