r"""Summaries of many estimates and many fits: `estimator_comparison` and `sweep_summary`.

`estimator_comparison` draws `divjax.GradStats` (one per (divergence,
estimator), with a leading ``K`` axis); `sweep_summary` draws the runs of
`divjax.sweep` (`divjax.sweeps.SweepRun`), their outcomes in the categories of
`divjax.status.OUTCOMES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from divjax.plot._ranges import BAND, empty_message, finite_values, group_runs, robust_range
from divjax.plot.style import (
    OPTIMUM,
    OUTCOME_COLORS,
    PURPLE,
    as_float,
    estimator_styles,
    label,
    outcome_handles,
)
from divjax.status import OUTCOMES, outcome_masks

RATE_STYLE = (0, (1, 3))
COLUMNS = ("variance of one estimate", "MSE against the estimand", "SNR = |mean| / sd")
PARAM_SYMBOLS = {
    "loc": r"\mu",
    "log_scale": r"\log\sigma",
    "chol": "L",
    "logits": "logits",
    "locs": r"\mu_c",
    "log_scales": r"\log\sigma_c",
}


def _leaf(stats_field, field: str, q_index: int, batched: bool) -> np.ndarray:
    """``(len(Ks), n_elements)`` of one parameter's leaf, the ``q`` of ``q_index``."""
    a = as_float(getattr(stats_field, field))
    a = a[:, q_index] if batched else a
    return a.reshape(a.shape[0], -1)


def _series(stats, field: str, q_index: int) -> dict[str, np.ndarray]:
    """Variance, MSE and SNR per ``K`` (summed over a leaf's elements), and ``sample``."""
    batched = np.ndim(stats.num_samples) == 2
    inf_var = bool(np.any(as_float(stats.infinite_variance)))
    var = _leaf(stats.sample_variance if inf_var else stats.variance, field, q_index, batched)
    mean = _leaf(stats.mean, field, q_index, batched)
    bias = _leaf(stats.bias, field, q_index, batched)
    mse = _leaf(stats.mse, field, q_index, batched)
    if inf_var:  # the sample values: bias^2 + sample variance
        mse = bias**2 + var
    total = var.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.linalg.norm(mean, axis=-1) / np.sqrt(total)
    return {"var": total, "mse": mse.sum(-1), "snr": snr, "sample": inf_var}


def _ks(stats) -> np.ndarray:
    ks = as_float(stats.num_samples)
    return ks if ks.ndim == 1 else ks[:, 0]


def _rate(ax, anchors, power: float) -> None:
    """A grey dotted ``K^power`` line through the geometric mean of the first points."""
    if not anchors:
        return
    k0 = min(k for k, _ in anchors)
    y0 = np.exp(np.mean([np.log(y * (k0 / k) ** power) for k, y in anchors]))
    lo, hi = ax.get_xlim()
    kk = np.geomspace(max(k0, lo), hi, 20)
    ax.plot(kk, y0 * (kk / k0) ** power, ls=RATE_STYLE, color="0.6", lw=1.2, gid="rate")
    ax.set_xlim(lo, hi)


def _comparison_axes(fields, axes):
    if axes is None:
        _, axes = plt.subplots(
            len(fields),
            3,
            figsize=(12, 3.1 * len(fields) + 1.0),
            squeeze=False,
            layout="constrained",
        )
    return np.asarray(axes).reshape(len(fields), 3)


def _divergence_infinite(stats, q_index: int) -> np.ndarray:
    a = np.asarray(stats.divergence_infinite, bool)
    return a[:, q_index] if a.ndim == 2 else a


