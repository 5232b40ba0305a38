"""Plain helpers (no pytest) to drive notebooks in a real Jupyter server and headless Chromium.

Used by ``tests/test_explorer_browser.py``; the system Chromium only (never a
downloaded browser), through Playwright's ``executable_path``.

Pieces, each bounded in time so a broken setup fails instead of hanging:

- `JupyterServer`: JupyterLab on 127.0.0.1, a free port, a random token, a temporary
  root and temporary config/data/runtime/settings/workspace dirs (nothing read from or
  written to ``~``); ready when ``/api/status`` answers; stopped through ``/api/shutdown``
  (which shuts its kernels down too), then SIGTERM, then SIGKILL of its process group
  (kernels left behind by a SIGKILLed server exit on their own within a second or two).
- `launch_chromium`: the system Chromium (never a downloaded one) through Playwright,
  headless, with the flags this closed network needs and a fresh ``--user-data-dir``.
- `open_notebook`, `run_all_cells`, `cell_outputs`: JupyterLab is started with
  ``expose_app_in_browser`` so the test talks to ``window.jupyterapp`` (its command
  registry and the notebook *model*) instead of clicking menus or scraping prompts.
- `ipympl_canvas_*`: find an ipympl figure in the page, read its pixels, drag on it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("BROWSER_TEST_CHROMIUM", "/usr/bin/chromium")

# Without the background-networking flags Chromium keeps calling home; here those
# connections are refused and only add noise and delay.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # we run as root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
]

# JupyterLab plugins that pop up toasts or reach for the network.
DISABLED_LAB_PLUGINS = {
    "@jupyterlab/apputils-extension:announcements": True,
}


def chromium_missing_reason() -> str | None:
    """Why browser tests cannot run here, or None if they can."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} not found (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    return None


