"""One run per work directory, resumed only under the config it started with.

:func:`open_workdir` guards a run::

  with open_workdir(workdir, config, on_change="refuse") as wd:
    ...  # train, checkpoint, write metrics and the summary under workdir

On entry it

* locks the directory: ``workdir/run.lock``, held with ``fcntl.flock`` and
  naming the holder (pid, host, start time). A second run on the directory
  fails at once with :class:`WorkdirLockedError` naming the lock file and the
  holder. The kernel releases the lock when its process ends, however it ends,
  so a lock file left by a killed run is taken over (with a warning naming
  the dead holder) and never blocks. The lock file is removed on exit.
* checks the config: the first run stores it in ``workdir/config.json``; a
  later run with a different config is refused with
  :class:`ConfigMismatchError`, one line per changed key
  (``optimizer.learning_rate: 0.05 -> 0.1``), unless ``on_change`` is

  - ``"restart"``: every entry of the directory (except the lock and earlier
    ``previous-*`` directories) is moved into ``workdir/previous-<UTC time>/``,
    nothing is deleted, and the run starts fresh;
  - ``"accept"``: the run continues (resumes) under the new config, which
    replaces ``config.json``.

  Every write of ``config.json`` is appended to ``workdir/config_history.jsonl``
  (time, event, changed keys, config).

Configs are ``ml_collections.ConfigDict``s (anything with ``to_dict()``) or
mappings. Values are stored as JSON: tuples as lists, NumPy scalars as
numbers, anything else (dtypes, callables, objects) as a deterministic
``repr`` (callables by module and qualified name, memory addresses removed).

Multi-process runs (``jax.distributed``): only the primary process locks and
checks; the others wait for its verdict and raise if it refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import functools
import json
import os
import re
import socket
from typing import Any, Iterator, Mapping

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

LOCK_FILE = "run.lock"
CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.jsonl"
PREVIOUS_PREFIX = "previous-"
ON_CHANGE = ("refuse", "restart", "accept")


class WorkdirLockedError(RuntimeError):
  """Another run holds the work directory."""


class ConfigMismatchError(ValueError):
  """The work directory holds a run with another config.

  Attributes:
    diff: the changed keys, one ``key: old -> new`` line each.
  """

  def __init__(self, message: str, diff: list[str]):
    super().__init__(message)
    self.diff = diff


@dataclasses.dataclass(frozen=True)
class Workdir:
  """What :func:`open_workdir` found and did.

  Attributes:
    path: the work directory (absolute).
    status: ``"new"`` (first run), ``"resumed"`` (same config), ``"accepted"``
      (changed config accepted), ``"restarted"`` (old run moved aside) or
      ``"secondary"`` (a non-primary process; the primary checked).
    diff: the changed keys (``key: old -> new``); empty unless the config
      changed.
    previous: where ``"restart"`` moved the old run, else ``None``.
  """
  path: str
  status: str
  diff: tuple[str, ...] = ()
  previous: str | None = None


def _stable_repr(x: Any) -> str:
  """``repr`` without memory addresses; callables by qualified name."""
  if isinstance(x, functools.partial):
    args = [_stable_repr(a) for a in x.args]
    args += [f"{k}={_stable_repr(v)}" for k, v in sorted(x.keywords.items())]
    return f"functools.partial({', '.join([_stable_repr(x.func)] + args)})"
  if callable(x) and hasattr(x, "__qualname__"):
    return f"{getattr(x, '__module__', None)}.{x.__qualname__}"
  return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(x))


def _jsonable(x: Any) -> Any:
  if hasattr(x, "to_dict"):
    x = x.to_dict()
  if isinstance(x, Mapping):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if x is None or type(x) in (bool, int, float, str):
    return x
  if isinstance(x, np.generic) and x.dtype.kind in "biuf":
    return x.item()
  return _stable_repr(x)


def config_to_json(config: Any) -> dict[str, Any]:
  """The JSON form of ``config`` (a ``ConfigDict`` or a mapping) as stored."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  if not isinstance(config, Mapping):
    raise TypeError(f"config must be a mapping or have .to_dict(), got "
                    f"{type(config).__name__}")
  # A round trip, so a stored config and a fresh one compare alike.
  return json.loads(json.dumps(_jsonable(config), sort_keys=True))


