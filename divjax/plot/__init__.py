r"""Pictures of fits, draws, surfaces and sweeps: results in, `matplotlib.figure.Figure` out.

Import it explicitly (``from divjax import plot``); ``import divjax`` does not
import matplotlib. Nothing here fits, searches for optima or sweeps: every
function draws results computed elsewhere (and may evaluate a density on a
grid, or the exact divergence at ``q`` for a title). Panel functions take an
optional ``ax`` (multi-panel ones ``axes``); none calls ``plt.show()`` and
importing this package does not choose a backend.
"""

from divjax.plot.animate import Frames, animate_fit
from divjax.plot.figures import DemoData, demo_figures
from divjax.plot.landscape import landscape
from divjax.plot.panels import fit_figure, fit_panel, rug, weights_panel, x_grid
from divjax.plot.panels2d import ellipse, fit_panel2d, window2d
from divjax.plot.style import (
    INFINITE,
    LABELS,
    NEGATIVE,
    OPTIMUM,
    OUTCOME_COLORS,
    POSITIVE,
    PURPLE,
    SEEKING,
    TARGET,
    estimator_styles,
    outcome_handles,
)
from divjax.plot.summary import estimator_comparison, sweep_summary

__all__ = [
    "INFINITE",
    "LABELS",
    "NEGATIVE",
    "OPTIMUM",
    "OUTCOME_COLORS",
    "POSITIVE",
    "PURPLE",
    "SEEKING",
    "TARGET",
    "DemoData",
    "Frames",
    "animate_fit",
    "demo_figures",
    "ellipse",
    "estimator_comparison",
    "estimator_styles",
    "fit_figure",
    "fit_panel",
    "fit_panel2d",
    "landscape",
    "outcome_handles",
    "rug",
    "sweep_summary",
    "weights_panel",
    "window2d",
    "x_grid",
]