def free_port() -> int:
    """A port that was free a moment ago (the server is started with port_retries=0,
    so a lost race fails loudly and `JupyterServer.start` retries with a new port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(RuntimeError):
    pass


class JupyterServer:
    """A JupyterLab server in a sandbox of temporary directories.

    Use as a context manager, or call `start` / `stop` (both bounded in time).
    """

    def __init__(
        self, root: str | Path | None = None, *, start_timeout: float = 90.0,
        extra_args: tuple[str, ...] = (), env: dict | None = None,
    ):  # fmt: skip
        self._own_root = root is None
        self.base = Path(tempfile.mkdtemp(prefix="jupyter-harness-"))
        self.root = Path(root) if root is not None else self.base / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.start_timeout = start_timeout
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(env or {})  # for the server and its kernels
        self.token = secrets.token_hex(24)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.base / "server.log"

    # -- urls -----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lab_url(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}"

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 10.0):
        """An authenticated REST call (token header: no xsrf cookie needed)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- lifecycle --------------------------------------------------------------
    def _env(self) -> dict:
        env = dict(os.environ)
        for name, sub in [
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_DATA_DIR", "data"),  # no user kernelspecs shadowing ours
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"),
            ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces"),
            ("IPYTHONDIR", "ipython"),
            ("MPLCONFIGDIR", "mpl"),
        ]:
            d = self.base / sub
            d.mkdir(exist_ok=True)
            env[name] = str(d)
        env.pop("MPLBACKEND", None)  # an inherited Agg would fight `%matplotlib widget`
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        labconfig = self.base / "config" / "labconfig"
        labconfig.mkdir(exist_ok=True)
        (labconfig / "page_config.json").write_text(
            json.dumps({"disabledExtensions": DISABLED_LAB_PLUGINS})
        )
        return env

    def _cmd(self, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp for the tests
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",  # no PyPI queries from the server
            *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []),  # CI runs as root
            # an orphan (test runner SIGKILLed) goes away on its own
            "--ServerApp.shutdown_no_activity_timeout=900",
            "--MappingKernelManager.cull_idle_timeout=900",
            *self.extra_args,
        ]

    def start(self, attempts: int = 3) -> JupyterServer:
        env = self._env()
        last = ""
        for _ in range(attempts):
            self.port = free_port()
            logf = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                self._cmd(self.port),
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                # its own process group, for killpg. Kernels are not in it (jupyter_client
                # gives each its own session) but exit by themselves once the server is
                # gone: ipykernel polls its parent (JPY_PARENT_PID) every second.
                start_new_session=True,
            )
            logf.close()
            try:
                self._wait_ready()
                return self
            except ServerError as e:
                last = str(e)
                self._kill()
                log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                self.log_path.rename(self.log_path.with_suffix(f".{self.port}.log"))
                if "no available port" not in log and "already in use" not in log:
                    self.log_path.write_text(log)
                    break  # not a lost port race: retrying would not help
        raise ServerError(
            f"Jupyter server did not start: {last}\n--- log ---\n{self.log()[-4000:]}"
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"server exited with code {self.proc.returncode}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        raise ServerError(f"server not ready after {self.start_timeout:.0f} s")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.api("POST", "/api/shutdown", timeout=5)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        if self._own_root:
            shutil.rmtree(self.base, ignore_errors=True)

    def _kill(self) -> None:
        """SIGTERM, then SIGKILL, the server's process group."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # anything else left in the group (a terminal, a helper) goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- browser -----------------------------------------------------------------------


def launch_chromium(
    playwright, user_data_dir: str | Path, *, viewport=(1280, 1000), timeout_ms: int = 60_000
):
    """A headless system-Chromium context with a fresh profile (Playwright persistent
    context: one browser process per context, no downloaded browser)."""
    ctx = playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": viewport[0], "height": viewport[1]},
        device_scale_factor=1,
        timeout=timeout_ms,  # launch timeout
    )
    ctx.set_default_timeout(timeout_ms)
    return ctx


def open_notebook(page, server: JupyterServer, path: str, *, timeout_ms: int = 90_000) -> None:
    """Opens ``path`` (relative to the server root) in JupyterLab and waits for its kernel."""
    page.goto(server.lab_url(path), wait_until="domcontentloaded", timeout=timeout_ms)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=timeout_ms)
    # the notebook panel is the current widget once the document is open ...
    page.wait_for_function(
        """(path) => {
            const w = window.jupyterapp.shell.currentWidget;
            return w && w.context && w.context.path === path && w.content && w.sessionContext;
        }""",
        arg=path,
        timeout=timeout_ms,
    )
    # ... and it has a live, idle kernel
    page.wait_for_function(
        """() => {
            const sc = window.jupyterapp.shell.currentWidget.sessionContext;
            return sc.session && sc.session.kernel && sc.kernelDisplayStatus === 'idle';
        }""",
        timeout=timeout_ms,
    )


def run_all_cells(page, *, timeout_ms: int = 120_000) -> None:
    """Runs every cell via JupyterLab's own command, and waits until all have run."""
    # fire and forget: page.evaluate has no timeout, so awaiting the command here could
    # hang on a cell that never ends; the bounded wait below is what we block on
    page.evaluate(
        """() => { window.__runAll = window.jupyterapp.commands
                     .execute('notebook:run-all-cells')
                     .then(() => 'done', e => 'error: ' + e); }"""
    )
    page.wait_for_function(
        """() => {
            const w = window.jupyterapp.shell.currentWidget;
            const cells = w.content.widgets.filter(c => c.model.type === 'code');
            const done = cells.every(c => c.model.executionCount !== null
                && !c.promptNode.textContent.includes('*'));
            return done && w.sessionContext.kernelDisplayStatus === 'idle';
        }""",
        timeout=timeout_ms,
    )


def cell_outputs(page) -> list[list[dict]]:
    """Each code cell's outputs as nbformat JSON, read from the notebook model."""
    return page.evaluate(
        """() => window.jupyterapp.shell.currentWidget.content.widgets
              .filter(c => c.model.type === 'code')
              .map(c => c.model.outputs.toJSON())"""
    )


def kernel_stdout(page, code: str, *, timeout_ms: int = 60_000) -> str:
    """Runs ``code`` in the open notebook's kernel (not as a cell) and returns its stdout."""
    return page.evaluate(
        """([code, ms]) => new Promise((resolve, reject) => {
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            const future = kernel.requestExecute({code: code});
            let out = "";
            future.onIOPub = (msg) => {
                if (msg.header.msg_type === "stream") out += msg.content.text;
                if (msg.header.msg_type === "error") out += "ERROR " + msg.content.evalue;
            };
            setTimeout(() => reject(new Error("kernel_stdout timed out")), ms);
            future.done.then(() => resolve(out), reject);
        })""",
        [code, timeout_ms],
    )


def output_text(outputs: list[list[dict]]) -> str:
    parts = []
    for cell in outputs:
        for o in cell:
            if o.get("output_type") == "stream":
                t = o.get("text", "")
                parts.append("".join(t) if isinstance(t, list) else t)
    return "".join(parts)


def errors(outputs: list[list[dict]]) -> list[dict]:
    return [o for cell in outputs for o in cell if o.get("output_type") == "error"]


# -- ipympl --------------------------------------------------------------------------

# ipympl draws into a <canvas> and listens for mouse events on a second, transparent
# "top" canvas stacked on it (z-index 1) inside .jupyter-matplotlib-canvas-div.
IPYMPL_CANVAS = ".jupyter-matplotlib-canvas-div canvas:first-of-type"
IPYMPL_TOP_CANVAS = ".jupyter-matplotlib-canvas-div canvas:nth-of-type(2)"

_CANVAS_STATS_JS = """(sel) => {
    const c = document.querySelector(sel);
    if (!c || !c.width || !c.height) return null;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let ink = 0, colors = new Set();
    for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] > 0 && (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250)) ink++;
        if (i % 64 === 0) colors.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    }
    return {width: c.width, height: c.height, ink: ink, colors: colors.size,
            url: c.toDataURL('image/png')};
}"""


def ipympl_canvas_stats(page, index_selector: str = IPYMPL_CANVAS) -> dict | None:
    """Size, count of non-white pixels, rough colour count and a PNG data URL of the canvas."""
    return page.evaluate(_CANVAS_STATS_JS, index_selector)


def wait_for_ipympl_canvas(page, *, min_ink: int = 500, timeout_ms: int = 60_000) -> dict:
    """Waits until the ipympl canvas exists and has been painted (not blank)."""
    page.wait_for_selector(IPYMPL_TOP_CANVAS, state="visible", timeout=timeout_ms)
    page.wait_for_function(
        f"(sel) => {{ const s = ({_CANVAS_STATS_JS})(sel); return s && s.ink >= {min_ink}; }}",
        arg=IPYMPL_CANVAS,
        timeout=timeout_ms,
    )
    return ipympl_canvas_stats(page)


def ipympl_canvas_pixel(page, frac_xy, selector: str = IPYMPL_CANVAS) -> list[int]:
    """RGBA of the canvas at a figure-fraction point (origin bottom left)."""
    return page.evaluate(
        """([sel, fx, fy]) => {
            const c = document.querySelector(sel);
            const x = Math.min(c.width - 1, Math.round(fx * c.width));
            const y = Math.min(c.height - 1, Math.round((1 - fy) * c.height));
            return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data);
        }""",
        [selector, *frac_xy],
    )


def wait_until_settled(
    page, *, quiet_s: float = 0.5, timeout_s: float = 30.0, selector: str = IPYMPL_CANVAS
) -> str:
    """Waits until the kernel is idle and the canvas has not changed for ``quiet_s``
    (a drag queues many motion events; the kernel draws the last one a little later).
    Returns the settled canvas as a PNG data URL."""
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        idle, url = page.evaluate(
            """(sel) => [window.jupyterapp.shell.currentWidget.sessionContext
                             .kernelDisplayStatus === 'idle',
                         document.querySelector(sel).toDataURL('image/png')]""",
            selector,
        )
        if url != last or not idle:
            last, since = url, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return url
        time.sleep(0.1)
    raise TimeoutError(f"canvas still changing (or kernel busy) after {timeout_s} s")


def save_data_url(url: str, path: str | Path) -> Path:
    head, b64 = url.split(",", 1)
    path = Path(path)
    path.write_bytes(base64.b64decode(b64))
    return path


def figure_fraction_to_page(
    page, frac_xy, selector: str = IPYMPL_TOP_CANVAS
) -> tuple[float, float]:
    """Maps matplotlib figure-fraction coordinates (origin bottom left) to page pixels,
    through the canvas element's box (independent of dpi and devicePixelRatio)."""
    loc = page.locator(selector)
    loc.scroll_into_view_if_needed()  # mouse coordinates are viewport coordinates
    box = loc.bounding_box()
    fx, fy = frac_xy
    return box["x"] + fx * box["width"], box["y"] + (1.0 - fy) * box["height"]


def drag(page, start_xy, end_xy, *, steps: int = 12, pause_s: float = 0.06) -> None:
    """Press, move in steps, release. ipympl throttles mousemove to one per 33 ms
    (``pan_zoom_throttle``), so the moves are spaced out; the release carries its own
    position anyway."""
    (x0, y0), (x1, y1) = start_xy, end_xy
    page.mouse.move(x0, y0)
    time.sleep(pause_s)
    page.mouse.down()
    time.sleep(pause_s)
    for i in range(1, steps + 1):
        t = i / steps
        page.mouse.move(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
        time.sleep(pause_s)
    page.mouse.up()