def _flatten(x: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
  if isinstance(x, dict) and x:
    for k in sorted(x):
      yield from _flatten(x[k], f"{prefix}.{k}" if prefix else k)
  elif isinstance(x, list) and x:
    for i, v in enumerate(x):
      yield from _flatten(v, f"{prefix}.{i}" if prefix else str(i))
  else:
    yield prefix, x


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """``key: old -> new`` per changed key (dotted; list items by index).

  Keys only in one config show ``(absent)`` on the other side.
  """
  old_flat = {k: json.dumps(v) for k, v in _flatten(config_to_json(old))}
  new_flat = {k: json.dumps(v) for k, v in _flatten(config_to_json(new))}
  return [f"{k}: {old_flat.get(k, '(absent)')} -> {new_flat.get(k, '(absent)')}"
          for k in sorted(old_flat.keys() | new_flat.keys())
          if old_flat.get(k) != new_flat.get(k)]


def _now() -> datetime.datetime:
  return datetime.datetime.now(datetime.timezone.utc)


def _holder(text: str) -> str:
  try:
    info = json.loads(text)
    return (f"pid {info['pid']} on host {info['host']} (started "
            f"{info['started']})")
  except (ValueError, KeyError, TypeError):
    return "another process"


def _lock(workdir: str) -> int:
  """Takes the lock of ``workdir``; returns the open lock file descriptor."""
  path = os.path.join(workdir, LOCK_FILE)
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _holder(os.read(fd, 4096).decode(errors="replace"))
      os.close(fd)
      raise WorkdirLockedError(
          f"work directory {workdir} is in use by {holder} (lock file "
          f"{path}); wait for that run to end, or use another work "
          f"directory") from None
    except OSError as e:
      os.close(fd)
      raise OSError(e.errno, f"cannot lock {path}: {e.strerror} (the file "
                    f"system does not support flock; use a work directory on "
                    f"a local disk)") from e
    try:  # A releasing holder may have unlinked the file we opened: retry.
      if os.stat(path).st_ino == os.fstat(fd).st_ino:
        break
    except FileNotFoundError:
      pass
    os.close(fd)
  left = os.read(fd, 4096).decode(errors="replace").strip()
  if left:
    logging.warning(
        "work directory %s: taking over the lock file %s left by %s, which "
        "ended without releasing it (killed or crashed)", workdir, path,
        _holder(left))
  os.ftruncate(fd, 0)
  os.lseek(fd, 0, os.SEEK_SET)
  os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": _now().isoformat(timespec="seconds")
                           }).encode())
  return fd


def _unlock(workdir: str, fd: int) -> None:
  # Unlink while still locked, so a newcomer never locks a stale inode.
  try:
    os.unlink(os.path.join(workdir, LOCK_FILE))
  finally:
    os.close(fd)


