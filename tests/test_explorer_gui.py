"""The explorer in a real Tk window under Xvfb, every panel on; screenshots to look at.

A subprocess opens ``explore(preset="page")`` with TkAgg on a fresh Xvfb
display, lets its timer run, drives it through its handlers (a step, a random
start, the natural-gradient switch), and saves what the window shows (the
figure, and a grab of the X screen). The frame rate is printed, never
asserted (`benchmarks/bench_explorer.py --tk` measures it). Skips with the
reason where Xvfb or Tk is missing. Run with ``pytest -m gui``; set
``DIVJAX_SCREENSHOT_DIR`` to keep the pictures.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.explorer_notebook import ROOT, kernel_env, suite_cache

pytestmark = pytest.mark.gui

SCRIPT = """
import sys, time
import matplotlib.pyplot as plt
from divjax.explorer import explore

out, display = sys.argv[1], sys.argv[2]
ex = explore(preset="page", optima=True, seed=3)
assert plt.get_backend().lower() == "tkagg", plt.get_backend()
canvas = ex.fig.canvas
t = time.monotonic()
while ex.background.pending() and time.monotonic() - t < 240:  # optima, landscape
    canvas.start_event_loop(0.25)
canvas.start_event_loop(3.0)  # running on the timer
step = ex.session.step("reverse")
assert step > 10, step
ex.toggle_run()
ex.step_once()
assert ex.session.step("reverse") == step + 1
ex.random_restart()
ex.set_natural_gradient(False)
ex.set_natural_gradient(True)
ex.toggle_run()
canvas.start_event_loop(3.0)
optima = ex.session.current_optima("reverse")[0]
print("OPTIMA", 0 if optima is None else int(optima.value.shape[0]))
ex.savefig(out + "/figure.png", dpi=100)
try:
    from PIL import ImageGrab
    ImageGrab.grab(xdisplay=display).save(out + "/screen.png")
except Exception as err:
    print("no screen grab:", err)
print(f"STEPS {ex.session.step('reverse')} METER {ex.clock}")
ex.close()
"""


def _has_tk() -> bool:
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="no Xvfb (apt-get install xvfb)")
@pytest.mark.skipif(not _has_tk(), reason="tkinter is missing (apt-get install python3-tk)")
def test_page_preset_in_a_tk_window_under_xvfb(tmp_path):
    import matplotlib.image

    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1700x1000x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as f:
            display = ":" + f.readline().strip()
        env = dict(os.environ, MPLBACKEND="TkAgg", DISPLAY=display)
        env.update(kernel_env(suite_cache()))
        script = tmp_path / "window.py"
        script.write_text(textwrap.dedent(SCRIPT))
        run = subprocess.run(
            [sys.executable, str(script), str(tmp_path), display],
            env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-4000:]
    finally:
        server.terminate()
        server.wait(10)
    lines = run.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("OPTIMA")] == ["OPTIMA 3"]  # every optimum shown
    keep = os.environ.get("DIVJAX_SCREENSHOT_DIR")
    for name in ("figure.png", "screen.png"):
        path = tmp_path / name
        if name == "screen.png" and not path.exists():
            continue
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 600 and image[..., :3].std() > 0.05  # not a blank screen
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(path, os.path.join(keep, name))
    print([ln for ln in lines if ln.startswith("STEPS")][-1])
