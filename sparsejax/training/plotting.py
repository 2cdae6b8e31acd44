"""Accuracy-versus-communication curves, bytes-to-target tables, summaries.

``runs`` maps a method name to its metric records (as returned by
:func:`sparsejax.training.read_metrics`). Records missing the x or y key are
skipped, so training records and evaluation records may be interleaved.

:func:`write_summary` is what every experiment binary writes at the end: its
plots and one table of the methods (mean and spread over seeds).

Plots are drawn on a bare :class:`matplotlib.figure.Figure` rendered by the Agg
canvas: no pyplot, no global backend switch, safe in headless jobs and threads.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from absl import logging
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
import numpy as np

Records = Sequence[Mapping[str, Any]]

_BYTE_UNITS = ("B", "KB", "MB", "GB", "TB", "PB", "EB")


def format_bytes(n: float) -> str:
  """Human-readable decimal byte count: ``1500000 -> '1.5 MB'``."""
  if n is None or (isinstance(n, float) and not math.isfinite(n)):
    return str(n)
  sign = "-" if n < 0 else ""
  n = abs(float(n))
  unit = 0
  while n >= 1000 and unit < len(_BYTE_UNITS) - 1:
    n /= 1000.0
    unit += 1
  if unit == 0:
    return f"{sign}{n:.0f} B"
  return f"{sign}{n:.3g} {_BYTE_UNITS[unit]}"


def _is_bytes_key(key: str) -> bool:
  return "bytes" in key.lower()


def axis_label(key: str, log: bool = False) -> str:
  """Default axis label for a metric key, with its unit where one is known."""
  text = key.replace("_", " ")
  k = key.lower()
  if _is_bytes_key(k):
    unit = "bytes"
  elif k.endswith(("_s", "_sec", "_secs", "_seconds", "time")):
    unit = "s"
  elif "accuracy" in k or k.endswith("_acc"):
    unit = "fraction"
  else:
    unit = None
  parts = [p for p in (unit, "log scale" if log else None) if p]
  return f"{text} ({', '.join(parts)})" if parts else text


def _xy(records: Records, x: str, y: str) -> tuple[list[float], list[float]]:
  xs, ys = [], []
  for r in records:
    if r.get(x) is None or r.get(y) is None:
      continue
    xs.append(float(r[x]))
    ys.append(float(r[y]))
  return xs, ys


def _seed_curves(seeds: Sequence[Records], x: str, y: str, logx: bool
                 ) -> tuple[list[float], list[float], list[float], list[float]]:
  """``(x mean, y mean, y min, y max)`` over seeds, on the points all have."""
  curves = []
  for records in seeds:
    xs, ys = _xy(records, x, y)
    if logx:
      pts = [(a, b) for a, b in zip(xs, ys) if a > 0]
      xs, ys = [a for a, _ in pts], [b for _, b in pts]
    curves.append((xs, ys))
  n = min(len(xs) for xs, _ in curves)
  if n == 0:
    return [], [], [], []
  xs = [sum(c[0][i] for c in curves) / len(curves) for i in range(n)]
  ys = [[c[1][i] for c in curves] for i in range(n)]
  return xs, [sum(v) / len(v) for v in ys], [min(v) for v in ys], [
      max(v) for v in ys]


def line_styles(n: int) -> list[tuple[str, str]]:
  """``n`` distinct ``(colour, linestyle)`` pairs: matplotlib's ten colours
  solid, then dashed, dotted and dash-dotted (up to 40 methods)."""
  dashes = ("-", "--", ":", "-.")
  if n > 10 * len(dashes):
    raise ValueError(f"at most {10 * len(dashes)} curves per plot, got {n}")
  return [(f"C{i % 10}", dashes[i // 10]) for i in range(n)]


def plot_curves(
    runs: Mapping[str, Records | Sequence[Records]],
    path: str,
    *,
    x: str = "bytes_sent",
    y: str = "test_accuracy",
    logx: bool = True,
    logy: bool = False,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    target: float | None = None,
    figsize: tuple[float, float] = (6.4, 4.4),
    dpi: int = 120,
) -> str:
  """Plots ``y`` against ``x`` for each run, one line per method; saves a PNG.

  A method given the records of several seeds (a list of record lists) is
  drawn as the mean over seeds with a min..max band, on the first points
  all its seeds have (``x`` averaged too), its seed count in the legend.

  Args:
    runs: method name -> metric records, or a list of them (one per seed).
    path: output file (format from the extension, normally ``.png``); parent
      directories are created.
    x: x-axis key; keys containing ``bytes`` get human-readable byte ticks.
    y: y-axis key.
    logx: log-scale x axis (non-positive x values are dropped from the line).
    logy: log-scale y axis.
    title: figure title.
    xlabel: x-axis label; default from the key, with its unit.
    ylabel: y-axis label; default from the key, with its unit.
    target: if given, a dashed horizontal line at this y value.
    figsize: figure size in inches.
    dpi: resolution.

  Returns:
    ``path``.
  """
  fig = Figure(figsize=figsize, dpi=dpi)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  plotted = 0
  for (method, records), (color, style) in zip(runs.items(),
                                               line_styles(len(runs))):
    several = bool(records) and not isinstance(records[0], Mapping)
    seeds = records if several else [records]
    xs, ys, low, high = _seed_curves(seeds, x, y, logx)
    if not xs:
      continue
    line, = ax.plot(xs, ys, marker="o" if len(xs) < 30 else None,
                    markersize=3, color=color, linestyle=style,
                    label=f"{method} ({len(seeds)})" if several else method)
    if several and len(seeds) > 1:
      ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2,
                      linewidth=0)
    plotted += 1
  if logx:
    ax.set_xscale("log")
  if logy:
    ax.set_yscale("log")
  if _is_bytes_key(x):
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_bytes(v)))
  if _is_bytes_key(y):
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_bytes(v)))
  if target is not None:
    ax.axhline(target, color="gray", linestyle="--", linewidth=1,
               label=f"target {target:g}")
  ax.set_xlabel(xlabel if xlabel is not None else axis_label(x, logx))
  ax.set_ylabel(ylabel if ylabel is not None else axis_label(y, logy))
  if title:
    ax.set_title(title)
  ax.grid(True, which="major", alpha=0.3)
  if plotted or target is not None:
    ax.legend(loc="best", fontsize="small")
  fig.tight_layout()
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  fig.savefig(path)
  return path


def bytes_to_target_table(
    runs: Mapping[str, Records],
    target: float,
    x_keys: Sequence[str] = ("round", "bytes_sent"),
    y: str = "test_accuracy",
    *,
    higher_is_better: bool = True,
) -> list[tuple[Any, ...]]:
  """First point at which each run reaches ``target``.

  For each method, scans its records in order and takes the first record with
  ``y >= target`` (``y <= target`` when ``higher_is_better=False``, e.g. a
  loss target). Records without ``y`` are skipped.

  Returns:
    One row per method, in ``runs`` order: ``(method, *x_values)`` with the
    values of ``x_keys`` in that record (``None`` for a key that record lacks),
    or ``(method, None, ..., None)`` if the target is never reached.
  """
  rows = []
  for method, records in runs.items():
    hit = None
    for r in records:
      v = r.get(y)
      if v is None:
        continue
      v = float(v)
      if math.isnan(v):
        continue
      if (v >= target) if higher_is_better else (v <= target):
        hit = r
        break
    if hit is None:
      rows.append((method,) + (None,) * len(x_keys))
    else:
      rows.append((method,) + tuple(hit.get(k) for k in x_keys))
  return rows


def _format_cell(value: Any, header: str | None, missing: str) -> str:
  if value is None:
    return missing
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, (int, float)) and header and _is_bytes_key(header):
    return format_bytes(value)
  if isinstance(value, float):
    if value.is_integer() and abs(value) < 1e15:
      return str(int(value))
    return f"{value:.4g}"
  return str(value).replace("|", "\\|")


def format_table(
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str],
    *,
    missing: str = "not reached",
) -> str:
  """Renders rows as a GitHub-flavoured markdown table.

  ``None`` cells print as ``missing``; numbers in a column whose header
  contains ``bytes`` print human-readable (``1.5 MB``); other floats use 4
  significant digits. Numeric columns are right-aligned.
  """
  headers = [str(h) for h in headers]
  for r in rows:
    if len(r) != len(headers):
      raise ValueError(f"row {r!r} has {len(r)} cells, expected {len(headers)}")
  cells = [[_format_cell(v, h, missing) for v, h in zip(r, headers)]
           for r in rows]
  numeric = [
      any(isinstance(r[i], (int, float)) and not isinstance(r[i], bool)
          for r in rows) for i in range(len(headers))
  ]
  widths = [max([len(h)] + [len(c[i]) for c in cells])
            for i, h in enumerate(headers)]
  widths = [max(w, 3) for w in widths]

  def line(vals):
    return "| " + " | ".join(
        v.rjust(w) if num else v.ljust(w)
        for v, w, num in zip(vals, widths, numeric)) + " |"

  sep = "| " + " | ".join(
      ("-" * (w - 1) + ":") if num else "-" * w
      for w, num in zip(widths, numeric)) + " |"
  return "\n".join([line(headers), sep] + [line(c) for c in cells]) + "\n"


class Plot(NamedTuple):
  """One figure of a summary: ``y`` against ``x``, one line per method."""
  file: str
  x: str
  y: str
  logx: bool = True
  title: str | None = None


class Column(NamedTuple):
  """One summary-table column: ``key`` of a run's last or best evaluation."""
  header: str
  key: str
  reduce: str = "last"  # "last", or "max" (the best)


