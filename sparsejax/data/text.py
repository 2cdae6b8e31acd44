"""A simple, deterministic word-level tokenizer and vocabulary.

* :func:`tokenize`: undo AG-News-style escapes (``#36;`` -> ``$``, ``\\`` as a
  line break), lower-case, and keep maximal runs of ``[a-z0-9]`` as words.
* :func:`build_vocab`: ``["<pad>", "<unk>"]`` then words by decreasing count,
  ties broken alphabetically, so the same texts always give the same ids.
* :func:`token_ids`: token ids as an int32 ``(N, max_length)`` array, truncated at
  ``max_length`` and right-padded with 0; unknown words map to 1.
"""

from __future__ import annotations

import collections
import html
import re
from collections.abc import Iterable, Sequence

import numpy as np

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1

_ENTITY = re.compile(r"(?<!&)#(\d+);")
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
  """Lower-cased alphanumeric words of ``text``."""
  text = _ENTITY.sub(r"&#\1;", text.replace("\\", " "))
  return _WORD.findall(html.unescape(text).lower())


def build_vocab(token_lists: Iterable[Sequence[str]], max_size: int | None = 20000,
                min_count: int = 1) -> np.ndarray:
  """Vocabulary array (index = id) from tokenized training texts.

  Args:
    token_lists: tokens of each training text.
    max_size: total size including ``<pad>`` and ``<unk>``; None for no cap.
    min_count: drop words seen fewer times.
  """
  if max_size is not None and max_size < 2:
    raise ValueError(f"max_size must be >= 2 (pad and unk), got {max_size}")
  counts = collections.Counter()
  for tokens in token_lists:
    counts.update(tokens)
  words = sorted((w for w, c in counts.items() if c >= min_count),
                 key=lambda w: (-counts[w], w))
  if max_size is not None:
    words = words[:max_size - 2]
  return np.asarray([PAD, UNK] + words)


def token_ids(token_lists: Sequence[Sequence[str]], vocab: np.ndarray,
              max_length: int) -> np.ndarray:
  """int32 ``(N, max_length)`` token ids; 0 pads, 1 is unknown."""
  if max_length < 1:
    raise ValueError(f"max_length must be >= 1, got {max_length}")
  index = {w: i for i, w in enumerate(vocab.tolist())}
  out = np.zeros((len(token_lists), max_length), np.int32)
  for row, tokens in enumerate(token_lists):
    ids = [index.get(t, UNK_ID) for t in tokens[:max_length]]
    out[row, :len(ids)] = ids
  return out