def _draw_estimator(axes, fields, stats, style: dict, q_index: int, anchors: dict) -> bool:
    """One estimator's lines in every panel (K where the divergence is finite); True if hollow."""
    ks, finite_div = _ks(stats), ~_divergence_infinite(stats, q_index)
    sample = False
    for r, field in enumerate(fields):
        s = _series(stats, field, q_index)
        sample = s["sample"]
        for c, y in enumerate((s["var"], s["mse"], s["snr"])):
            ok = np.isfinite(y) & (y > 0) & finite_div
            if ok.any():
                mfc = "none" if sample else style["color"]
                axes[r, c].plot(ks[ok], y[ok], ms=4, lw=1.4, mfc=mfc, **style)
                anchors.setdefault((r, c), []).append((ks[ok][0], y[ok][0]))
    return sample


def _legend_entry(key, stats, style: dict, sample: bool, q_index: int) -> Line2D:
    text = f"{label(key[0])} {key[1]}"
    if _divergence_infinite(stats, q_index).all():
        text += r" (divergence $\infty$ here: not drawn)"
    elif sample:
        text += r" (variance $\infty$: sample values, hollow)"
    mfc = "none" if sample else style["color"]
    return Line2D([], [], ms=4, mfc=mfc, label=text, **style)


def _dress(axes, fields, anchors) -> None:
    for (r, c), ax in np.ndenumerate(axes):
        sym = PARAM_SYMBOLS.get(fields[r], fields[r])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{COLUMNS[c]}, $\\partial/\\partial {sym}$", fontsize=10)
        ax.set_xlabel("K (samples per estimate)")
        ax.grid(True, which="major", alpha=0.3)
        if (r, c) not in anchors:
            what = "no exact gradient here" if c == 1 else "nothing finite to draw"
            ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center")
        _rate(ax, anchors.get((r, c), []), 0.5 if c == 2 else -1.0)


def estimator_comparison(
    grad_stats_by_estimator: Mapping[tuple[str, str], object], *, q_index: int = 0, axes=None
):
    r"""Gradient variance, MSE and SNR against ``K`` (log-log), one line per estimator.

    Rows are ``q``'s parameters (a leaf with several elements: variances and
    MSEs summed, SNR ``|mean| / sqrt(sum var)``); columns variance, MSE
    against the estimator's estimand and SNR (Rainforth et al. 2018). Every
    estimator has its own (colour, line style, marker) from
    `divjax.plot.style.estimator_styles`, in the order of `divjax.REGISTRY`.
    Where the variance is infinite the sample values are drawn with hollow
    markers; where the divergence itself is infinite nothing is drawn (the
    legend says so); ``"exact"`` is left out, and MSE where no exact gradient
    exists. Sparse grey dots: the ``1/K`` (SNR: ``sqrt(K)``) rate.

    Args:
      grad_stats_by_estimator: ``{(divergence, estimator): GradStats}`` with a leading K axis.
      q_index: which ``q`` when the statistics are for a batch of ``q``.
      axes: a ``(parameters, 3)`` array of ``Axes``.
    """
    items = {k: v for k, v in grad_stats_by_estimator.items() if k[1] != "exact"}
    styles = estimator_styles(items)  # registry order
    first = next(iter(items.values()), None)
    fields = first.variance._fields if first is not None else ("loc", "log_scale")
    axes = _comparison_axes(fields, axes)
    anchors, handles = {}, []
    for key, style in styles.items():
        sample = _draw_estimator(axes, fields, items[key], style, q_index, anchors)
        handles.append(_legend_entry(key, items[key], style, sample, q_index))
    _dress(axes, fields, anchors)
    rate = r"rate $1/K$ (SNR: $\sqrt{K}$)"
    handles.append(Line2D([], [], ls=RATE_STYLE, color="0.6", label=rate))
    fig = axes.flat[0].figure
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8)
    return fig


# --- sweep_summary ----------------------------------------------------------------


class _Axis(NamedTuple):
    """A top panel's value range (log10 units where ``log``) with the band for the counts."""

    lo: float
    hi: float
    log: bool

    def y(self, t: float) -> float:
        return 10.0**t if self.log else t

    def inside(self, d: np.ndarray) -> np.ndarray:
        return (d >= self.y(self.lo)) & (d <= self.y(self.hi))

    def apply(self, ax) -> None:
        span = self.hi - self.lo
        if self.log:
            ax.set_yscale("log")
        ax.set_ylim(self.y(self.lo - 0.05 * span), self.y(self.hi + BAND * span))
        ax.axhline(self.y(self.hi), color="0.6", lw=0.6, ls=":")


