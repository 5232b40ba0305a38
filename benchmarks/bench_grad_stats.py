"""How fast is `divjax.grad_stats`? One compiled program for every estimator and every K.

Default scenario target, a q with finite chi-squares (``N(1, 1.1^2)``; the
default q0 has chi^2(q || p) = inf), K in {1, 4, 16, 64, 256}
(estimators needing K >= 2 skip K = 1), 10,000 draws each. Prints
the compile time, the run time of the compiled call, draws/s and gradient
evaluations (draws * K)/s, a per-K breakdown for one estimator, and the speed-up
over a Python loop of jitted single draws.

``--table`` prints instead the table of docs/estimators.md: every Monte Carlo
estimator in `divjax.REGISTRY` (alpha = 0.5 where a divergence needs one) at
one ``q`` and one ``K``, its variance and its SNR ``|estimand| / std`` per
parameter, then the signs of chi2_reverse's per-sample contributions to
``d/d mu`` at ``N(1.5, 0.8^2)``, K = 64.

Usage: ``python benchmarks/bench_grad_stats.py [--num-draws N] [--repeats R]``,
``python benchmarks/bench_grad_stats.py --table [--loc M --scale S --k K --num-draws N]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import divjax as dj
from divjax.diagnostics import grad_stats, grad_stats_many
from divjax.divergences import ALL_DIVERGENCES, DIVERGENCES, NEEDS_ALPHA
from divjax.estimators import ESTIMATORS, REGISTRY, min_samples, surrogate

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


def _g(x):
    x = float(x)
    return "inf" if np.isinf(x) else f"{x:.3g}"


def table(loc, scale, k, num_draws):
    """Every Monte Carlo estimator at q = N(loc, scale^2), K = k: a markdown table."""
    p, q = dj.default_target(), dj.Gaussian.from_loc_scale(loc, scale)
    key = jax.random.key(0)
    print(f"q = N({loc:g}, {scale:g}^2), K = {k}, {num_draws} draws; alpha = 0.5 where needed")
    print(
        "| divergence | estimator | estimand | min K | var loc | var log_scale "
        "| SNR loc | SNR log_scale | bias loc (s.e.) | bias log_scale (s.e.) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ALL_DIVERGENCES:
        ests = [e for e in ESTIMATORS[name] if e != "exact"]
        alpha = 0.5 if name in NEEDS_ALPHA else None
        stats = grad_stats_many(name, ests, p, q, (k,), num_draws, key, alpha=alpha)
        for e in ests:
            s = jax.tree_util.tree_map(lambda a: np.asarray(a)[0], stats[e])
            info = REGISTRY[(name, e)]
            z = [
                float(getattr(s.bias, f)) / float(getattr(s.stderr, f))
                for f in ("loc", "log_scale")
            ]
            print(
                f"| {name} | {e} | {info.estimand} | {info.min_samples} "
                f"| {_g(s.variance.loc)} | {_g(s.variance.log_scale)} "
                f"| {_g(s.snr_exact.loc)} | {_g(s.snr_exact.log_scale)} "
                f"| {z[0]:+.1f} | {z[1]:+.1f} |"
            )


def chi2_reverse_signs(num_draws=100):
    """Signs of each sample's contribution to d/d mu for chi2_reverse at N(1.5, 0.8^2), K = 64."""
    p, q = dj.default_target(), dj.Gaussian.from_loc_scale(1.5, 0.8)
    print("\nchi2_reverse at q = N(1.5, 0.8^2), K = 64: per-sample contributions to d/d mu")
    for e in ESTIMATORS["chi2_reverse"]:
        if e == "exact":
            continue
        grad_fn = jax.jit(jax.grad(surrogate("chi2_reverse", e, p, 64), has_aux=True))
        _, aux = grad_fn(q, jax.random.key(0))
        c = np.asarray(aux.contributions.loc)
        many = jax.jit(jax.vmap(lambda kk, f=grad_fn: f(q, kk)[1].contributions.loc))
        cm = np.asarray(many(jax.random.split(jax.random.key(1), num_draws)))
        print(
            f"  {e:<9} key(0): {int((c > 0).sum())} positive, {int((c < 0).sum())} negative; "
            f"over {num_draws} draws: {(cm > 0).mean():.1%} positive, "
            f"{int(((cm > 0).any(1) & (cm < 0).any(1)).sum())} of {num_draws} draws have both signs"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-draws", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-draws", type=int, default=300)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--loc", type=float, default=1.0)
    parser.add_argument("--scale", type=float, default=1.1)
    parser.add_argument("--k", type=int, default=16)
    args = parser.parse_args()
    if args.table:
        t = time.perf_counter()
        table(args.loc, args.scale, args.k, args.num_draws)
        chi2_reverse_signs()
        print(f"\n{time.perf_counter() - t:.0f} s")
        return
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
