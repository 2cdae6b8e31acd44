"""Every compressor, alone, under error feedback and EF21, on explicitly sharded
params (a mesh with ``AxisType.Explicit``: the sharding is in the type).

As optax's own sharding tests: the state's types (shardings included) are
the same after ``init``, after ``jit(init)`` and after an update; the outputs
and the residual have the params' shardings; the values are those of the
unsharded run. The 8 host devices come from tests/conftest.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import sparsejax as sj
import compressor_cases as cases

CASES = cases.params()

# Leaf -> (shape, spec): rows sharded, columns sharded, a replicated vector.
LAYOUT = {"b": ((5,), P()), "v": ((4, 8), P(None, "x")),
          "w": ((8, 6), P("x", None))}


@pytest.fixture(scope="module")
def mesh():
  if jax.device_count() < 8:
    pytest.skip("needs the 8 forced host devices of tests/conftest.py")
  return jax.make_mesh((8,), ("x",), axis_types=(AxisType.Explicit,))


def _tree(seed):
  """Distinct magnitudes, no zeros: every selection is unambiguous."""
  r = np.random.default_rng(seed)
  n = sum(int(np.prod(shape)) for shape, _ in LAYOUT.values())
  flat = r.permutation(np.arange(1, n + 1)) / 16.0 * r.choice([-1, 1], n)
  out, i = {}, 0
  for key, (shape, _) in LAYOUT.items():
    size = int(np.prod(shape))
    out[key] = jnp.asarray(flat[i:i + size].reshape(shape), jnp.float32)
    i += size
  return out


def _sharded(tree, mesh):
  return {k: jax.device_put(x, NamedSharding(mesh, LAYOUT[k][1]))
          for k, x in tree.items()}


def _types(tree):
  return jax.tree.map(jax.typeof, tree)


@pytest.mark.slow
@pytest.mark.parametrize("name,ef", CASES)
def test_explicit_sharding_is_kept(name, ef, mesh):
  tx = cases.make(name, ef)
  g1, g2 = _tree(1), _tree(2)
  # The unsharded run.
  ref_update = jax.jit(tx.update)
  ref_state = tx.init(_tree(0))
  ref1, ref_state = ref_update(g1, ref_state)
  ref2, ref_state = ref_update(g2, ref_state)
  with jax.set_mesh(mesh):
    params = _sharded(_tree(0), mesh)
    assert str(jax.typeof(params["v"])) == "float32[4,8@x]"
    state0 = tx.init(params)
    assert _types(jax.jit(tx.init)(params)) == _types(state0)
    update = jax.jit(tx.update)
    out1, state1 = update(_sharded(g1, mesh), state0, params)
    out2, state2 = update(_sharded(g2, mesh), state1, params)
  # Types (with shardings) do not drift: no recompilation, same layout.
  assert _types(state1) == _types(state0) == _types(state2)
  for out in (out1, out2):
    assert _types(out) == _types(params)
  if ef:
    assert _types(cases.memory(state2)) == jax.tree.map(
        lambda p: jax.typeof(p.astype(jnp.float32)), params)
  for out, ref in ((out1, ref1), (out2, ref2)):
    for key in LAYOUT:
      np.testing.assert_array_equal(np.asarray(out[key]),
                                    np.asarray(ref[key]), err_msg=key)
  assert float(sj.comm_stats(state2)["bits_sent"]) == float(
      sj.comm_stats(ref_state)["bits_sent"])


def test_eager_update_on_sharded_params(mesh):
  """Outside jit too (optax's test_state_sharding_type_init_match_update)."""
  tx = sj.error_feedback(sj.top_k(k=3, scope="global"))
  with jax.set_mesh(mesh):
    params = _sharded(_tree(0), mesh)
    state0 = tx.init(params)
    out, state1 = tx.update(_sharded(_tree(1), mesh), state0, params)
  assert _types(state1) == _types(state0)
  assert _types(out) == _types(params)
  ref, _ = tx.update(_tree(1), tx.init(_tree(0)))
  for key in LAYOUT:
    np.testing.assert_array_equal(np.asarray(out[key]), np.asarray(ref[key]))