def _boxes(ax, data, pos, rng: _Axis) -> None:
    """Boxes of all finite values, whiskers cut where the axis' range ends."""
    shown = [i for i, d in enumerate(data) if d.size]
    box = ax.boxplot(
        [data[i] for i in shown],
        positions=pos[shown],
        widths=0.55,
        showfliers=False,
        medianprops={"color": PURPLE},
    )
    lo = rng.y(rng.lo - 0.05 * (rng.hi - rng.lo))
    for line in box["whiskers"] + box["caps"] + box["boxes"]:
        line.set_ydata(np.clip(line.get_ydata(), lo, rng.y(rng.hi)))


def _points_and_counts(ax, group, data, pos, rng: _Axis) -> None:
    """Each fit's value (jittered) inside the range; above the range, ``▲n`` and ``∞n`` counts."""
    rand = np.random.default_rng(0)
    count_y = rng.y(rng.hi + 0.6 * BAND * (rng.hi - rng.lo))
    for x, run, d in zip(pos, group, data):
        inside = d[rng.inside(d)]
        jitter = rand.uniform(-0.18, 0.18, inside.size)
        ax.scatter(x + jitter, inside, s=6, color=PURPLE, alpha=0.45, lw=0)
        n_out, n_bad = int(np.sum(~rng.inside(d))), int(np.size(run.status.final_value)) - d.size
        marks = ([f"▲{n_out}"] if n_out else []) + ([f"∞{n_bad}"] if n_bad else [])
        if marks:
            ax.text(x, count_y, " ".join(marks), ha="center", va="center", fontsize=7)


def _top(ax, group, rng: _Axis, refs) -> None:
    """Final divergences per K: boxes and points inside ``rng``, counts of the others."""
    pos = np.arange(len(group))
    data = [finite_values(r) for r in group]
    rng.apply(ax)
    if any(d.size for d in data):
        _boxes(ax, data, pos, rng)
        _points_and_counts(ax, group, data, pos, rng)
        for value, style in zip(refs, ({"color": OPTIMUM, "ls": ":"}, {"color": "k", "ls": "--"})):
            if np.isfinite(value) and rng.inside(np.asarray(value)):
                ax.axhline(value, lw=1.0, **style)
    else:
        _points_and_counts(ax, group, data, pos, rng)
        ax.text(
            0.5,
            0.45,
            empty_message(group),
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            color="0.25",
        )
        ax.set_yticks([])
    ax.set_xticks(pos, [str(r.config.num_samples) for r in group], fontsize=8)
    ax.set_xlim(-0.6, len(group) - 0.4)
    ax.set_ylabel("final divergence", fontsize=8)


