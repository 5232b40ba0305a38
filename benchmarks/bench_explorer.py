"""How fast is `divjax.explorer`? Frames/s with drawing, and the optimizer's steps/s.

Agg backend, the default scenario (target ``0.3 N(-2, 0.5^2) + 0.7 N(3, 1)``,
``q0 = N(0, 5)``, forward KL, exact gradients, 10 steps per frame), plus two
Monte Carlo settings. Prints, per setting:

- compute steps/s: one `divjax.explorer.advance` call of many steps (no drawing);
- compute ms/frame: one call of ``steps_per_frame`` steps plus the copy to the host;
- frames/s (full draw): `Explorer.frame` then ``fig.canvas.draw()`` every frame;
- frames/s (blit): `Explorer.frame` then `Explorer.draw` (what the live window
  does: curves blitted every frame, texts every 0.2 s, a full draw whenever axes
  limits change; those full draws are counted in and reported);
- steps/s shown: steps per frame x frames/s (blit).

The machine's load average is printed too: on a shared CPU every number moves with it.

Usage: ``python benchmarks/bench_explorer.py [--frames N] [--steps-per-frame S]``.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from divjax.explorer import Explorer, advance  # noqa: E402

SETTINGS = (
    ("kl_forward", "exact"),
    ("kl_forward", "snis"),
    ("kl_reverse", "reparam"),
)


def _advance(ex: Explorer, num_steps: int):
    out = advance(
        ex.target,
        ex.state,
        np.array([ex.learning_rate, ex.momentum], np.float32),
        np.int32(num_steps),
        ex.x,
        name=ex.name,
        estimator=ex.estimator,
        panel_estimator=ex.mc_estimator,
        num_samples=ex.num_samples,
    )
    return jax.device_get(out.values)


def _best(fn, repeats=3):
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench(name, estimator, frames, steps_per_frame, compute_steps):
    t = time.perf_counter()
    ex = Explorer(
        divergence=name,
        estimator=estimator,
        optima=None,
        steps_per_frame=steps_per_frame,
        blit=False,
    )
    init_s = time.perf_counter() - t
    compute = _best(lambda: _advance(ex, compute_steps))
    per_frame = _best(lambda: [_advance(ex, steps_per_frame) for _ in range(20)]) / 20
    ex.fig.canvas.draw()
    n_full = max(10, frames // 10)
    t = time.perf_counter()
    for _ in range(n_full):
        ex.frame()
        ex.fig.canvas.draw()
    fps_full = n_full / (time.perf_counter() - t)
    ex.close()

    ex = Explorer(
        divergence=name,
        estimator=estimator,
        optima=None,
        steps_per_frame=steps_per_frame,
        blit=True,
    )
    ex.fig.canvas.draw()
    redraws = 0
    t = time.perf_counter()
    for _ in range(frames):
        ex.frame()
        redraws += ex._needs_full
        ex.draw()
    fps_blit = frames / (time.perf_counter() - t)
    ex.close()
    return dict(
        setting=f"{name}/{estimator}",
        init_s=init_s,
        compute_steps_s=compute_steps / compute,
        compute_ms=1e3 * per_frame,
        fps_full=fps_full,
        fps_blit=fps_blit,
        redraws=f"{redraws}/{frames}",
        steps_s_shown=fps_blit * steps_per_frame,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--steps-per-frame", type=int, default=10)
    parser.add_argument("--compute-steps", type=int, default=20_000)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    head = (
        f"{'setting':<20}{'init s':>8}{'compute steps/s':>17}{'ms/frame':>10}"
        f"{'fps full':>10}{'fps blit':>10}{'full redraws':>14}{'steps/s shown':>15}"
    )
    print(head)
    print("-" * len(head))
    for name, est in SETTINGS:
        r = bench(name, est, args.frames, args.steps_per_frame, args.compute_steps)
        print(
            f"{r['setting']:<20}{r['init_s']:8.1f}{r['compute_steps_s']:17,.0f}"
            f"{r['compute_ms']:10.2f}{r['fps_full']:10.1f}{r['fps_blit']:10.1f}"
            f"{r['redraws']:>14}{r['steps_s_shown']:15,.0f}",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
