"""Append-only metric records in JSON Lines and CSV, safe to resume.

A run writes one record per call, e.g. ``{"step": 100, "loss": 0.31,
"bytes_sent": 123456}``, to ``<workdir>/<name>.jsonl`` and
``<workdir>/<name>.csv``. The JSONL file is the source of truth; the CSV file
is a convenience view of the same records.

CSV columns are the union of the keys seen so far: the step key first, then
the other keys in order of first appearance. When a record brings a new key,
the CSV file is rewritten from the JSONL records with the wider header (older
rows get empty cells), so the header is always correct and no record is lost.

Resuming: a checkpoint at step ``s`` holds the state after ``s`` completed
steps, so records with ``step <= s`` were written before it and records with
``step > s`` came from work the resumed run will redo. Constructing the writer
with ``resume_step=checkpointer.latest_step()`` keeps exactly the former:

* ``resume_step=None`` (no checkpoint, a fresh run): existing files with this
  name are replaced by empty ones.
* ``resume_step=s``: records whose step is greater than ``s`` are dropped and
  both files are rewritten; new records are appended after the kept ones.

Records must carry a step: the first of ``step_keys`` (default ``("step",
"round")``) present in the record; a record without any raises ``ValueError``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from typing import Any, Iterable, Mapping, Sequence

from absl import logging
import numpy as np

Scalar = int | float | bool | str | None

DEFAULT_STEP_KEYS = ("step", "round")


def to_python_scalar(value: Any, key: str = "?") -> Scalar:
  """Converts a JAX/NumPy scalar (or size-1 array) to a plain Python scalar.

  Args:
    value: an ``int``, ``float``, ``bool``, ``str``, ``None``, NumPy scalar, or
      NumPy/JAX array with exactly one element.
    key: the record key, used in the error message.

  Returns:
    The value as ``int``, ``float``, ``bool``, ``str`` or ``None``.

  Raises:
    ValueError: if ``value`` is not a scalar.
  """
  if value is None or isinstance(value, (bool, str)):
    return value
  if isinstance(value, numbers.Integral) and not isinstance(value, np.generic):
    return int(value)
  if isinstance(value, float):
    return value
  # NumPy scalars, NumPy arrays and JAX arrays all support np.asarray.
  try:
    arr = np.asarray(value)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f"metric {key!r}: cannot convert {type(value).__name__} to a scalar"
    ) from e
  if arr.size != 1 or arr.dtype == object:
    raise ValueError(
        f"metric {key!r}: expected a scalar, got shape {arr.shape} "
        f"dtype {arr.dtype}"
    )
  item = arr.reshape(()).item()
  if isinstance(item, (bool, int, float, str)):
    return item
  # bfloat16 and other extension dtypes come back as numpy-like scalars.
  return float(item)


def _step_of(record: Mapping[str, Any], step_keys: Sequence[str]) -> Any:
  for k in step_keys:
    if k in record:
      return record[k]
  return None


def _columns(records: Iterable[Mapping[str, Any]],
             step_keys: Sequence[str]) -> list[str]:
  seen: dict[str, None] = {}
  for r in records:
    for k in r:
      seen.setdefault(k, None)
  lead = [k for k in step_keys if k in seen]
  return lead + [k for k in seen if k not in lead]


def _csv_cell(v: Scalar) -> Any:
  return "" if v is None else v


def _read_jsonl(path: str) -> list[dict[str, Any]]:
  """Reads a JSONL file; tolerates a truncated last line (crash mid-write)."""
  records = []
  with open(path, "r", encoding="utf-8") as f:
    lines = f.read().split("\n")
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i >= len(lines) - 2:  # last non-empty line: partial write
        logging.warning("metrics: ignoring truncated last line of %s", path)
        continue
      raise
  return records


def _atomic_write(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8", newline="") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_metrics(workdir: str, name: str = "metrics") -> list[dict[str, Any]]:
  """Returns the records in ``<workdir>/<name>.jsonl``, in write order.

  Raises:
    FileNotFoundError: if the file does not exist.
  """
  return _read_jsonl(os.path.join(workdir, f"{name}.jsonl"))


class MetricsWriter:
  """Appends scalar metric records to ``<name>.jsonl`` and ``<name>.csv``.

  Example::

    writer = MetricsWriter(workdir, resume_step=ckpt.latest_step())
    writer.write({"step": step, "loss": loss, "bytes_sent": sent})

  ``writer(record)`` is the same as ``writer.write(record)``, so the writer can
  be passed wherever a callback is expected.

  Values may be Python/NumPy/JAX scalars (converted to Python ``int``,
  ``float``, ``bool``), ``str`` or ``None``. Non-finite floats are written as
  ``NaN``/``Infinity`` (read back by :func:`read_metrics` and ``json.loads``).
  """

  def __init__(
      self,
      workdir: str,
      name: str = "metrics",
      *,
      resume_step: int | None = None,
      step_keys: Sequence[str] = DEFAULT_STEP_KEYS,
      active: bool | None = None,
  ):
    """Opens (and, on resume, truncates) the metric files.

    Args:
      workdir: directory of the files; created if missing.
      name: file stem.
      resume_step: ``None`` for a fresh run (existing files replaced), or the
        step of the checkpoint being resumed (records with a greater step are
        dropped).
      step_keys: keys that name the step of a record, first present wins.
      active: whether this process writes. Defaults to
        ``jax.process_index() == 0`` so that multi-host runs write once;
        inactive writers accept and ignore records.
    """
    if active is None:
      import jax  # pylint: disable=g-import-not-at-top
      active = jax.process_index() == 0
    self.workdir = workdir
    self.name = name
    self.step_keys = tuple(step_keys)
    self.active = bool(active)
    self.jsonl_path = os.path.join(workdir, f"{name}.jsonl")
    self.csv_path = os.path.join(workdir, f"{name}.csv")
    self._records: list[dict[str, Any]] = []
    self._columns: list[str] = []
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    if resume_step is not None and os.path.exists(self.jsonl_path):
      old = _read_jsonl(self.jsonl_path)
      kept = []
      for r in old:
        step = _step_of(r, self.step_keys)
        if step is None or step <= resume_step:
          kept.append(r)
      if len(kept) < len(old):
        logging.info("metrics: resuming at step %d, dropped %d record(s) of %s",
                     resume_step, len(old) - len(kept), self.jsonl_path)
      self._records = kept
    self._columns = _columns(self._records, self.step_keys)
    _atomic_write(self.jsonl_path, "".join(
        json.dumps(r) + "\n" for r in self._records))
    self._rewrite_csv()

  @property
  def records(self) -> list[dict[str, Any]]:
    """The records of this run so far (kept ones on resume, then new ones)."""
    return list(self._records)

  def _rewrite_csv(self) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if self._columns:
      w.writerow(self._columns)
      for r in self._records:
        w.writerow([_csv_cell(r.get(c)) for c in self._columns])
    _atomic_write(self.csv_path, buf.getvalue())

  def write(self, record: Mapping[str, Any]) -> dict[str, Scalar]:
    """Appends one record; returns it as converted to Python scalars."""
    rec = {str(k): to_python_scalar(v, str(k)) for k, v in record.items()}
    step = _step_of(rec, self.step_keys)
    if step is None:
      raise ValueError(
          f"metric record has no step key (one of {self.step_keys}): "
          f"{sorted(rec)}")
    if isinstance(step, float) and not math.isfinite(step):
      raise ValueError(f"metric record step is not finite: {step}")
    if not self.active:
      return rec
    self._records.append(rec)
    with open(self.jsonl_path, "a", encoding="utf-8") as f:
      f.write(json.dumps(rec) + "\n")
    new_keys = [k for k in rec if k not in self._columns]
    if new_keys:
      self._columns = _columns(self._records, self.step_keys)
      self._rewrite_csv()
    else:
      with open(self.csv_path, "a", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerow(
            [_csv_cell(rec.get(c)) for c in self._columns])
    return rec

  __call__ = write
