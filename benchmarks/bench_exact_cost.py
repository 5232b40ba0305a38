"""Time of one exact value and one exact gradient per divergence, in d = 1 and d = 2.

Targets: the default 1-D target ``0.3 N(-2, 0.5^2) + 0.7 N(3, 1)`` at
``q = N(1, 1.1^2)``; a 2-D mixture of two correlated Gaussians at a diagonal
``q = N((0, 0.5), 1.2^2 I)``, and the same ``q`` as a `FullRankGaussian`.
Each function is jitted; the table gives its compile time and the best of
``--repeats`` runs of the compiled call, beside one ``K = 16`` Monte Carlo
gradient (the first estimator in `divjax.ESTIMATORS` after ``exact``) for scale.
``alpha = 0.5`` where a divergence needs one.

Usage: ``python benchmarks/bench_exact_cost.py [--repeats R]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import divjax as dj
from divjax.divergences import ALL_DIVERGENCES, NEEDS_ALPHA


def timed(fn, *args, repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return first - best, best


def problems():
    p2 = dj.GaussianMixture(
        [0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]],
        covs=[[[1.0, 0.3], [0.3, 0.5]], [[0.8, -0.2], [-0.2, 1.2]]],
    )  # fmt: skip
    yield "d=1 Gaussian", dj.default_target(), dj.Gaussian.from_loc_scale(1.0, 1.1)
    yield "d=2 DiagGaussian", p2, dj.DiagGaussian.from_loc_scale([0.0, 0.5], [1.2, 1.2])
    yield "d=2 FullRankGaussian", p2, dj.FullRankGaussian.from_cov([0.0, 0.5], 1.44 * jnp.eye(2))


def ms(x):
    return f"{1e3 * x:.3g} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"backend: {jax.default_backend()}; compile / run (best of {args.repeats})")
    print(
        "| problem | divergence | value: compile / run | gradient: compile / run "
        "| MC K=16 gradient: compile / run |"
    )
    print("| --- | --- | --- | --- | --- |")
    key = jax.random.key(0)
    for label, p, q in problems():
        for name in ALL_DIVERGENCES:
            alpha = 0.5 if name in NEEDS_ALPHA else None
            value = jax.jit(
                lambda q, name=name, alpha=alpha, p=p: dj.divergence(name, p, q, alpha=alpha)
            )
            grad = jax.jit(
                lambda q, name=name, alpha=alpha, p=p: dj.exact_grad(name, p, q, alpha=alpha)
            )
            est = [e for e in dj.estimators_for(name, q.family) if e != "exact"][0]
            mc = jax.jit(jax.grad(dj.surrogate(name, est, p, 16, alpha=alpha), has_aux=True))
            cv, rv = timed(value, q, repeats=args.repeats)
            cg, rg = timed(grad, q, repeats=args.repeats)
            cm, rm = timed(mc, q, key, repeats=args.repeats)
            print(
                f"| {label} | {name} | {cv:.2f} s / {ms(rv)} | {cg:.2f} s / {ms(rg)} "
                f"| {est}: {cm:.2f} s / {ms(rm)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
