"""Memory stays bounded for any number of seeds: a sweep of 100,000 seeds in seed chunks.

kl_reverse/reparam with K in {1, 4, 16, 64, 256}, 2000 steps, 100,000 seeds
(6.8e10 particle-steps), run in chunks of ``--chunk`` seeds through one
compiled program, each finished chunk written to ``--out-dir`` (so an
interrupted run resumes where it stopped). Prints the time, the throughput
and the peak resident memory of this process.

    python benchmarks/bench_big_sweep.py                      # the full run (long on 2 cores)
    python benchmarks/bench_big_sweep.py --seeds 4096 --steps 200
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time

import jax

import divjax as dj


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--out-dir", default=None, help="default: a temporary folder")
    a = ap.parse_args(argv)
    ks = (1, 4, 16, 64, 256)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        res = dj.sweep(
            dj.default_target(), dj.default_q0(), [("kl_reverse", "reparam")], num_samples=ks,
            num_seeds=a.seeds, num_steps=a.steps, key=jax.random.key(0), seed_chunk=a.chunk,
            out_dir=a.out_dir or tmp, progress=True,
        )  # fmt: skip
        wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ps = res.particle_steps()
    print(
        f"seeds={a.seeds} steps={a.steps} K={ks} chunk={a.chunk} ({-(-a.seeds // a.chunk)} chunks)"
    )
    print(
        f"wall {wall:.1f} s (compile {res.compile_s:.1f} s, run {res.run_s:.1f} s), "
        f"{ps:.3g} particle-steps, {ps / res.run_s:.3g} particle-steps/s, peak RSS {peak_mb:.0f} MB"
    )
    outcomes = {o: float(m.mean()) for o, m in dj.status.outcome_masks(res.runs[-1].status).items()}
    print(f"K=256 outcomes: {outcomes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