def _mean_std(values: Sequence[float | None],
             fmt: Callable[[float], str] = "{:.4g}".format) -> str:
  """``mean ± std`` (``ddof=1``) of the non-``None`` values, one value if all
  equal, ``(k/n seeds)`` if some are ``None`` and ``not reached`` if all are."""
  done = [float(v) for v in values if v is not None]
  if not done:
    return "not reached"
  text = fmt(np.mean(done))
  if len(done) > 1 and np.std(done) > 0:
    text += " ± " + fmt(np.std(done, ddof=1))
  if len(done) < len(values):
    text += f" ({len(done)}/{len(values)} seeds)"
  return text


def _cell(values: Sequence[Any], header: str) -> Any:
  """A table cell of per-seed values: the value itself for one seed."""
  if len(values) == 1 or all(v is None for v in values):
    return values[0]
  return _mean_std(values, format_bytes if _is_bytes_key(header)
                  else "{:.4g}".format)


def _ratio(value: float, baseline: float) -> str:
  if value == 0:
    return "0"
  return (f"1/{baseline / value:.0f}" if value < baseline
          else f"{value / baseline:.2f}x")


def summarize(
    runs: Mapping[str, Sequence[Records]],
    columns: Sequence[Column],
    *,
    y: str = "test_accuracy",
    target: float | None = None,
    target_keys: Sequence[str] = (),
    baseline: str | None = None,
    bytes_key: str = "total_bytes",
) -> tuple[str, dict[str, Any]]:
  """The summary table of several methods (and seeds): ``(markdown, data)``.

  Only the evaluated records (those with ``y``) count. One row per method;
  each :class:`Column` takes ``key`` from the last evaluation (``"last"``) or
  its maximum (``"max"``), per seed; over several seeds a cell is
  ``mean ± std``. With ``baseline`` (a method of ``runs``), a column
  compares the mean final ``bytes_key`` to the baseline's (``1/20``: 20x
  fewer bytes). With ``target``, a second table gives the first value of each
  of ``target_keys`` at which ``y`` reaches it (:func:`bytes_to_target_table`).

  Args:
    runs: method -> the records of each seed (one list for one seed).
    columns: the table's columns after ``method``.
    y: the evaluation metric.
    target: a ``y`` to reach.
    target_keys: the x keys of the to-target table.
    baseline: the method to compare bytes with.
    bytes_key: the key compared with the baseline.

  Returns:
    The markdown table(s) and their values per seed (JSON-ready).
  """
  evals = {k: [[r for r in seed if y in r] for seed in v]
           for k, v in runs.items()}
  empty = [k for k, v in evals.items() if not all(v)]
  if empty:
    raise ValueError(f"no record with {y!r} in the runs of {empty}")

  def value(records, column):
    if column.reduce == "max":
      return max(r[column.key] for r in records
                 if r.get(column.key) is not None)
    return records[-1].get(column.key)

  per_seed = {k: {c.header: [value(s, c) for s in v] for c in columns}
              for k, v in evals.items()}
  headers = ["method"] + [c.header for c in columns]
  if baseline in evals:
    base = np.mean([s[-1][bytes_key] for s in evals[baseline]])
    headers.append(f"bytes vs {baseline}")
  rows = []
  for k, v in per_seed.items():
    row = [k] + [_cell(v[c.header], c.header) for c in columns]
    if baseline in evals:
      row.append(_ratio(np.mean([s[-1][bytes_key] for s in evals[k]]), base))
    rows.append(row)
  table = format_table(rows, headers, missing="-")
  data = {"y": y, "methods": per_seed}
  if target is not None:
    hits = {k: [bytes_to_target_table({k: s}, target, target_keys, y)[0][1:]
                for s in v] for k, v in evals.items()}
    data["to_target"] = {"target": target, "methods": {
        k: {x: [h[i] for h in v] for i, x in enumerate(target_keys)}
        for k, v in hits.items()}}
    to_target = [[k] + [_cell(col, x) for x, col in v.items()]
                 for k, v in data["to_target"]["methods"].items()]
    table += "\n" + format_table(to_target, ["method"] + [
        f"{x.replace('_', ' ')} to {target}" for x in target_keys])
  return table, data


