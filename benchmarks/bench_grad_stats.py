"""How fast is `divjax.grad_stats`? One compiled program for every estimator and every K.

Default scenario target, a q with finite chi-squares (``N(1, 1.1^2)``; the
default q0 has chi^2(q || p) = inf), K in {1, 4, 16, 64, 256}
(estimators needing K >= 2 skip K = 1), 10,000 draws each. Prints
the compile time, the run time of the compiled call, draws/s and gradient
evaluations (draws * K)/s, a per-K breakdown for one estimator, and the speed-up
over a Python loop of jitted single draws.

Usage: ``python benchmarks/bench_grad_stats.py [--num-draws N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import divjax as dj
from divjax.diagnostics import grad_stats
from divjax.divergences import DIVERGENCES
from divjax.estimators import ESTIMATORS, min_samples, surrogate

KS = (1, 4, 16, 64, 256)


def _ks(est):
    return tuple(k for k in KS if k >= min_samples(est))


def _timed(fn, *args, repeats):
    jax.block_until_ready(fn(*args))
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-draws", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-draws", type=int, default=300)
    args = parser.parse_args()
    n = args.num_draws

    p, q = dj.default_target(), dj.Gaussian.from_loc_scale(1.0, 1.1)
    key = jax.random.key(0)
    pairs = [(name, est) for name in DIVERGENCES for est in ESTIMATORS[name]]

    @jax.jit
    def everything(p, q, key):
        return {(nm, e): grad_stats(nm, e, p, q, _ks(e), n, key) for nm, e in pairs}

    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")
    print(f"{len(pairs)} estimators x K in {KS}, {n} draws each; q = N(1, 1.1^2)")
    print("(draws share keys across estimators: common random numbers)\n")

    t = time.perf_counter()
    compiled = everything.lower(p, q, key).compile()
    compile_s = time.perf_counter() - t
    run_s = _timed(compiled, p, q, key, repeats=args.repeats)
    stats = compiled(p, q, key)

    draws = sum(n * len(_ks(e)) for _, e in pairs)
    evals = sum(n * sum(_ks(e)) for _, e in pairs)
    print("one compiled grad_stats call over all estimators")
    print(f"  compile            {compile_s:8.2f} s")
    print(f"  run (best of {args.repeats})    {run_s:8.3f} s")
    print(f"  draws/s            {draws / run_s:12.3e}   ({draws} draws)")
    print(f"  grad evals/s       {evals / run_s:12.3e}   (draws x K = {evals})\n")

    header = f"{'divergence':<13}{'estimator':<15}" + "".join(f"{'K=' + str(k):>10}" for k in KS)
    tables = (
        ("MSE of the loc gradient", lambda s: s.mse.loc, "{:10.3g}"),
        ("MSE of the log_scale gradient", lambda s: s.mse.log_scale, "{:10.3g}"),
        ("mean cosine(draw, estimand)", lambda s: s.cosine, "{:10.3f}"),
    )
    for title, get, fmt in tables:
        print(title)
        print(header)
        for nm, e in pairs:
            vals = dict(zip(_ks(e), np.asarray(get(stats[(nm, e)])), strict=True))
            row = "".join(fmt.format(vals[k]) if k in vals else f"{'-':>10}" for k in KS)
            print(f"{nm:<13}{e:<15}{row}")
        print()

    # Per-K cost and the naive loop, for one estimator.
    nm, e = "kl_reverse", "reparam"
    print(f"{nm}/{e}: vmapped grad_stats vs a Python loop of jitted single draws")
    print(f"{'K':>6}{'vmapped draws/s':>18}{'loop draws/s':>15}{'speed-up':>10}")
    for k in KS:
        fn = jax.jit(lambda p, q, key, k=k: grad_stats(nm, e, p, q, k, n, key))
        vm_s = _timed(fn, p, q, key, repeats=args.repeats)
        one = jax.jit(jax.grad(surrogate(nm, e, p, k), has_aux=True))
        keys = list(jax.random.split(key, args.loop_draws))
        jax.block_until_ready(one(q, keys[0]))
        t = time.perf_counter()
        for kk in keys:
            g, _ = one(q, kk)
            g = jax.device_get(g)  # a loop needs each draw back to accumulate it
        loop_s = time.perf_counter() - t
        vm_rate, loop_rate = n / vm_s, args.loop_draws / loop_s
        print(f"{k:>6}{vm_rate:>18.3e}{loop_rate:>15.3e}{vm_rate / loop_rate:>9.0f}x")


if __name__ == "__main__":
    main()
