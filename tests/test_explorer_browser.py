"""The explorer in JupyterLab in a real browser: headless system Chromium via Playwright.

A JupyterLab server runs `explorer_notebook`; Chromium opens it, runs all
cells, and the test checks the ipympl canvas was painted, drags on the
landscape and then a mode of the target with real mouse events on the canvas,
and sees the readout (a DOM widget the explorer's handlers update) follow and
the canvas redrawn. Skips with the reason where /usr/bin/chromium, playwright,
jupyterlab or ipympl is missing. Run with ``pytest -m browser``.
"""

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests import browser_harness as bh
from tests.explorer_notebook import (
    EXPLORER,
    GEOMETRY,
    SETUP,
    SHOW,
    code_notebook,
    kernel_env,
    suite_cache,
)

pytestmark = pytest.mark.browser
READOUT = ".explorer-readout"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    path = os.environ.get("DIVJAX_ARTIFACTS")
    out = Path(path) if path else tmp_path_factory.mktemp("browser-artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    reason = bh.chromium_missing_reason()
    if reason:
        pytest.skip(f"browser test skipped: {reason}")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install jupyterlab)")
    pytest.importorskip("ipympl", reason="ipympl is not installed (pip install ipympl)")
    srv = bh.JupyterServer(env=kernel_env(suite_cache()))
    try:
        srv.start()
    except bh.ServerError as err:
        srv.stop()
        pytest.fail(str(err), pytrace=False)
    yield srv
    srv.stop()


@pytest.fixture
def page(server, tmp_path, artifacts, request):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = bh.launch_chromium(p, tmp_path / "profile", viewport=(1920, 1200))
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.artifacts = str(artifacts)
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        try:
            yield page
        finally:
            (artifacts / "console.log").write_text("\n".join(console))
            (artifacts / "server.log").write_text(server.log())
            ctx.close()


def _readout(page) -> str:
    return page.locator(READOUT).inner_text().strip()


def _wait_readout(page, pattern: str, timeout_ms: int = 60_000) -> str:
    """Waits for the readout to match ``pattern`` (AssertionError with what it says)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "([sel, pat]) => { const e = document.querySelector(sel);"
            " return e && new RegExp(pat).test(e.textContent); }",
            arg=[READOUT, pattern],
            timeout=timeout_ms,
        )
    except PlaywrightTimeout:
        page.screenshot(path=str(Path(page.artifacts) / "lab-FAILED.png"))
        raise AssertionError(f"readout {_readout(page)!r} never matched {pattern!r}") from None
    return _readout(page)


def test_drag_a_mode_and_q_in_jupyterlab(server, page, artifacts):
    nb = code_notebook(SETUP, EXPLORER, SHOW, GEOMETRY)
    import nbformat

    nbformat.write(nb, server.root / "explorer.ipynb")
    t0 = time.monotonic()
    bh.open_notebook(page, server, "explorer.ipynb")
    page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
    bh.run_all_cells(page, timeout_ms=300_000)  # compiling the explorer takes a while
    outputs = bh.cell_outputs(page)
    assert not bh.errors(outputs), bh.errors(outputs)
    geometry = json.loads(re.search(r"GEOMETRY (.*)", bh.output_text(outputs)).group(1))

    # 1. the canvas arrived and was painted
    before = bh.wait_for_ipympl_canvas(page, min_ink=20_000, timeout_ms=120_000)
    assert before["width"] >= 1000 and before["colors"] >= 10, before
    bh.save_data_url(before["url"], artifacts / "canvas-before.png")
    assert _readout(page).startswith("modes at -2.00, 3.00"), _readout(page)

    page.screenshot(path=str(artifacts / "lab-before.png"))

    # 2. drag on the landscape: both q's start where the mouse is let go
    start = bh.figure_fraction_to_page(page, geometry["land_from"])
    end = bh.figure_fraction_to_page(page, geometry["land_to"])
    bh.drag(page, start, end)
    text = _wait_readout(page, r"q rev: mean -1\.(4[5-9]|5[0-5])")
    after = bh.wait_until_settled(page, timeout_s=120)
    assert after != before["url"]

    # 3. drag the right mode 1.5 to the left (where it is now: the axes moved with q)
    fresh = bh.kernel_stdout(page, "geometry()")
    geometry = json.loads(re.search(r"GEOMETRY (.*)", fresh).group(1))
    start = bh.figure_fraction_to_page(page, geometry["mode"])
    end = bh.figure_fraction_to_page(page, geometry["mode_to"])
    bh.drag(page, start, end)
    # the release carries the last position (ipympl throttles the motions)
    text = _wait_readout(page, r"modes at -2\.00, 1\.(4[5-9]|5[0-5])")
    settled = bh.wait_until_settled(page, timeout_s=120)
    loc = float(re.search(r"modes at -2\.00, ([-\d.]+)", _readout(page)).group(1))
    assert loc == pytest.approx(1.5, abs=0.05), text
    assert settled != after
    bh.save_data_url(settled, artifacts / "canvas-after.png")
    page.screenshot(path=str(artifacts / "lab-after.png"))
    print(
        f"browser test: {time.monotonic() - t0:.1f} s; readout {text!r}; artifacts in {artifacts}"
    )
