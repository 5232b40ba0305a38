"""The explorer in a real Jupyter kernel with ipympl (``%matplotlib widget``), no browser.

nbclient executes `explorer_notebook` and then drives the figure inside the
kernel two ways: synthetic `MouseEvent`'s through the canvas's callback
registry (a mode dragged on the fit panel, a radio button, a key), and the
JSON messages ipympl's frontend sends over the widget comm, through the
``Canvas``'s own message handler (a drag on the landscape: the browser's path
from the comm on, y-flip included). Each step checks the state, the readout
and that the rendered figure changed. Run with ``pytest -m jupyter``.
"""

import json
import re
import time

import pytest

from tests.explorer_notebook import (
    EXPLORER,
    GEOMETRY,
    SETUP,
    SHOW,
    code_notebook,
    kernel_env,
    suite_cache,
)

pytestmark = pytest.mark.jupyter

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed")
pytest.importorskip("ipykernel", reason="ipykernel is not installed")
pytest.importorskip("ipympl", reason="ipympl is not installed (pip install ipympl)")

DRIVE = r"""
import numpy as np
from matplotlib.backend_bases import KeyEvent, MouseEvent

def pixels():
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()

def changed(a, b):
    return int((a != b).any(axis=-1).sum())

def send(name, ax, xy, **kw):
    x, y = ax.transData.transform(xy)
    fig.canvas.callbacks.process(name, MouseEvent(name, fig.canvas, x, y, **kw))

fit = ex.figure.fit.ax
results = {}

# 1. a mode dragged on the fit panel (callbacks.process)
before, text0 = pixels(), readout.value
xs, ys = ex.figure.fit.modes.get_data()
send("button_press_event", fit, (xs[1], ys[1]), button=1)
for t in np.linspace(0, 1, 5)[1:]:
    send("motion_notify_event", fit, (xs[1] - 1.5 * t, ys[1]), buttons={1})
send("button_release_event", fit, (xs[1] - 1.5, ys[1]), button=1)
after = pixels()
assert abs(float(ex.session.target.locs[1]) - (xs[1] - 1.5)) < 0.05, ex.session.target
assert readout.value != text0, readout.value
results["mode"] = {"changed": changed(before, after), "readout": readout.value}

# 2. a radio button and a key
before = pixels()
labels = [t for t in ex.widgets.options.labels if t.get_text() == "natural gradient"]
box = labels[0].get_window_extent(fig.canvas.get_renderer())
for name in ("button_press_event", "button_release_event"):
    MouseEvent(name, fig.canvas, (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2, button=1)._process()
assert ex.session.flags["natural_gradient"]
step = ex.session.step("reverse")
KeyEvent("key_press_event", fig.canvas, "right")._process()
assert ex.session.step("reverse") == step + 1
results["widgets"] = {"changed": changed(before, pixels()), "readout": readout.value}

# 3. a drag on the landscape, as ipympl's frontend sends it over the comm
def frontend(kind, xy, buttons):
    fx, fy = fig.transFigure.inverted().transform(ex.figure.landscape.ax.transData.transform(xy))
    w, h = fig.canvas.get_width_height()
    msg = {"type": kind, "x": fx * w, "y": (1 - fy) * h, "button": 0, "buttons": buttons,
           "modifiers": [], "guiEvent": {}}
    fig.canvas._handle_message(fig.canvas, msg, [])

before, text0 = pixels(), readout.value
frontend("button_press", (1.0, 0.3), 1)
frontend("motion_notify", (0.0, 0.0), 1)
frontend("button_release", (-1.5, -0.4), 0)
q = ex.session.q("reverse")
assert abs(float(q.loc) + 1.5) < 0.05 and abs(float(q.log_scale) + 0.4) < 0.05, q
assert readout.value != text0
results["landscape"] = {"changed": changed(before, pixels()), "readout": readout.value}
print("RESULT " + json.dumps(results))
""".strip()


def test_explorer_in_a_real_kernel_with_ipympl(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    for name, value in kernel_env(suite_cache()).items():
        monkeypatch.setenv(name, value)
    nb = code_notebook(SETUP, EXPLORER, SHOW, GEOMETRY, DRIVE)
    t0 = time.monotonic()
    client = nbclient.NotebookClient(
        nb, timeout=300, startup_timeout=60, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )  # fmt: skip
    client.execute()
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o for o in nb.cells[2].outputs if o.output_type == "display_data"]
    assert shown and "application/vnd.jupyter.widget-view+json" in shown[0]["data"], shown
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    result = json.loads(re.search(r"RESULT (.*)", text).group(1))
    for step in ("mode", "widgets", "landscape"):
        assert result[step]["changed"] > 500, result  # the rendered figure changed
    assert result["mode"]["readout"].startswith("modes at -2.00, 1.50")
    print(f"nbclient run: {time.monotonic() - t0:.1f} s; {result}")
