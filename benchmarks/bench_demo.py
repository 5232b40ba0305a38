"""How long does the main job take? ``divjax demo`` from a cold and from a warm compilation cache.

Runs the demo twice in fresh processes with a new, empty persistent
compilation cache (``XDG_CACHE_HOME`` pointed at a temporary folder): the
first run compiles everything, the second loads the compiled programs. Each
run prints where its time went (sweeps compiling and running, optima,
gradient statistics, figures); this script prints both reports and the wall
times side by side.

    python benchmarks/bench_demo.py            # the full demo, twice
    python benchmarks/bench_demo.py --quick    # divjax demo --quick, twice
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def run(cache_home: str, out: str, quick: bool) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "divjax", "demo", "--out", out] + (["--quick"] if quick else [])
    env = dict(os.environ, XDG_CACHE_HOME=cache_home)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    report = [line for line in proc.stdout.splitlines() if line.startswith("time:")]
    return wall, report[-1] if report else "(no time report)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="divjax demo --quick")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        cold, cold_report = run(cache, out, a.quick)
        warm, warm_report = run(cache, out, a.quick)
    print(f"{'run':<12}{'wall s':>8}  breakdown")
    print(f"{'cold cache':<12}{cold:8.1f}  {cold_report}")
    print(f"{'warm cache':<12}{warm:8.1f}  {warm_report}")
    print(f"demo cold_s={cold:.1f} warm_s={warm:.1f} (aims: cold <= 45, warm <= 15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
