"""A small softmax-regression problem on 8 devices, shared by the tests of
compressors that exchange data while encoding (PowerSGD, the vote, DGC)."""

import numpy as np
import optax

DEVICES, BATCH, DIM, CLASSES = 8, 64, 16, 6


def data(step):
  rng = np.random.default_rng(step)
  x = rng.normal(size=(BATCH, DIM)).astype(np.float32)
  y = np.argmax(x @ rng.normal(size=(DIM, CLASSES)), axis=1)
  return x, y.astype(np.int32)


def loss(params, model_state, batch):
  x, y = batch
  logits = x @ params["w"] + params["b"]
  value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return value, (model_state, {})
