r"""Benchmark of sparsejax's selection kernels against the usual alternatives.

Times (median of ``--repeats`` calls after one warm-up call, with
``block_until_ready``) exact top-k, blockwise top-k, threshold selection and
cost-weighted selection against ``jax.lax.top_k(abs(x), k)``,
``jax.lax.approx_max_k``, numpy ``argpartition`` (with and without sorting the
k winners), ``torch.topk`` when torch is importable, and one read of the
vector (``sum(abs(x))``). Prints a table with speed-ups relative to
``lax.top_k`` and to ``argpartition`` (``> 1`` means faster than it), the time
in reads of the vector, and the compiled temporary memory of each jitted
function, and writes JSON. ``--baselines`` picks the alternatives (numpy
takes seconds per call at N = 268M); ``torch.topk`` runs on the GPU when
jax's backend is a GPU and torch sees one.

  python -m experiments.bench_select.main --sizes=16777216 --ratios=0.001,0.01
"""

from __future__ import annotations

import datetime
import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import kernels

_SIZES = flags.DEFINE_list("sizes", ["16777216"], "Vector lengths N.")
_RATIOS = flags.DEFINE_list("ratios", ["0.001", "0.01"], "k / N values.")
_DTYPE = flags.DEFINE_enum("dtype", "float32",
                           ["float32", "bfloat16", "float16"], "Input dtype.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per method.")
_BLOCK = flags.DEFINE_integer("block_size", 1024, "Blockwise top-k block.")
_JSON_OUT = flags.DEFINE_string("json_out", "", "Write results here (JSON).")
_CHECK = flags.DEFINE_bool("check", True,
                           "Check top_k_select against its reference.")
BASELINES = ("lax_top_k", "approx_max_k", "argpartition", "torch")
_BASELINES = flags.DEFINE_multi_enum(
    "baselines", list(BASELINES), BASELINES,
    "Alternatives to time (torch is skipped if it is not importable).")


def _median_ms(fn, repeats: int) -> float:
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times) * 1e3)


def _temp_mb(jitted, *args) -> float | None:
  try:
    analysis = jitted.lower(*args).compile().memory_analysis()
    return analysis.temp_size_in_bytes / 2**20
  except Exception:  # pylint: disable=broad-except
    return None


