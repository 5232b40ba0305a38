"""The notebook the Jupyter tests run: the explorer under ``%matplotlib widget`` (ipympl).

Cells: the backend; the explorer (one shared start, optima off, no threads, not
running, so every change comes from the test); a readout (an ipywidgets
``Label``, DOM class ``explorer-readout``) that the explorer's own mouse
handlers keep up to date; the display; the geometry the browser test needs (a
mode's handle and two landscape points as figure fractions).
"""

from __future__ import annotations

import os

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETUP = "%matplotlib widget"

EXPLORER = r"""
import json, os, sys
import matplotlib
import matplotlib.pyplot as plt
import ipywidgets as widgets
from IPython.display import display
import divjax
from divjax.explorer import Explorer

assert divjax.__file__.startswith(os.environ["DIVJAX_ROOT"]), divjax.__file__
plt.ioff()  # the canvas is displayed below, with the readout
ex = Explorer(threads=False, optima=False, running=False)
fig = ex.fig
assert type(fig.canvas).__module__ == "ipympl.backend_nbagg", type(fig.canvas)
readout = widgets.Label()
readout.add_class("explorer-readout")

def read_state(event=None):
    s = ex.session
    locs = ", ".join(f"{m:.2f}" for m in s.target.locs.tolist())
    q = s.q("reverse")
    readout.value = f"modes at {locs} | q rev: mean {float(q.loc):.2f} | step {s.step('reverse')}"

for name in ("button_release_event", "motion_notify_event", "key_press_event"):
    fig.canvas.mpl_connect(name, read_state)  # after the explorer's own handlers
read_state()
""".strip()

SHOW = "display(widgets.VBox([fig.canvas, readout]))"

GEOMETRY = r"""
def fraction(ax, xy):
    return [float(v) for v in fig.transFigure.inverted().transform(ax.transData.transform(xy))]

def geometry():
    # where to drag, as figure fractions (the axes move after a drag)
    xs, ys = ex.figure.fit.modes.get_data()
    land = ex.figure.landscape.ax
    print("GEOMETRY " + json.dumps({
        "mode": fraction(ex.figure.fit.ax, (xs[1], ys[1])),
        "mode_to": fraction(ex.figure.fit.ax, (xs[1] - 1.5, ys[1])),
        "land_from": fraction(land, (1.0, 0.3)),
        "land_to": fraction(land, (-1.5, -0.4)),
        "backend": matplotlib.get_backend(),
    }))

geometry()
""".strip()


def code_notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def suite_cache() -> str:
    """The test run's JAX compilation cache (``tests/conftest.py``), or ``$DIVJAX_JAX_CACHE``:
    a kernel or window process loads what the other tests already compiled."""
    return os.environ.get("DIVJAX_JAX_CACHE") or os.environ["JAX_COMPILATION_CACHE_DIR"]


def kernel_env(cache_dir: str) -> dict:
    """What a kernel needs: this tree first on the path, a shared JAX compilation cache."""
    return {
        "DIVJAX_ROOT": ROOT,
        "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
        "JAX_COMPILATION_CACHE_DIR": cache_dir,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
