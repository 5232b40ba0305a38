r"""The demo's table: one row per configuration, counting every fit.

`make_row` turns one `divjax.sweeps.SweepRun` (and its gradient statistics)
into a `Row`: how many fits there were, how many the median and IQR of the
final divergence cover (finite, not diverged), and how the fits ended
(`divjax.status.OUTCOMES`), so no statistic hides the fits it left out.
`format_table` prints rows; `write_tables` writes them as CSV and JSON.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from divjax import status


class Row(NamedTuple):
    """One line of the table (a configuration's fits across seeds)."""

    divergence: str
    estimator: str
    num_samples: int
    num_fits: int
    num_in_stat: int
    median: float
    q25: float
    q75: float
    pct_global: float
    pct_local: float
    pct_stuck: float
    pct_settled: float
    pct_moving: float
    pct_ran_away: float
    pct_diverged: float
    num_infinite: int
    snr_loc: float
    snr_scale: float
    infinite_variance: bool


def _first(tree):
    """The first entry of each of the first two leaves (loc, then scale) of a stats pytree."""
    leaves = jax.tree_util.tree_leaves(tree)
    return [float(np.asarray(a).reshape(-1)[0]) for a in leaves[:2]]


def make_row(run, stats, k_index: int) -> Row:
    """The table row of one `divjax.sweeps.SweepRun` (``stats``: its GradStats or None)."""
    st = run.status
    value = np.asarray(st.final_value, np.float64)
    masks = status.outcome_masks(st)
    ok = np.isfinite(value) & ~masks["diverged"]
    q25, med, q75 = np.percentile(value[ok], [25, 50, 75]) if ok.any() else (math.nan,) * 3
    n = value.size
    if stats is None:
        snr, inf_var = [math.inf, math.inf], False
    else:
        row_stats = jax.tree_util.tree_map(lambda a: np.asarray(a)[k_index], stats)
        snr = _first(row_stats.snr_exact)
        if not all(math.isfinite(s) or math.isinf(s) for s in snr):  # no exact gradient
            snr = _first(row_stats.snr)
        inf_var = bool(row_stats.infinite_variance)
    c = run.config
    pct = {k: 100.0 * float(np.mean(m)) for k, m in masks.items()}
    return Row(
        c.name, c.estimator, c.num_samples, n, int(ok.sum()), float(med), float(q25), float(q75),
        pct["global"], pct["local"], pct["stuck"], pct["settled"], pct["moving"], pct["ran_away"],
        pct["diverged"], int(np.sum(np.isinf(value) & ~masks["diverged"])), snr[0], snr[1], inf_var,
    )  # fmt: skip


def _fmt(x: float, width: int = 9) -> str:
    if math.isnan(x):
        return "-".rjust(width)
    if math.isinf(x):
        return ("inf" if x > 0 else "-inf").rjust(width)
    return f"{x:{width}.3g}"


HEADER = (
    f"{'divergence':<13}{'estimator':<14}{'K':>4} {'fits':>5}{'in stat':>8} {'median D':>9} "
    f"{'IQR':>19} {'%glob':>6}{'%loc':>6}{'%stuck':>7}{'%mov':>6}{'%away':>6}{'%div':>6}"
    f"{'#inf':>5} {'SNR loc':>8}{'SNR scl':>8}"
)


def format_row(r: Row) -> str:
    k = "-" if r.num_samples == 0 else str(r.num_samples)
    snr = (
        ("inf-var".rjust(8), "inf-var".rjust(8))
        if r.infinite_variance
        else (_fmt(r.snr_loc, 8), _fmt(r.snr_scale, 8))
    )
    return (
        f"{r.divergence:<13}{r.estimator:<14}{k:>4} {r.num_fits:>5}{r.num_in_stat:>8} "
        f"{_fmt(r.median)} [{_fmt(r.q25, 8)},{_fmt(r.q75, 8)}] "
        f"{r.pct_global:6.1f}{r.pct_local:6.1f}{r.pct_stuck:7.1f}{r.pct_moving:6.1f}"
        f"{r.pct_ran_away:6.1f}{r.pct_diverged:6.1f}{r.num_infinite:>5} {snr[0]}{snr[1]}"
    )


def format_table(rows: Sequence[Row]) -> str:
    return "\n".join([HEADER, "-" * len(HEADER)] + [format_row(r) for r in rows])


def _json_value(v):
    """JSON has no inf or NaN: they are written as the strings "inf", "-inf" and "nan"."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def write_tables(out: Path, rows: Sequence[Row]) -> list[Path]:
    """``table.csv`` and ``table.json`` (inf and NaN kept apart as strings in JSON)."""
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(Row._fields)
        writer.writerows(rows)
    with open(out / "table.json", "w") as f:
        json.dump([{k: _json_value(v) for k, v in r._asdict().items()} for r in rows], f, indent=1)
    return [out / "table.csv", out / "table.json"]


__all__ = ["HEADER", "Row", "format_row", "format_table", "make_row", "write_tables"]