def _bottom(ax, group) -> None:
    """Stacked fractions of the fits per outcome (`divjax.status.outcome_masks`)."""
    pos = np.arange(len(group))
    below = np.zeros(len(group))
    masks = [outcome_masks(r.status) for r in group]
    for outcome in OUTCOMES:
        frac = np.array([np.mean(m[outcome]) for m in masks])
        ax.bar(pos, frac, bottom=below, color=OUTCOME_COLORS[outcome], width=0.7)
        below += frac
    ax.set_xticks(pos, [str(r.config.num_samples) for r in group], fontsize=8)
    ax.set_xlim(-0.6, len(group) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_xlabel("K", fontsize=8)
    ax.set_ylabel("fraction of fits", fontsize=8)


def _sweep_axes(n: int, max_cols: int, axes):
    cols = max(1, min(n, max_cols))
    rows = -(-max(n, 1) // cols)
    if axes is None:
        _, axes = plt.subplots(
            2 * rows,
            cols,
            figsize=(3.3 * cols + 0.4, 4.4 * rows + 0.9),
            squeeze=False,
            layout="constrained",
            height_ratios=[1.5, 1.0] * rows,
        )
    axes = np.asarray(axes).reshape(2 * rows, cols)
    for j in range(n, rows * cols):
        axes[2 * (j // cols), j % cols].set_visible(False)
        axes[2 * (j // cols) + 1, j % cols].set_visible(False)
    return axes, cols


def _legend(fig, has_exact: bool, has_opt: bool) -> None:
    handles = outcome_handles()
    extra = [
        Line2D([], [], ls="", marker="$▲$", color="k", label="fits beyond the axis (count)"),
        Line2D(
            [],
            [],
            ls="",
            marker="$∞$",
            color="k",
            label="fits with no finite final divergence (count)",
        ),
    ]
    if has_opt:
        extra.append(Line2D([], [], color=OPTIMUM, ls=":", label="global optimum's value"))
    if has_exact:
        extra.append(Line2D([], [], color="k", ls="--", label="exact-gradient fit"))
    fig.legend(
        handles=handles + extra,
        loc="outside lower center",
        ncols=4,
        fontsize=8,
        title="how each fit ended",
        title_fontsize=8,
    )


def _shared_ranges(groups, exact, best) -> dict:
    """``{(divergence, alpha): _Axis}``: one range for every panel of a divergence."""
    ranges = {}
    for name, alpha in {(k[0], k[3]) for k in groups}:
        runs = [r for k, g in groups.items() if (k[0], k[3]) == (name, alpha) for r in g]
        vals = np.concatenate([finite_values(r) for r in runs])
        refs = [best.get(name, np.nan)]
        refs += [v for k, v in exact.items() if (k[0], k[2]) == (name, alpha)]
        ranges[(name, alpha)] = _Axis(*robust_range(vals, refs)) if vals.size else _Axis(0, 1, 0)
    return ranges


def sweep_summary(runs: Sequence, *, optima: Mapping | None = None, max_cols: int = 4, axes=None):
    r"""Per Monte Carlo configuration: the final divergence per ``K`` and how the fits ended.

    One column per (divergence, estimator, optimizer) of the runs. Top: the
    final exact divergence of every fit per ``K`` (box and points) on a range
    shared by every panel of the same divergence; values beyond it are not
    drawn but counted (▲), as are fits with no finite final value (∞); the
    exact-gradient fit (dashed) and the global optimum's value (dotted) where
    known. A panel where every fit diverged says so. Bottom: the fraction of
    fits per outcome of `divjax.status.OUTCOMES`, one legend for the figure.

    Args:
      runs: `divjax.sweeps.SweepRun`'s (``SweepResult.runs``, or several sweeps').
      optima: ``{divergence: Optima}`` for the optimum's value line.
      max_cols: columns of panels per row.
      axes: a ``(2 * rows, cols)`` array of ``Axes``.
    """
    groups, exact = group_runs(runs)
    axes, cols = _sweep_axes(len(groups), max_cols, axes)
    fig = axes.flat[0].figure
    best = {n: float(as_float(o.value)[0]) for n, o in (optima or {}).items()}
    ranges = _shared_ranges(groups, exact, best)
    for j, ((name, est, opt, alpha), group) in enumerate(groups.items()):
        top, bottom = axes[2 * (j // cols), j % cols], axes[2 * (j // cols) + 1, j % cols]
        refs = (best.get(name, np.nan), exact.get((name, opt, alpha), np.nan))
        _top(top, group, ranges[(name, alpha)], refs)
        top.set_title(
            f"{label(name, alpha)}, {est}" + (f" [{opt}]" if opt != "sgd" else ""), fontsize=10
        )
        _bottom(bottom, group)
    if not groups:
        axes.flat[0].set_visible(True)
        axes.flat[0].text(0.5, 0.5, "no Monte Carlo runs", ha="center", va="center")
    _legend(fig, bool(exact), bool(optima))
    return fig
