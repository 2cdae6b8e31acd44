"""The ``Dataset`` container and the image normalisation shared by all loaders.

Image convention (every image loader, every source):

1. pixels are scaled to ``[0, 1]`` as float32 (``uint8 / 255``; FEMNIST is also
   inverted so that background is 0 and ink is 1, like MNIST);
2. then standardised per channel, ``(x - mean[c]) / std[c]``, with the *fixed*
   constants in :data:`NORMALIZATION` (measured on each dataset's official
   training split). Fixed constants keep train and test, the file and tfds
   sources, and a split loaded on its own, all on the same scale.

Pass ``standardize=False`` to a loader to stop after step 1. Text datasets hold
int32 token ids with 0 as padding; see :mod:`sparsejax.data.text`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Per-channel (mean, std) of the [0, 1]-scaled training images.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
  # Official MNIST train split (the offline copy is exact): 0.13066, 0.30811.
  "mnist": ((0.1307,), (0.3081,)),
  # Official Fashion-MNIST train split (Debian package is exact): 0.28604, 0.35302.
  "fashion_mnist": ((0.2860,), (0.3530,)),
  # Official CIFAR-10 train split statistics (std over all pixels, not the
  # mean of per-image stds). The offline JPEG copy has the same means and a
  # std about 1% lower, so its standardised std is about 0.99.
  "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
  # FEMNIST after inversion (ink = 1), measured on the offline 300-writer
  # subset's train split: 0.038516, 0.164198. Also used for tfds EMNIST, whose
  # images are centred and cropped differently, so are only roughly standardised.
  "femnist": ((0.0385,), (0.1642,)),
}


class Dataset(NamedTuple):
  """One split of a dataset as host numpy arrays.

  Attributes:
    x: inputs. Images: float32 ``(N, H, W, C)``, standardised (see module
      docstring). Text: int32 token ids ``(N, L)``, 0 = padding.
    y: int32 labels ``(N,)`` in ``[0, num_classes)``.
    num_classes: number of classes.
    name: dataset name, e.g. ``"mnist"``.
    groups: optional int32 ``(N,)`` natural group per example (the FEMNIST
      writer index), for federated partitioning; ``None`` otherwise.
    vocab: optional array of str, the vocabulary of a text dataset (index =
      token id; 0 is ``"<pad>"``, 1 is ``"<unk>"``); ``None`` for images.
  """

  x: np.ndarray
  y: np.ndarray
  num_classes: int
  name: str
  groups: np.ndarray | None = None
  vocab: np.ndarray | None = None

  @property
  def num_examples(self) -> int:
    """``N``, the number of examples (``len(ds)`` is the tuple's field count)."""
    return int(self.x.shape[0])


def images_to_dataset(images_uint8: np.ndarray, labels: np.ndarray, *, name: str,
                      num_classes: int, standardize_as: str | None,
                      invert: bool = False,
                      groups: np.ndarray | None = None) -> Dataset:
  """Builds an image ``Dataset`` from uint8 pixels, applying the convention.

  Computes ``((1 - v / 255 if invert else v / 255) - mean[c]) / std[c]`` as one
  fused per-channel affine map (one float32 copy, two in-place passes).
  """
  images = np.asarray(images_uint8)
  if images.ndim == 3:
    images = images[..., None]
  channels = images.shape[-1]
  scale = np.full(channels, 1.0 / 255.0)
  offset = np.zeros(channels)
  if invert:
    scale, offset = -scale, offset + 1.0
  if standardize_as is not None:
    mean, std = (np.asarray(v, np.float64) for v in NORMALIZATION[standardize_as])
    if mean.shape[0] != channels:
      raise ValueError(f"{name}: images have {channels} channels, "
                       f"{standardize_as} constants have {mean.shape[0]}")
    scale, offset = scale / std, (offset - mean) / std
  x = images.astype(np.float32)
  x *= scale.astype(np.float32)
  x += offset.astype(np.float32)
  y = np.asarray(labels).astype(np.int32)
  if x.shape[0] != y.shape[0]:
    raise ValueError(f"{name}: {x.shape[0]} images but {y.shape[0]} labels")
  if groups is not None:
    groups = np.asarray(groups).astype(np.int32)
  return Dataset(x=x, y=y, num_classes=num_classes, name=name, groups=groups)


SPLITS = ("train", "test")


def check_split(split: str | None) -> tuple[str, ...]:
  """The splits to load: both for ``None``, else the one named."""
  if split is None:
    return SPLITS
  if split not in SPLITS:
    raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
  return (split,)
