"""PatchConv (im2col + matmul) against flax.linen.Conv on random inputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import models

CASES = [  # (input shape, features, kernel, strides, padding)
    ((3, 28, 28, 1), 8, (3, 3), 2, "SAME"),
    ((2, 14, 14, 8), 16, (3, 3), 2, "SAME"),
    ((2, 12, 12, 2), 5, (5, 5), 1, "SAME"),
    ((2, 9, 7, 3), 4, (3, 2), (2, 1), "VALID"),
    ((1, 8, 8, 2), 3, (4, 4), 3, "SAME"),   # asymmetric SAME padding
    ((2, 5, 6, 1), 2, (1, 1), 1, "VALID"),
]


@pytest.mark.slow
@pytest.mark.parametrize("shape,features,kernel,strides,padding", CASES)
def test_patch_conv_equals_flax_conv(shape, features, kernel, strides,
                                     padding):
  x = jax.random.normal(jax.random.key(1), shape)
  ref = nn.Conv(features, kernel, strides=strides, padding=padding)
  conv = models.PatchConv(features, kernel, strides=strides, padding=padding)
  variables = jax.jit(ref.init)(jax.random.key(0), x)
  # Same parameter names, shapes and initial values: checkpoints carry over.
  jax.tree.map(np.testing.assert_array_equal,
               jax.jit(conv.init)(jax.random.key(0), x), variables)
  variables = jax.tree.map(  # a random bias too
      lambda p: jax.random.normal(jax.random.key(2), p.shape), variables)
  # Jitted: eager flax on CPU compiles op by op.
  np.testing.assert_allclose(jax.jit(conv.apply)(variables, x),
                             jax.jit(ref.apply)(variables, x),
                             rtol=1e-5, atol=1e-5)
  grad = lambda m: jax.jit(jax.grad(
      lambda v, x: jnp.sum(jnp.sin(m.apply(v, x))), argnums=(0, 1)))(
          variables, x)
  for a, b in zip(jax.tree.leaves(grad(conv)), jax.tree.leaves(grad(ref))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_vmap_over_per_model_kernels_equals_each_model():
  conv = models.PatchConv(4, (3, 3), strides=2)
  x = jax.random.normal(jax.random.key(1), (5, 2, 10, 10, 3))  # 5 models
  variables = jax.jit(jax.vmap(conv.init))(
      jax.random.split(jax.random.key(0), 5), x)
  out = jax.jit(jax.vmap(conv.apply))(variables, x)
  apply = jax.jit(conv.apply)
  for i in range(5):
    np.testing.assert_allclose(
        out[i], apply(jax.tree.map(lambda v, i=i: v[i], variables), x[i]),
        rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_patch_conv_dtype_and_no_bias():
  x = jnp.ones((1, 6, 6, 2), jnp.bfloat16)
  conv = models.PatchConv(3, use_bias=False, dtype=jnp.bfloat16)
  variables = conv.init(jax.random.key(0), x)
  assert set(variables["params"]) == {"kernel"}
  assert variables["params"]["kernel"].dtype == jnp.float32
  assert conv.apply(variables, x).dtype == jnp.bfloat16


def test_patch_conv_bad_input_raises():
  with pytest.raises(ValueError, match="B, H, W, C"):
    models.PatchConv(2).init(jax.random.key(0), jnp.ones((6, 6, 2)))
  with pytest.raises(ValueError, match="padding"):
    models.PatchConv(2, padding="CIRCULAR").init(jax.random.key(0),
                                                  jnp.ones((1, 6, 6, 2)))


@pytest.mark.slow
def test_leaf_cnn_with_patch_conv_is_the_same_function():
  x = jax.random.normal(jax.random.key(1), (2, 28, 28, 1))
  ref = models.LeafCNN(num_classes=5, hidden=8)
  patched = models.LeafCNN(num_classes=5, hidden=8, patch_conv=True)
  variables = jax.jit(ref.init)(jax.random.key(0), x)
  jax.tree.map(np.testing.assert_array_equal,
               jax.jit(patched.init)(jax.random.key(0), x), variables)
  np.testing.assert_allclose(jax.jit(patched.apply)(variables, x),
                             jax.jit(ref.apply)(variables, x),
                             rtol=1e-4, atol=1e-5)
