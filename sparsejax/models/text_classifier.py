"""Text classifiers over int32 token ids (0 = padding)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from sparsejax.models.common import Dtype

KINDS = ("bag", "transformer")


def _masked_mean(x, mask):
  """Mean over axis 1 of ``x`` (B, L, D) where ``mask`` (B, L) is true.

  Accumulated in float32; an all-padding row gives zeros.
  """
  m = mask[..., None].astype(jnp.float32)
  count = jnp.maximum(jnp.sum(m, axis=1), 1.0)
  return (jnp.sum(x.astype(jnp.float32) * m, axis=1) / count).astype(x.dtype)


class _TransformerBlock(nn.Module):
  """Pre-LayerNorm encoder block with key padding mask."""

  num_heads: int
  mlp_dim: int
  dtype: Dtype

  @nn.compact
  def __call__(self, x, mask):
    kw = dict(dtype=self.dtype, param_dtype=jnp.float32)
    y = nn.LayerNorm(name="ln_attn", **kw)(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, name="attn", **kw)(
            y, y, mask=nn.make_attention_mask(mask, mask))
    x = x + y
    y = nn.LayerNorm(name="ln_mlp", **kw)(x)
    y = nn.Dense(self.mlp_dim, name="mlp_in", **kw)(y)
    y = nn.Dense(x.shape[-1], name="mlp_out", **kw)(nn.gelu(y))
    return x + y


class TextClassifier(nn.Module):
  """Embedding-bag or small-transformer classifier over token ids ``(B, L)``.

  ``kind="bag"``: mean of the token embeddings over non-padding positions
  (token id 0 is padding and is masked out), then an MLP head
  (``hidden`` widths, ReLU) and ``Dense(num_classes)``.

  ``kind="transformer"``: token + learned position embeddings, ``num_layers``
  pre-LayerNorm encoder blocks whose attention ignores padding keys, a final
  LayerNorm, masked mean pooling, then the same head. Padding appended to a
  sequence changes neither kind's output. Sequences may be at most
  ``max_length`` long (position table size).

  Attributes:
    vocab_size: size of the embedding table (ids in ``[0, vocab_size)``).
    num_classes: output logits (4 for AG News).
    embed_dim: embedding / model width.
    kind: ``"bag"`` or ``"transformer"``.
    hidden: widths of the MLP head's hidden layers.
    num_layers: transformer blocks (1-2 intended).
    num_heads: attention heads.
    mlp_dim: transformer MLP width (default ``4 * embed_dim``).
    max_length: longest sequence (transformer positions).
    dtype: computation dtype (params float32; logits float32).
  """

  vocab_size: int
  num_classes: int = 4
  embed_dim: int = 64
  kind: str = "bag"
  hidden: Sequence[int] = (64,)
  num_layers: int = 1
  num_heads: int = 4
  mlp_dim: int | None = None
  max_length: int = 512
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, tokens, train: bool = False):
    del train  # no dropout
    if self.kind not in KINDS:
      raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
    if tokens.ndim != 2:
      raise ValueError(f"tokens must be (batch, length), got shape {tokens.shape}")
    kw = dict(dtype=self.dtype, param_dtype=jnp.float32)
    tokens = jnp.asarray(tokens, jnp.int32)
    mask = tokens != 0
    x = nn.Embed(self.vocab_size, self.embed_dim, name="embed", **kw)(tokens)
    if self.kind == "transformer":
      length = tokens.shape[1]
      if length > self.max_length:
        raise ValueError(f"sequence length {length} > max_length {self.max_length}")
      pos = self.param("pos_embed", nn.initializers.normal(0.02),
                       (self.max_length, self.embed_dim), jnp.float32)
      x = x + pos[None, :length].astype(self.dtype)
      for i in range(self.num_layers):
        x = _TransformerBlock(self.num_heads, self.mlp_dim or 4 * self.embed_dim,
                              self.dtype, name=f"block_{i}")(x, mask)
      x = nn.LayerNorm(name="ln_final", **kw)(x)
    x = _masked_mean(x, mask)
    for i, h in enumerate(self.hidden):
      x = nn.relu(nn.Dense(h, name=f"hidden_{i}", **kw)(x))
    x = nn.Dense(self.num_classes, name="head", **kw)(x)
    return x.astype(jnp.float32)
