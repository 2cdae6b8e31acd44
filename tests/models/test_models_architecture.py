"""Model shapes, parameter counts, dtype policy and the model registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import models


def _abstract(model, x):
  """Variables and output shapes without compiling anything."""
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  out = jax.eval_shape(model.apply, variables, x)
  return variables, out


X28 = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
X32 = jax.ShapeDtypeStruct((3, 32, 32, 3), jnp.float32)
TOKENS = jax.ShapeDtypeStruct((3, 20), jnp.int32)


@pytest.mark.parametrize("name,kwargs,x,classes,num_params", [
    # McMahan et al.'s MNIST 2NN: 784*200+200 + 200*200+200 + 200*10+10.
    ("mlp", {}, X28, 10, 199_210),
    ("leaf_cnn", {}, X28, 62, 6_603_710),
    # conv 5x5x3x8, conv 5x5x8x16, dense (8*8*16)x64, head 64x10, with biases.
    ("leaf_cnn", {"features": (8, 16), "hidden": 64}, X32, 10,
     608 + 3216 + 65_600 + 650),
    ("resnet9", {}, X32, 10, 6_573_130),  # Page's ResNet-9
    ("resnet18", {}, X32, 10, 11_173_962),  # CIFAR ResNet-18 (Kuang Liu's)
    ("resnet18", {"norm": "group"}, X32, 100, 11_220_132),
    ("resnet9", {"width": 16, "norm": "none"}, X32, 10, None),
    ("text_bag", {"vocab_size": 1000}, TOKENS, 4, 1000 * 64 + 64 * 64 + 64 + 64 * 4 + 4),
    ("text_transformer", {"vocab_size": 1000, "num_layers": 2}, TOKENS, 4, None),
])
def test_output_shape_and_param_count(name, kwargs, x, classes, num_params):
  model = models.create_model(name, classes, **kwargs)
  variables, out = _abstract(model, x)
  assert out.shape == (3, classes) and out.dtype == jnp.float32
  if num_params is not None:
    assert models.count_params(variables["params"]) == num_params


def test_leaf_cnn_matches_leaf_layer_by_layer():
  """LEAF's FEMNIST CNN, counted from its layer definition."""
  conv1 = 5 * 5 * 1 * 32 + 32
  conv2 = 5 * 5 * 32 * 64 + 64
  dense1 = (7 * 7 * 64) * 2048 + 2048
  dense2 = 2048 * 62 + 62
  variables, _ = _abstract(models.LeafCNN(), X28)
  counts = {k: models.count_params(v) for k, v in variables["params"].items()}
  assert counts == {"conv_0": conv1, "conv_1": conv2, "dense_0": dense1, "head": dense2}
  assert sum(counts.values()) == 6_603_710


@pytest.mark.slow
def test_batch_stats_only_with_batch_norm():
  for norm, has_stats in (("batch", True), ("group", False), ("none", False)):
    for cls in (models.ResNet9, models.ResNet18):
      variables, _ = _abstract(cls(norm=norm), X32)
      assert ("batch_stats" in variables) == has_stats, (cls, norm)
  with pytest.raises(ValueError, match="norm"):
    _abstract(models.ResNet9(norm="layer"), X32)


@pytest.mark.slow
@pytest.mark.parametrize("model,x", [
    (models.MLP(dtype=jnp.bfloat16), X28),
    (models.LeafCNN(dtype=jnp.bfloat16), X28),
    (models.ResNet9(width=8, dtype=jnp.bfloat16), X32),
    (models.ResNet18(width=8, norm="group", dtype=jnp.bfloat16), X32),
    (models.TextClassifier(100, kind="transformer", dtype=jnp.bfloat16), TOKENS),
])
def test_bf16_compute_keeps_fp32_params(model, x):
  variables, out = _abstract(model, x)
  dtypes = {leaf.dtype for leaf in jax.tree.leaves(variables)}
  assert dtypes == {jnp.dtype(jnp.float32)}
  assert out.dtype == jnp.float32
  # The computation itself runs in bf16: the jaxpr has bf16 matmuls/convs.
  jaxpr = str(jax.make_jaxpr(model.apply)(variables, x))
  assert "bf16" in jaxpr


@pytest.mark.slow
def test_bf16_output_close_to_fp32():
  x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  f32 = models.MLP(features=(64,))
  bf16 = models.MLP(features=(64,), dtype=jnp.bfloat16)
  variables = models.init_variables(f32, jax.random.key(0, impl="rbg"), x[:1])
  a = jax.jit(f32.apply)(variables, x)
  b = jax.jit(bf16.apply)(variables, x)  # same fp32 params work for both
  assert not np.array_equal(a, b)
  np.testing.assert_allclose(a, b, atol=0.05 * float(jnp.abs(a).max()) + 1e-3)


@pytest.mark.slow
def test_create_model_and_init_variables():
  model = models.create_model("CNN", 62)
  assert isinstance(model, models.LeafCNN) and model.num_classes == 62
  text = models.create_model("text_transformer", 4, vocab_size=50, embed_dim=16)
  assert text.kind == "transformer" and text.embed_dim == 16
  with pytest.raises(ValueError, match="unknown model"):
    models.create_model("vgg16", 10)
  mlp = models.create_model("mlp", 10, features=(8,))
  x = np.zeros((1, 4, 4, 1), np.float32)
  a = models.init_variables(mlp, 0, x)
  b = models.init_variables(mlp, jax.random.key(0), x)
  c = models.init_variables(mlp, 1, x)
  assert set(a) == {"params"}
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(a["params"]["head"]["kernel"], c["params"]["head"]["kernel"])
