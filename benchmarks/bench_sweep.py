"""How fast is `divjax.sweep` against a naive loop, TFP, numpyro and a bare kernel?

One piece of work, the default scenario (``p = 0.3 N(-2, 0.5^2) + 0.7 N(3, 1)``,
``q0 = N(0, 5)``, SGD 0.05 with momentum 0.9): kl_reverse/reparam and
kl_forward/snis, 256 seeds, K in {1, 4, 16, 64, 256}, 2000 steps. Speed is
counted in useful particle-steps per second: the sum over fits of K x steps,
divided by the wall time after compilation.

- ``divjax sweep``: `divjax.sweep` on both fits (the headline), and on
  kl_reverse/reparam alone (the like-for-like figure for TFP and numpyro,
  which only run that fit).
- ``naive loop``: per (fit, K, seed), the jitted `divjax.fitter` step
  called from Python every step; a subset of seeds and steps, scaled.
- ``tfp vmap`` / ``tfp loop``: `tfp.vi.fit_surrogate_posterior_stateless` on
  TFP's JAX substrate (Normal(loc, exp(log_scale)), optax SGD + momentum),
  jitted once per K and ``jax.vmap``-ed over all seeds, or called per seed
  (a subset of seeds, scaled).
- ``numpyro``: ``SVI(model, guide, optax_to_numpyro(sgd), Trace_ELBO(K)).run``
  per seed, as a numpyro user writes it (every call re-traces and re-compiles,
  and that is part of its time), on as many seeds as fit in the time budget,
  scaled per fit; plus the same ``svi.run`` jitted once over the seed.
- ``bare kernel``: one compiled ``lax.scan`` of the same length that only
  draws the same number of N(0, 1) particles per (seed, K-config) and
  evaluates ``log p~`` and its gradient there; ``efficiency`` is its time
  over the sweep's. A second row skips the gradient for the snis
  configurations (snis never differentiates ``log p~``): a tighter limit.

Every peer uses the same ``log p`` (`divjax.GaussianMixture.log_prob`). A peer
that cannot be imported or run is reported as ``n/a`` with the reason. Timings
on a shared CPU are noisy: compiled runs take the best of ``--repeats``.

Usage: ``python benchmarks/bench_sweep.py [--quick] [--seeds N] [--steps N] ...``
(the peers come with ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import traceback
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import divjax as dj
from divjax.fit import default_optimizer
from divjax.sweeps import sweep

FITS = (("kl_reverse", "reparam"), ("kl_forward", "snis"))
REVERSE = (("kl_reverse", "reparam"),)
KS = (1, 4, 16, 64, 256)


class Row(NamedTuple):
    """One method: particle-steps of the (projected) work, its compile and run seconds."""

    method: str
    fits: str  # "both" or "reverse"
    particle_steps: float
    compile_s: float
    run_s: float
    note: str

    @property
    def rate(self) -> float:
        return self.particle_steps / self.run_s


class NA(NamedTuple):
    method: str
    reason: str


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]


def _best(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def _compile(fn, *args):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


# --------------------------------------------------------------------------- divjax


def run_sweep(p, q0, fits, a, optima) -> Row:
    best = None
    for _ in range(a.repeats):
        r = sweep(
            p,
            q0,
            fits,
            num_samples=a.ks,
            num_seeds=a.seeds,
            num_steps=a.steps,
            key=jax.random.key(0),
            optima=optima,
            progress=False,
        )
        best = r if best is None or r.run_s < best.run_s else best
    label = "both" if len(fits) == 2 else "reverse"
    name = "divjax sweep" + ("" if label == "both" else " (reverse only)")
    note = f"{len(best.runs)} configs in one scan; best of {a.repeats}"
    return Row(name, label, best.particle_steps(), best.compile_s, best.run_s, note)


def run_naive(p, q0, a) -> Row:
    """Each (fit, K) its own jitted step; Python calls it every step, seed after seed."""
    opt = default_optimizer()
    compile_s, projected, ps = 0.0, 0.0, 0.0
    for name, est in FITS:
        for k in a.ks:
            f = dj.fitter(p, name, est, num_samples=k, optimizer=opt, window=a.steps // 10)
            step = jax.jit(f.step)
            state = f.init(q0, jax.random.key(0))
            start = time.perf_counter()
            jax.block_until_ready(step(state, jax.random.key(0)))
            compile_s += time.perf_counter() - start
            start = time.perf_counter()
            for seed in range(a.naive_seeds):
                key = jax.random.key(seed)
                state = f.init(q0, key)
                for t in range(a.naive_steps):
                    state, _ = step(state, jax.random.fold_in(key, t))
                jax.block_until_ready(state)
            per_step = (time.perf_counter() - start) / (a.naive_seeds * a.naive_steps)
            projected += per_step * a.seeds * a.steps
            ps += k * a.seeds * a.steps
    note = f"scaled from {a.naive_seeds} seeds x {a.naive_steps} steps per (fit, K)"
    return Row("naive loop (jit step)", "both", ps, compile_s, projected, note)


def bare_kernel(p, a, needs_only=False) -> Row:
    """Only the particles' draws and ``log p~``, ``grad log p~``: one scan, same length.

    Draws ``(seeds, K)`` N(0, 1) particles per (fit, K) configuration every step,
    as the sweep does. With ``needs_only`` the snis configurations evaluate
    ``log p~`` alone (snis never differentiates it), the reparam ones both.
    """
    log_p_sum = lambda x: jnp.sum(p.log_prob(x))  # noqa: E731
    value_and_grad = jax.value_and_grad(log_p_sum)
    configs = [(est, (a.seeds, k)) for _, est in FITS for k in a.ks]

    def body(carry, _):
        acc, key = carry
        key, sub = jax.random.split(key)
        for (est, shape), kk in zip(configs, jax.random.split(sub, len(configs))):
            x = jax.random.normal(kk, shape)
            if needs_only and est == "snis":
                acc = acc + log_p_sum(x)
            else:
                v, g = value_and_grad(x)
                acc = acc + v + jnp.sum(g)  # keeps every particle's value and gradient alive
        return (acc, key), None

    def run(key):
        return jax.lax.scan(body, (jnp.zeros(()), key), None, length=a.steps)[0][0]

    compiled, compile_s = _compile(run, jax.random.key(0))
    run_s = _best(lambda: compiled(jax.random.key(1)), a.repeats)
    ps = sum(math.prod(shape) for _, shape in configs) * a.steps
    if needs_only:
        return Row(
            "bare kernel (needs only)",
            "both",
            ps,
            compile_s,
            run_s,
            f"as above, but log p~ only (no gradient) for snis; best of {a.repeats}",
        )
    note = f"N(0,1) draws + value_and_grad(sum log p~); best of {a.repeats}"
    return Row("bare kernel (limit)", "both", ps, compile_s, run_s, note)


# --------------------------------------------------------------------------- peers


def _tfp_fit(p, q0, tfp):
    tfd = tfp.distributions
    init = (jnp.asarray(q0.loc), jnp.asarray(q0.log_scale))

    def fit(seed, k, steps):
        return tfp.vi.fit_surrogate_posterior_stateless(
            p.log_prob,
            lambda loc, log_scale: tfd.Normal(loc, jnp.exp(log_scale)),
            init,
            default_optimizer(),
            num_steps=steps,
            sample_size=k,
            seed=seed,
            trace_fn=lambda _: (),
        )[0]

    return fit


def run_tfp(p, q0, a):
    try:
        from tensorflow_probability.substrates import jax as tfp
    except Exception as exc:
        reason = f"import failed: {_short(exc)}"
        return NA("tfp vmap", reason), NA("tfp loop", reason)
    try:
        fit = _tfp_fit(p, q0, tfp)
        seeds = jax.random.split(jax.random.PRNGKey(0), a.seeds)
        ps = sum(k * a.seeds * a.steps for k in a.ks)
        vmap_c = vmap_r = loop_c = loop_r = 0.0
        for k in a.ks:
            compiled, c = _compile(jax.vmap(lambda s, k=k: fit(s, k, a.steps)), seeds)
            vmap_c += c
            vmap_r += _best(lambda compiled=compiled: compiled(seeds), a.repeats)
            compiled, c = _compile(lambda s, k=k: fit(s, k, a.steps), seeds[0])
            loop_c += c
            start = time.perf_counter()
            for s in seeds[: a.loop_seeds]:
                jax.block_until_ready(compiled(s))
            loop_r += (time.perf_counter() - start) * a.seeds / a.loop_seeds
    except Exception as exc:
        traceback.print_exc()
        reason = f"run failed: {_short(exc)}"
        return NA("tfp vmap", reason), NA("tfp loop", reason)
    tag = f"tfp {tfp.__version__}"
    return (
        Row(
            "tfp vmap",
            "reverse",
            ps,
            vmap_c,
            vmap_r,
            f"{tag}, jit(vmap) per K over all seeds; best of {a.repeats}",
        ),
        Row(
            "tfp loop",
            "reverse",
            ps,
            loop_c,
            loop_r,
            f"{tag}, jit per K, called per seed; scaled from {a.loop_seeds} seeds",
        ),
    )


def run_numpyro(p, q0, a):
    try:
        import numpyro
        import numpyro.distributions as dist
        from numpyro.infer import SVI, Trace_ELBO
    except Exception as exc:
        reason = f"import failed: {_short(exc)}"
        return NA("numpyro svi.run", reason), NA("numpyro jit(svi.run)", reason)

    def model():
        x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real, (), ()))
        numpyro.factor("log_p", p.log_prob(x))

    def guide():
        loc = numpyro.param("loc", jnp.asarray(q0.loc))
        log_scale = numpyro.param("log_scale", jnp.asarray(q0.log_scale))
        numpyro.sample("x", dist.Normal(loc, jnp.exp(log_scale)))

    def svi(k):
        optim = numpyro.optim.optax_to_numpyro(default_optimizer())
        return SVI(model, guide, optim, Trace_ELBO(num_particles=k))

    tag = f"numpyro {numpyro.__version__}"
    ps = sum(k * a.seeds * a.steps for k in a.ks)
    try:
        # A numpyro user's loop: svi.run per seed (it traces and compiles on each call).
        times = {k: [] for k in a.ks}
        for k in a.ks:  # warm-up: numpyro's and jax's one-off caches
            jax.block_until_ready(svi(k).run(jax.random.PRNGKey(0), a.steps, progress_bar=False))
        deadline, seed = time.perf_counter() + a.numpyro_seconds, 1
        while seed == 1 or time.perf_counter() < deadline:
            for k in a.ks:
                start = time.perf_counter()
                result = svi(k).run(jax.random.PRNGKey(seed), a.steps, progress_bar=False)
                jax.block_until_ready(result.params)
                times[k].append(time.perf_counter() - start)
            seed += 1
        run_r = sum(np.mean(t) for t in times.values()) * a.seeds
        n = seed - 1
        user = Row(
            "numpyro svi.run",
            "reverse",
            ps,
            math.nan,  # svi.run compiles inside every call: part of run_s
            run_r,
            f"{tag}, per-seed svi.run incl. its per-call compile; scaled from {n} seeds per K",
        )

        # The same, jitted once per K over the seed (what an expert would do).
        jit_c = jit_r = 0.0
        for k in a.ks:
            compiled, c = _compile(
                lambda s, k=k: svi(k).run(s, a.steps, progress_bar=False).params,
                jax.random.PRNGKey(0),
            )
            jit_c += c
            start = time.perf_counter()
            for s in range(a.loop_seeds):
                jax.block_until_ready(compiled(jax.random.PRNGKey(s)))
            jit_r += (time.perf_counter() - start) * a.seeds / a.loop_seeds
        expert = Row(
            "numpyro jit(svi.run)",
            "reverse",
            ps,
            jit_c,
            jit_r,
            f"{tag}, jit per K, called per seed; scaled from {a.loop_seeds} seeds",
        )
    except Exception as exc:
        traceback.print_exc()
        reason = f"run failed: {_short(exc)}"
        return NA("numpyro svi.run", reason), NA("numpyro jit(svi.run)", reason)
    return user, expert


# --------------------------------------------------------------------------- report


def _fmt_ratio(x):
    return f"{x:.3g}x" if x >= 10 else f"{x:.2f}x"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 256)")
    parser.add_argument("--steps", type=int, default=None, help="steps (default 2000)")
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="K values")
    parser.add_argument("--repeats", type=int, default=None, help="best of (default 2)")
    parser.add_argument("--naive-seeds", type=int, default=None)
    parser.add_argument("--naive-steps", type=int, default=None)
    parser.add_argument("--loop-seeds", type=int, default=None, help="tfp/numpyro jit loops")
    parser.add_argument("--numpyro-seconds", type=float, default=None, help="svi.run budget")
    parser.add_argument("--no-peers", action="store_true", help="skip tfp and numpyro")
    a = parser.parse_args()
    defaults = dict(
        seeds=256,
        steps=2000,
        ks=KS,
        repeats=2,
        naive_seeds=2,
        naive_steps=200,
        loop_seeds=16,
        numpyro_seconds=60.0,
    )
    if a.quick:
        defaults.update(
            seeds=8,
            steps=50,
            ks=(1, 4, 16),
            repeats=1,
            naive_seeds=1,
            naive_steps=20,
            loop_seeds=2,
            numpyro_seconds=2.0,
        )
    for name, value in defaults.items():
        if getattr(a, name) is None:
            setattr(a, name, value)
    a.ks = tuple(a.ks)

    p, q0 = dj.default_target(), dj.default_q0()
    cpu = f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    print(
        f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0]}, "
        f"{platform.processor() or platform.machine()}, {cpu}"
    )
    print(
        f"work: {' + '.join('/'.join(f) for f in FITS)}, {a.seeds} seeds, K in {a.ks}, "
        f"{a.steps} steps (TFP and numpyro: kl_reverse/reparam only)\n",
        flush=True,
    )

    # Computed once here rather than inside every sweep call (untimed there, but slow).
    optima = {name: dj.optimal_q(name, p) for name, _ in FITS}
    rows = []
    for label, fn in [
        ("divjax sweep", lambda: run_sweep(p, q0, FITS, a, optima)),
        ("divjax sweep (reverse only)", lambda: run_sweep(p, q0, REVERSE, a, optima)),
        ("bare kernel", lambda: bare_kernel(p, a)),
        ("bare kernel (needs only)", lambda: bare_kernel(p, a, needs_only=True)),
        ("naive loop", lambda: run_naive(p, q0, a)),
    ]:
        print(f"running {label} ...", flush=True)
        rows.append(fn())
    if not a.no_peers:
        print("running tfp ...", flush=True)
        rows.extend(run_tfp(p, q0, a))
        print(f"running numpyro ({a.numpyro_seconds:.0f} s budget for svi.run) ...", flush=True)
        rows.extend(run_numpyro(p, q0, a))
    else:
        rows += [NA(m, "skipped (--no-peers)") for m in ("tfp vmap", "numpyro svi.run")]

    by = {r.method: r for r in rows}
    both, rev = by["divjax sweep"], by["divjax sweep (reverse only)"]
    print(
        f"\n{'method':28s} {'fits':8s} {'particle-steps':>14s} {'compile s':>9s} "
        f"{'run s':>9s} {'p-steps/s':>10s} {'sweep/this':>10s}  note"
    )
    for r in rows:
        if isinstance(r, NA):
            print(
                f"{r.method:28s} {'-':8s} {'n/a':>14s} {'':>9s} {'':>9s} {'n/a':>10s} "
                f"{'n/a':>10s}  {r.reason}"
            )
            continue
        ref = both if r.fits == "both" else rev
        print(
            f"{r.method:28s} {r.fits:8s} {r.particle_steps:14.4g} "
            f"{'in run' if math.isnan(r.compile_s) else f'{r.compile_s:.3g}':>9s} "
            f"{r.run_s:9.3g} {r.rate:10.3g} {_fmt_ratio(ref.rate / r.rate):>10s}  {r.note}"
        )
    print(
        "\nsweep/this: sweep (both fits) / this for the naive loop and the bare kernel; "
        "sweep (kl_reverse/reparam only) / this for TFP and numpyro. "
        "Rows marked 'scaled' ran a subset and are projected linearly to the full work. "
        "Shared CPU: timings are noisy."
    )

    def ratio(method):
        r = by.get(method)
        if isinstance(r, NA):
            return f"n/a ({r.reason})"
        ref = both if r.fits == "both" else rev
        return _fmt_ratio(ref.rate / r.rate)

    efficiency = by["bare kernel (limit)"].run_s / both.run_s
    needs_only = by["bare kernel (needs only)"].run_s / both.run_s
    print(f"efficiency against the needs-only kernel: {needs_only:.2f} (bare time / sweep time)")

    def verdict(method, at_least):
        r = by[method]
        return "n/a" if isinstance(r, NA) else "met" if rev.rate / r.rate >= at_least else "NOT met"

    met = [
        f"efficiency >= 0.8: {'met' if efficiency >= 0.8 else 'NOT met'}",
        f"at or above tfp jit(vmap): {verdict('tfp vmap', 1.0)}",
    ]
    print("aims (CPU): " + "; ".join(met))
    print(
        f"\nsweep particle-steps/s={both.rate:.3g} vs-tfp-vmap={ratio('tfp vmap')} "
        f"vs-numpyro={ratio('numpyro svi.run')} vs-naive={ratio('naive loop (jit step)')} "
        f"efficiency={efficiency:.2f}"
    )


if __name__ == "__main__":
    main()