def _read_config(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _write_config(workdir: str, config: dict[str, Any], event: str,
                  diff: list[str]) -> None:
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(path + ".tmp", path)
  record = {"time": _now().isoformat(timespec="seconds"), "event": event,
            "changes": diff, "config": config}
  with open(os.path.join(workdir, HISTORY_FILE), "a", encoding="utf-8") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")


def _run_entries(workdir: str) -> list[str]:
  """The directory's entries that belong to the current run."""
  return sorted(e for e in os.listdir(workdir)
                if e != LOCK_FILE and not e.startswith(PREVIOUS_PREFIX))


def _move_aside(workdir: str) -> str:
  stamp = _now().strftime("%Y%m%d-%H%M%S")
  dest = base = os.path.join(workdir, PREVIOUS_PREFIX + stamp)
  n = 0
  while os.path.exists(dest):
    n += 1
    dest = f"{base}-{n}"
  os.mkdir(dest)
  for entry in _run_entries(workdir):
    os.rename(os.path.join(workdir, entry), os.path.join(dest, entry))
  logging.warning("work directory %s: moved the previous run to %s", workdir,
                  dest)
  return dest


def _check_config(workdir: str, config: dict[str, Any],
                  on_change: str) -> Workdir:
  """Compares ``config`` with the stored one and acts per ``on_change``."""
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    old = _read_config(path)
  except FileNotFoundError:
    old = None
  except (OSError, ValueError) as e:
    if on_change != "restart":
      raise ValueError(
          f"cannot read the stored config {path}: {e}; repair or delete it, "
          f"or start fresh with on_change='restart'") from e
    previous = _move_aside(workdir)
    _write_config(workdir, config, "restarted", [])
    return Workdir(workdir, "restarted", previous=previous)
  if old is None:
    earlier = bool(_run_entries(workdir))
    if earlier:
      logging.warning(
          "work directory %s holds a run without %s (from an older version): "
          "storing the current config; the earlier run was not checked "
          "against it", workdir, CONFIG_FILE)
    _write_config(workdir, config, "created", [])
    return Workdir(workdir, "resumed" if earlier else "new")
  diff = config_diff(old, config)
  if not diff:
    return Workdir(workdir, "resumed")
  if on_change == "refuse":
    changes = "\n".join("  " + line for line in diff)
    raise ConfigMismatchError(
        f"work directory {workdir} holds a run with another config ({path}); "
        f"changed:\n{changes}\nRerun with the stored config to resume it, use "
        f"another work directory, or choose on_change='restart' (move the old "
        f"run to {workdir}/{PREVIOUS_PREFIX}<time>/ and start fresh) or "
        f"on_change='accept' (resume under the new config, recorded in "
        f"{HISTORY_FILE}); the experiment binaries take "
        f"--on_config_change=restart|accept.", diff)
  if on_change == "accept":
    logging.warning("work directory %s: resuming under a changed config:\n%s",
                    workdir, "\n".join(diff))
    _write_config(workdir, config, "accepted", diff)
    return Workdir(workdir, "accepted", tuple(diff))
  previous = _move_aside(workdir)
  _write_config(workdir, config, "restarted", diff)
  return Workdir(workdir, "restarted", tuple(diff), previous)


def _agree(ok: bool, primary: bool) -> bool:
  """Every process gets the primary process's ``ok``."""
  return bool(multihost_utils.broadcast_one_to_all(np.int32(ok),
                                                   is_source=primary))


@contextlib.contextmanager
def open_workdir(workdir: str, config: Any, on_change: str = "refuse", *,
                 primary: bool | None = None) -> Iterator[Workdir]:
  """Locks ``workdir`` and checks ``config`` against its run (module doc).

  Args:
    workdir: the work directory; created if missing.
    config: the run's config (``ConfigDict`` or mapping).
    on_change: what to do when ``workdir`` holds a run with another config:
      ``"refuse"`` (raise), ``"restart"`` (move the old run into
      ``workdir/previous-<time>/`` and start fresh) or ``"accept"`` (resume
      under the new config).
    primary: whether this process locks and checks; default
      ``jax.process_index() == 0``. With several processes the others wait
      for the primary's verdict.

  Yields:
    A :class:`Workdir`; the lock is held until the block exits.

  Raises:
    WorkdirLockedError: another run holds ``workdir``.
    ConfigMismatchError: the config changed and ``on_change="refuse"``.
    ValueError: ``on_change`` is unknown, or ``config.json`` is unreadable.
    RuntimeError: (non-primary processes) the primary process refused.
  """
  if on_change not in ON_CHANGE:
    raise ValueError(f"on_change must be one of {ON_CHANGE}, got "
                     f"{on_change!r}")
  workdir = os.path.abspath(os.fspath(workdir))
  config = config_to_json(config)
  if primary is None:
    primary = jax.process_index() == 0
  several = jax.process_count() > 1
  if not primary:
    if several and not _agree(False, primary):
      raise RuntimeError(f"the primary process refused work directory "
                         f"{workdir}; see its log")
    yield Workdir(workdir, "secondary")
    return
  fd = None
  try:
    os.makedirs(workdir, exist_ok=True)
    fd = _lock(workdir)
    wd = _check_config(workdir, config, on_change)
  except BaseException:
    if several:
      _agree(False, primary)
    if fd is not None:
      _unlock(workdir, fd)
    raise
  try:
    if several:
      _agree(True, primary)
    yield wd
  finally:
    _unlock(workdir, fd)
