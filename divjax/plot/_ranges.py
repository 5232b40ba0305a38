"""What `divjax.plot.sweep_summary` shows of many fits: grouping, finite values, a robust range."""

from __future__ import annotations

import numpy as np

from divjax.plot.style import as_float

FENCE = 3.0  # values beyond FENCE interquartile ranges of the quartiles are clipped
BAND = 0.2  # the band above the data holding the counts, as a fraction of the data's span


def group_runs(runs) -> tuple[dict, dict]:
    """``({(name, estimator, optimizer, alpha): runs by K}, {(name, optimizer, alpha): exact})``."""
    groups, exact = {}, {}
    for run in runs:
        c = run.config
        if c.estimator == "exact":
            exact[(c.name, c.optimizer, c.alpha)] = float(as_float(run.status.final_value).flat[0])
        else:
            groups.setdefault((c.name, c.estimator, c.optimizer, c.alpha), []).append(run)
    return {k: sorted(v, key=lambda r: r.config.num_samples) for k, v in groups.items()}, exact


def finite_values(run) -> np.ndarray:
    """The finite final values of the fits that did not diverge."""
    v = as_float(run.status.final_value).reshape(-1)
    ok = np.isfinite(v) & (as_float(run.status.diverged_at).reshape(-1) < 0)
    return v[ok]


def _fences(t: np.ndarray, log: bool) -> tuple[float, float]:
    q1, med, q3 = np.quantile(t, [0.25, 0.5, 0.75])
    reach = max(FENCE * (q3 - q1), 0.5 if log else 0.25 * abs(med), 1e-12)
    return q1 - reach, q3 + reach


def robust_range(values: np.ndarray, refs=()) -> tuple[float, float, bool]:
    """``(lo, hi, log)``: the range shown (in log10 where ``log``); values beyond it are clipped.

    Fences: ``FENCE`` interquartile ranges beyond the quartiles (at least a
    quarter of the median), in log10 where every value is positive and the
    middle 90% spans more than two decades; the axis is logarithmic when what
    is kept still spans more than a decade. ``refs`` (the optimum, the exact
    fit) are shown when inside the fences.
    """
    log = bool(values.min() > 0 and np.quantile(values, 0.95) > 100 * np.quantile(values, 0.05))
    t = np.log10(values) if log else values
    lo_f, hi_f = _fences(t, log)
    inl = t[(t >= lo_f) & (t <= hi_f)]
    lo, hi = float(inl.min()), float(inl.max())
    for r in refs:
        if np.isfinite(r) and (r > 0 or not log):
            r = float(np.log10(r) if log else r)
            if lo_f <= r <= hi_f:
                lo, hi = min(lo, r), max(hi, r)
    if log and hi - lo < 1.0:  # what is kept is near one scale: a linear axis
        lo, hi, log = 10.0**lo, 10.0**hi, False
    if hi - lo < 1e-12:
        pad = 0.05 * max(abs(hi), 1.0)
        lo, hi = lo - pad, hi + pad
    return lo, hi, log


def empty_message(group) -> str:
    div = np.concatenate([as_float(r.status.diverged_at).reshape(-1) >= 0 for r in group])
    vals = np.concatenate([as_float(r.status.final_value).reshape(-1) for r in group])
    if div.all():
        return "every fit diverged"
    if np.isnan(vals[~div]).all():
        return "no exact divergence\nfor this target"
    return "no fit ended with a\nfinite divergence"