def _torch_topk(x_np, k):
  """A blocking ``torch.topk(|x|, k)`` call on jax's kind of device, or None."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  xt = torch.from_numpy(x_np)
  if jax.default_backend() == "gpu" and torch.cuda.is_available():
    xt = xt.cuda()

    def call():
      out = torch.topk(xt.abs(), k)
      torch.cuda.synchronize()
      return out
    return call
  return lambda: torch.topk(xt.abs(), k)


def bench_one(n: int, ratio: float, dtype, repeats: int, block: int,
              baselines=BASELINES):
  """Rows of (method, ms, temp MB, note) for one (N, k/N)."""
  k = kernels.k_from_ratio(n, ratio)
  x = jax.random.normal(jax.random.key(0), (n,), jnp.float32).astype(dtype)
  x_np = np.asarray(x.astype(jnp.float32))
  rng = np.random.default_rng(0)
  cost = jnp.asarray(rng.integers(1, 5, n).astype(np.float32))
  thr = float(jnp.sort(jnp.abs(x.astype(jnp.float32)))[n - k])
  rows = []

  def add(name, jitted, args, note=""):
    ms = _median_ms(lambda: jitted(*args), repeats)
    rows.append({"method": name, "ms": ms, "temp_mb": _temp_mb(jitted, *args),
                 "note": note})

  add("one read: sum(abs(x))", jax.jit(lambda v: jnp.sum(jnp.abs(v))), (x,))
  if "lax_top_k" in baselines:
    add("jax.lax.top_k(abs(x), k)",
        jax.jit(lambda v: jax.lax.top_k(jnp.abs(v), k)), (x,))
  if "approx_max_k" in baselines:
    add("jax.lax.approx_max_k",
        jax.jit(lambda v: jax.lax.approx_max_k(jnp.abs(v), k)), (x,))

  def argpartition():
    idx = np.argpartition(-np.abs(x_np), k - 1)[:k]
    return x_np[idx], idx

  def argpartition_sorted():
    idx = np.argpartition(-np.abs(x_np), k - 1)[:k]
    idx = idx[np.argsort(-np.abs(x_np[idx]), kind="stable")]
    return x_np[idx], idx

  if "argpartition" in baselines:
    rows.append({"method": "numpy argpartition (unsorted)",
                 "ms": _median_ms(argpartition, repeats), "temp_mb": None,
                 "note": ""})
    rows.append({"method": "numpy argpartition + sort of k",
                 "ms": _median_ms(argpartition_sorted, repeats),
                 "temp_mb": None, "note": ""})
  torch_topk = _torch_topk(x_np, k) if "torch" in baselines else None
  if torch_topk is not None:
    rows.append({"method": "torch.topk", "ms": _median_ms(torch_topk, repeats),
                 "temp_mb": None, "note": ""})
  top = jax.jit(lambda v: kernels.top_k_select(v, k))
  add("sparsejax top_k_select (exact)", top, (x,))
  if _CHECK.value:
    got = top(x)
    want = kernels.top_k_select_reference(x, k)
    assert np.array_equal(np.asarray(got[1]), np.asarray(want[1])), "top-k"
  add(f"sparsejax blockwise_top_k_select B={block}",
      jax.jit(lambda v: kernels.blockwise_top_k_select(v, k, block)), (x,))
  cnt = kernels.threshold_select(x, thr, 2 * k)[2]
  add("sparsejax threshold_select (max_count=2k)",
      jax.jit(lambda v, t: kernels.threshold_select(v, t, 2 * k)),
      (x, jnp.float32(thr)), f"count={int(cnt)}")
  cw = jax.jit(lambda v, cst, b: kernels.cost_weighted_select(
      v, cst, b, max_count=k))
  # Budget k/2 with costs 1..4: the greedy prefix ends inside the buffer.
  budget = jnp.float32(k / 2)
  count = int(cw(x, cost, budget)[2])
  add("sparsejax cost_weighted_select (max_count=k)", cw,
      (x, cost, budget), f"costs 1..4, budget=k/2, count={count}")
  # Budget 4k: all k fit, so the true count comes from the overflow branch.
  budget = jnp.float32(4 * k)
  count = int(cw(x, cost, budget)[2])
  add("sparsejax cost_weighted_select, overflow branch", cw,
      (x, cost, budget), f"costs 1..4, budget=4k, count={count}")
  # The jitted lambdas above call the public (jitted) functions; temp_mb is
  # XLA's temporary buffer size of the compiled lambda.
  def ms_of(method):
    return next((r["ms"] for r in rows if r["method"] == method), None)

  base_lax = ms_of("jax.lax.top_k(abs(x), k)")
  base_np = ms_of("numpy argpartition (unsorted)")
  read = ms_of("one read: sum(abs(x))")
  for r in rows:
    r["vs_lax_top_k"] = base_lax / r["ms"] if base_lax else None
    r["vs_argpartition"] = base_np / r["ms"] if base_np else None
    r["reads"] = r["ms"] / read
  return k, rows


def _table(n, ratio, k, rows) -> str:
  lines = [f"\nN = {n}, k/N = {ratio} (k = {k}), input {x_dtype_name()}",
           "| method | ms | speed-up vs lax.top_k | speed-up vs argpartition "
           "| reads of x | XLA temp MB | note |",
           "|---|---|---|---|---|---|---|"]

  def fmt(v, spec, suffix=""):
    return "" if v is None else format(v, spec) + suffix

  for r in rows:
    lines.append(
        f"| {r['method']} | {r['ms']:.2f}"
        f" | {fmt(r['vs_lax_top_k'], '.2f', 'x')}"
        f" | {fmt(r['vs_argpartition'], '.2f', 'x')} | {r['reads']:.1f}"
        f" | {fmt(r['temp_mb'], '.1f')} | {r['note']} |")
  return "\n".join(lines)


def x_dtype_name() -> str:
  return _DTYPE.value


def main(argv):
  del argv
  dtype = jnp.dtype(_DTYPE.value)
  results = {"date": datetime.date.today().isoformat(),
             "jax": jax.__version__, "backend": jax.default_backend(),
             "device": str(jax.devices()[0]), "dtype": _DTYPE.value,
             "repeats": _REPEATS.value, "runs": []}
  for n in (int(s) for s in _SIZES.value):
    for ratio in (float(s) for s in _RATIOS.value):
      k, rows = bench_one(n, ratio, dtype, _REPEATS.value, _BLOCK.value,
                          _BASELINES.value)
      print(_table(n, ratio, k, rows), flush=True)
      results["runs"].append({"n": n, "ratio": ratio, "k": k, "rows": rows})
      if _JSON_OUT.value:  # after every run: a killed run keeps its figures
        with open(_JSON_OUT.value, "w") as f:
          json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
