r"""The demo's figures from precomputed results: `DemoData` in, PNG and GIF files out.

`divjax.demo` computes a `DemoData` (fits, sweeps, gradient statistics,
surfaces, paths, draws); `demo_figures` only draws it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import numpy as np

from divjax.plot import _eval
from divjax.plot.animate import Frames, animate_fit
from divjax.plot.landscape import landscape
from divjax.plot.panels import fit_panel, rug, weights_panel, x_grid
from divjax.plot.panels2d import fit_panel2d
from divjax.plot.style import grid_of_axes, label
from divjax.plot.summary import estimator_comparison, sweep_summary


class DemoData(NamedTuple):
    """Everything the demo's figures show, computed beforehand (by `divjax.demo`).

    Attributes:
      target: the target ``p`` (1-D; a ``d = 2`` target gets 2-D panels).
      q0: the common start.
      optima: ``{divergence: Optima}`` (`divjax.optimal_q`).
      runs: the `divjax.sweeps.SweepRun`'s of the sweeps.
      grad_stats: ``{(divergence, estimator): GradStats}``, each with a leading K axis.
      fitted: ``{divergence: q}`` the fit shown per divergence (its order is the figures').
      notes: ``{divergence: str}`` how that fit ended (``FitStatus.describe()``).
      estimators: ``{divergence: estimator}`` the Monte Carlo estimator shown.
      surfaces: ``{divergence: Surface}`` (`divjax.landscape.surface`; 1-D only).
      trajectories: ``{divergence: {label: path}}`` (`divjax.paths.fit_paths`).
      auxes: ``{divergence: SurrogateAux}``: one draw of that estimator at the
        fitted ``q``, with the K the user asked for (`divjax.paths.draw_aux`).
      frames: the animation's `divjax.plot.Frames`, or None for no GIF.
    """

    target: Any
    q0: Any
    optima: dict
    runs: tuple
    grad_stats: dict
    fitted: dict
    notes: dict
    estimators: dict
    surfaces: dict
    trajectories: dict
    auxes: dict
    frames: Frames | None = None


def _panels(n: int, panel=(5.6, 3.6)):
    fig, axes = grid_of_axes(n, 2, panel=panel)
    return fig, list(axes.flat)


def fit_panels(data: DemoData):
    """One fit panel per divergence: the fitted q, q*, and how the fit ended."""
    two_d = data.target.event_shape == (2,)
    fig, axes = _panels(len(data.fitted), (5.6, 4.6) if two_d else (5.6, 3.6))
    for ax, (n, q) in zip(axes, data.fitted.items()):
        head = _eval.head(n) + (f"\n{data.notes[n]}" if n in data.notes else "")
        draw = fit_panel2d if two_d else fit_panel
        draw(data.target, q, n, optima=data.optima.get(n), title=head, ax=ax)
    return fig


def weight_panels(data: DemoData):
    """The importance weights of one draw (K as asked) at each fitted q."""
    two_d = data.target.event_shape == (2,)
    fig, axes = _panels(len(data.auxes), (5.6, 4.6) if two_d else (5.6, 3.0))
    for ax, (n, aux) in zip(axes, data.auxes.items()):
        q, est = data.fitted[n], data.estimators.get(n, "")
        head = f"{label(n)}, {est} at the fitted q"
        if two_d:
            fit_panel2d(data.target, q, n, aux=aux, title=head, ax=ax)
        else:
            weights_panel(data.target, q, aux, n, x=x_grid(data.target, q), title=head, ax=ax)
    return fig


def rug_panels(data: DemoData):
    """The gradient shares of the same draws (1-D)."""
    fig, axes = _panels(len(data.auxes), (5.6, 1.9))
    for ax, (n, aux) in zip(axes, data.auxes.items()):
        k = int(np.shape(aux.log_weights)[0])
        title = f"{label(n)}, {data.estimators.get(n, '')}: gradient shares of the K = {k} samples"
        rug(aux, x=x_grid(data.target, data.fitted[n]), title=title, ax=ax)
    return fig


def landscape_panels(data: DemoData):
    """Each divergence's surface, optima and paths from q0."""
    fig, axes = _panels(len(data.surfaces), (5.8, 5.0))
    for ax, (n, surf) in zip(axes, data.surfaces.items()):
        landscape(surf, optima=data.optima.get(n), trajectories=data.trajectories.get(n), ax=ax)
    return fig


def demo_figures(out_dir: str | Path, data: DemoData, *, dpi: int = 90) -> list[Path]:
    r"""Writes the demo's figures for ``data``; returns their paths.

    ``fit_panel.png`` (`fit_panel` per divergence), ``weights.png``
    (`weights_panel`), ``rug.png`` (`rug`), ``landscape.png`` (`landscape`),
    ``estimators.png`` (`estimator_comparison`), ``sweep_summary.png``
    (`sweep_summary`) and ``fit.gif`` (`animate_fit`); a figure whose data is
    empty is skipped, and a ``d = 2`` target gets `fit_panel2d` panels and no
    rug or landscape.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    one_d = data.target.event_shape == ()
    jobs = [
        ("fit_panel.png", fit_panels, bool(data.fitted)),
        ("weights.png", weight_panels, bool(data.auxes)),
        ("rug.png", rug_panels, bool(data.auxes) and one_d),
        ("landscape.png", landscape_panels, bool(data.surfaces) and one_d),
        ("estimators.png", lambda d: estimator_comparison(d.grad_stats), bool(data.grad_stats)),
        ("sweep_summary.png", lambda d: sweep_summary(d.runs, optima=d.optima), bool(data.runs)),
    ]
    written = []
    for fname, draw, wanted in jobs:
        if not wanted:
            continue
        fig = draw(data)
        fig.savefig(out / fname, dpi=dpi)
        plt.close(fig)
        written.append(out / fname)
    if data.frames is not None and one_d:
        optima = data.optima.get(data.frames.name)
        written.append(animate_fit(out / "fit.gif", data.target, data.frames, optima=optima))
    return written
