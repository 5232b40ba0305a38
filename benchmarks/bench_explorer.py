"""How fast is `divjax.explorer`? Compute per frame, and frames/s in a real Tk window.

Part 1 (Agg, no screen), per setting, after compilation:

- compute steps/s: one `Session.advance` of many steps (`divjax.fitter`'s step
  in one compiled loop, both directions) plus the frame's view;
- compute ms/frame: `Session.advance` of ``--steps-per-frame`` steps, copied to the host;
- update ms/frame: `Explorer.frame` (compute plus setting every artist), no drawing;
- full draw ms: one full render of the figure (what a widget change costs).

Part 2 (``--tk``; needs a display, or ``--xvfb`` to start one): the explorer in
a TkAgg window with every panel on (fit, weights, rug, live landscape with
trajectories, optima), running on its timer for ``--seconds``; frames/s counts
the frames put on screen, steps/s the optimizer steps taken meanwhile. The
background work (optima, landscape) is finished before the count starts.

The machine's load average is printed too: on a shared CPU every number moves with it.

Usage::

    python benchmarks/bench_explorer.py                       # part 1
    python benchmarks/bench_explorer.py --tk --xvfb           # part 2 under Xvfb
    python benchmarks/bench_explorer.py --tk --xvfb --preset page --speed 300
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

SETTINGS = (
    ("main view: KL both, exact", {}),
    ("KL both, Monte Carlo", {"estimator": "snis", "estimators": {"reverse": "reparam"}}),
    ("chi2 both, Monte Carlo", {"divergence": "chi2", "estimator": "snis2"}),
    ("page preset", {"preset": "page"}),
)


def _best(fn, repeats=5):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def agg(steps_per_frame: int, compute_steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from divjax.explorer import Explorer

    head = f"{'setting':<30}{'init s':>8}{'steps/s':>12}{'ms/frame':>10}"
    head += f"{'update ms':>11}{'draw ms':>9}"
    print(head)
    print("-" * len(head))
    for label, options in SETTINGS:
        t = time.perf_counter()
        ex = Explorer(threads=False, optima=False, running=False, **options)
        init = time.perf_counter() - t
        s = ex.session
        s.advance(compute_steps)
        steps = compute_steps / _best(lambda s=s: s.advance(compute_steps), 3)
        frame = _best(lambda s=s: [s.advance(steps_per_frame) for _ in range(20)], 3) / 20
        update = _best(lambda ex=ex: [ex.frame(steps_per_frame) for _ in range(20)], 3) / 20
        draw = _best(ex.fig.canvas.draw, 3)
        print(
            f"{label:<30}{init:8.1f}{steps:12,.0f}{1e3 * frame:10.2f}{1e3 * update:11.2f}"
            f"{1e3 * draw:9.0f}",
            flush=True,
        )
        ex.close()


def tk(seconds: float, preset: str | None, speed: float, optima: bool, screenshot: str | None):
    import matplotlib

    matplotlib.use("TkAgg")
    import matplotlib.pyplot as plt

    from divjax.explorer import explore

    options = {"preset": preset} if preset else {}
    t = time.perf_counter()
    ex = explore(optima=optima, speed=speed, **options)
    ex.fig.canvas.start_event_loop(0.5)
    while ex.background.pending():  # optima, landscape: finished before counting
        ex.fig.canvas.start_event_loop(0.2)
    print(f"ready after {time.perf_counter() - t:.1f} s (compilation, optima, landscape)")
    drawn = {"n": 0}
    draw = ex.figure.draw

    def counting_draw():
        drawn["n"] += 1
        draw()

    ex.figure.draw = counting_draw
    steps0 = ex.session.step("reverse")
    t = time.perf_counter()
    ex.fig.canvas.start_event_loop(seconds)
    elapsed = time.perf_counter() - t
    steps = ex.session.step("reverse") - steps0
    full = "blit" if ex.figure.blit else "full draws"
    print(
        f"Tk window ({full}), every panel on, {seconds:.0f} s: "
        f"{drawn['n'] / elapsed:.1f} frames/s, {steps / elapsed:,.0f} steps/s "
        f"(speed set to {speed:,.0f}); the explorer's own meter: {ex.clock}"
    )
    if screenshot:
        ex.savefig(screenshot, dpi=100)
    ex.close()
    plt.close("all")


def with_xvfb(argv) -> int:
    """Runs this script again (without ``--xvfb``) on a fresh Xvfb display."""
    if shutil.which("Xvfb") is None:
        print("no Xvfb (apt-get install xvfb)", file=sys.stderr)
        return 2
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as f:
            display = ":" + f.readline().strip()
        env = dict(os.environ, DISPLAY=display, MPLBACKEND="TkAgg")
        args = [a for a in argv if a != "--xvfb"]
        return subprocess.run([sys.executable, __file__, *args], env=env).returncode
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps-per-frame", type=int, default=10)
    parser.add_argument("--compute-steps", type=int, default=5000)
    parser.add_argument("--tk", action="store_true", help="measure frames/s in a Tk window")
    parser.add_argument("--xvfb", action="store_true", help="start an Xvfb display for --tk")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--speed", type=float, default=300.0, help="steps/s asked for")
    parser.add_argument("--no-optima", action="store_true")
    parser.add_argument("--screenshot", default=None, help="save the window's figure here")
    args = parser.parse_args()
    if args.xvfb:
        return with_xvfb(sys.argv[1:])
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.tk:
        tk(args.seconds, args.preset, args.speed, not args.no_optima, args.screenshot)
    else:
        agg(args.steps_per_frame, args.compute_steps)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