def write_summary(
    workdir,
    runs: Mapping[str, Sequence[Records]],
    columns: Sequence[Column],
    *,
    plots: Sequence[Plot] = (),
    log_fn: Callable[[str], Any] = logging.info,
    **options,
) -> str:
  """Plots and the summary of an experiment's methods, under ``workdir``.

  Draws each :class:`Plot` over the seeds of every method (mean, min..max
  band; the ``target`` as a dashed line; a plot whose ``x`` no run has is
  skipped) and
  writes :func:`summarize`'s table to ``summary.md`` and its data to
  ``summary.json``.

  Args:
    workdir: the experiment's directory.
    runs: method -> the records of each seed (one list for one seed).
    columns: the table's columns (:func:`summarize`).
    plots: the figures.
    log_fn: receives the table.
    **options: ``y``, ``target``, ``target_keys``, ``baseline``,
      ``bytes_key`` of :func:`summarize`.

  Returns:
    The table.
  """
  workdir = os.fspath(workdir)
  for plot in plots:
    if any(r.get(plot.x) is not None for seeds in runs.values()
           for v in seeds for r in v):
      plot_curves({k: list(v) for k, v in runs.items()},
                  os.path.join(workdir, plot.file), x=plot.x,
                  y=plot.y, logx=plot.logx, title=plot.title,
                  target=options.get("target"))
  table, data = summarize(runs, columns, **options)
  with open(os.path.join(workdir, "summary.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(data, f, indent=1, default=float)
  log_fn(f"summary ({workdir}):\n{table}")
  return table
