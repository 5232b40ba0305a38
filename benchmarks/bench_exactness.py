r"""The cost of exactness: quadrature vs closed forms vs Monte Carlo as d grows.

For d in (1, 2, 3, 5, 10, 50), target p = 0.3 N(-1, I) + 0.7 N(1, 0.7^2 I)
(shifted along every axis) and q = N(0.2, 1.2^2 I) (diagonal). All numbers are
for the gradient with respect to q's first loc coordinate.

1. Check: the closed-form asymptotic variance and bias of ``snis`` and
   ``snis2`` (`_is_variance`) against their empirical values over many draws
   of divjax's estimators, in d = 1, 2, 3.
2. Cost table: the closed-form gradients (chi2_forward, kl_forward), 1-D and
   2-D quadrature (time, error vs the closed form; node counts and a lower
   bound on the time beyond d = 2), and Monte Carlo at equal error: the K at
   which ``snis2`` (chi2_forward) and ``snis`` (kl_forward) reach 1% relative
   RMS error, exact from the closed-form variance and bias, and the time at
   that K (measured up to K = 2^21, above that extrapolated from the cost per
   sample measured at K = 2^20 and marked so).
3. Gradient SNR |mean| / std at K = 16 of every estimator in
   `divjax.ESTIMATORS` of the four main divergences, 1000 draws with fixed keys; stateful
   estimators (``msc``, ``msc_rb``) run 1000 independent chains at fixed q for
   200 steps of burn-in first. Where the exact gradient is known (forward
   divergences in any d, reverse ones in d <= 2) also the relative RMS error
   per draw and a flag where the mean is more than 4 standard errors off.

Run: ``.venv/bin/python benchmarks/bench_exactness.py`` (float64, about 3.5 min on
2 CPU cores; ``--quick`` is a smoke test at d = 1, 2, 3).
"""

import argparse
import math
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _is_variance import log_k_for_rel_rms, snis_asymptotics  # noqa: E402

import divjax  # noqa: E402
from divjax import pair_rules, q_frame  # noqa: E402
from divjax.divergences import DIVERGENCES  # noqa: E402
from divjax.estimators import ESTIMATORS  # noqa: E402
from divjax.families import DiagGaussian  # noqa: E402
from divjax.targets import GaussianMixture  # noqa: E402

MV_ESTIMATORS = {name: ESTIMATORS[name] for name in DIVERGENCES}

DIMS = (1, 2, 3, 5, 10, 50)
REL = 1e-2  # equal error: 1% relative RMS error (bias included)
K_CAP = 2**21  # Monte Carlo times are measured up to this K, extrapolated above
K_PER_SAMPLE = (2**16, 2**20)
SNR_K, SNR_DRAWS, BURN_IN = 16, 1000, 200
MC = (("chi2_forward", "snis2", 2), ("kl_forward", "snis", 1))
# (estimator, d, K, draws) for the check of the closed-form asymptotics: K well
# above E[w^{2r}] / E[w^r]^2 (1.6, 4.9, 21 for snis2 and 1.2, 2.0, 3.6 for snis
# in d = 1, 2, 3), so that the O(1/K) correction is small enough to extrapolate.
CHECKS = (
    (MC[0], 1, 128, 40_000),
    (MC[0], 2, 256, 40_000),
    (MC[0], 3, 2048, 12_000),
    (MC[1], 1, 64, 40_000),
    (MC[1], 2, 128, 40_000),
    (MC[1], 3, 256, 40_000),
)
# Estimators that estimate grad log(1 + D), not grad D.
LOG1P = ("snis2", "score_sn")
KEY = jax.random.key(0)


def problem(d):
    weights = np.array([0.3, 0.7])
    locs = np.stack([-np.ones(d), np.ones(d)])
    scales = np.stack([np.ones(d), 0.7 * np.ones(d)])
    p = GaussianMixture(weights, locs, scales)
    q = DiagGaussian(0.2 * jnp.ones(d), jnp.log(1.2) * jnp.ones(d))
    return p, q, (weights, locs, scales, 0.2 * np.ones(d), 1.2 * np.ones(d))


def _timeit(fn, *args, reps=3, budget=0.2):
    """Best of at least ``reps`` warm calls, more (up to 1000) while under ``budget`` s."""
    jax.block_until_ready(fn(*args))
    best, spent, n = math.inf, 0.0, 0
    while n < reps or (spent < budget and n < 1000):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        dt = time.perf_counter() - t
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best


def _sci(x, digits=2):
    """``1.46e5`` rather than ``1.46e+05``."""
    mantissa, exponent = f"{x:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _fmt_time(t, extrapolated=False):
    if t < 1.0:
        s = f"{t * 1e3:.3g} ms"
    elif t < 1e4:
        s = f"{t:.3g} s"
    else:
        s = f"{_sci(t, 1)} s"
    return f"~{s} (extrap.)" if extrapolated else s


def _leaf0(g):
    return g.loc[..., 0]


def _draws(name, est, p, q, k, keys):
    """First loc coordinate of ``len(keys)`` gradient draws (jit, in chunks of 1000)."""
    s = divjax.surrogate(name, est, p, k)
    one = jax.jit(jax.vmap(lambda kk: _leaf0(jax.grad(s, has_aux=True)(q, kk)[0])))
    m = min(1000, len(keys))
    return np.concatenate([np.asarray(one(keys[i : i + m])) for i in range(0, len(keys), m)])


def _kvar(g, k):
    """``K Var`` of the draws ``g`` and its standard error (from the fourth moment)."""
    c = g - g.mean()
    return k * c.var(), k * math.sqrt((np.mean(c**4) - c.var() ** 2) / len(g))


def check_variance(quick=False):
    """Closed-form V and b vs the empirical ones of divjax's snis2 and snis.

    ``K Var`` at finite K is ``V - c / K + O(1/K^2)``, so it is measured at K
    and 4K and Richardson-extrapolated, ``(4 v(4K) - v(K)) / 3``; the bias is
    read at K (where it is largest relative to the noise).
    """
    print(
        "\nCheck of the closed-form asymptotics against divjax's estimators "
        "(empirical: value ± standard error; z = (empirical - closed form) / SE)\n"
    )
    print(
        "| d | estimator | K | draws at K / 4K | E[w^2r]/E[w^r]^2 | V = lim K Var | K Var at K "
        "| K Var at 4K | extrapolated | z | b = lim K bias | K bias at K | z |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (name, est, r), d, k, n in CHECKS:
        n = n // 10 if quick else n
        p, q, args = problem(d)
        a = snis_asymptotics(*args, r=r)
        key = jax.random.fold_in(jax.random.fold_in(KEY, d), r)
        g = _draws(name, est, p, q, k, jax.random.split(key, n))
        g4 = _draws(name, est, p, q, 4 * k, jax.random.split(jax.random.fold_in(key, 1), n // 2))
        (v1, s1), (v4, s4) = _kvar(g, k), _kvar(g4, 4 * k)
        v_ext, s_ext = (4 * v4 - v1) / 3, math.hypot(4 * s4, s1) / 3
        bias, s_bias = k * (g.mean() - a.mean), k * g.std() / math.sqrt(n)
        v = math.exp(a.log_var)
        print(
            f"| {d} | {est} | {k} | {n} / {n // 2} | {math.exp(a.log_weight_ratio):.3g} "
            f"| {v:.4g} | {v1:.4g} ± {s1:.2g} | {v4:.4g} ± {s4:.2g} "
            f"| {v_ext:.4g} ± {s_ext:.2g} | {(v_ext - v) / s_ext:+.1f} "
            f"| {a.bias:.3g} | {bias:.3g} ± {s_bias:.2g} | {(bias - a.bias) / s_bias:+.1f} |",
            flush=True,
        )


def _chi2_by_quadrature(p, q):
    """chi^2(p || q) by quadrature in q's frame (the closed form is what divjax uses)."""
    f = q_frame.frame(p, q)
    terms = q_frame.power_terms(f, -1.0)
    z, w = pair_rules.q_rule(p, f, terms)
    return jnp.expm1(logsumexp(q_frame.log_power_integrand(terms, z, -1.0), b=w))


def _quadrature(d, p, q, exact0):
    """(time, relative error, nodes) of the chi2_forward gradient by quadrature, d <= 2."""
    fn = jax.jit(jax.grad(_chi2_by_quadrature, argnums=1))
    f = q_frame.frame(p, q)
    n_nodes = pair_rules.q_rule(p, f, q_frame.power_terms(f, -1.0))[0].shape[0]
    t = _timeit(lambda q_: fn(p, q_), q)
    err = abs(float(jnp.ravel(fn(p, q).loc)[0]) - exact0) / abs(exact0)
    return t, err, n_nodes


def _mc_time(name, est, p, q, k_need):
    """Measured time at k_need (<= K_CAP) or the extrapolation; and the per-sample costs."""

    def grad_fn(k):
        s = divjax.surrogate(name, est, p, k)
        return jax.jit(lambda kk: jax.grad(s, has_aux=True)(q, kk)[0])

    per = [_timeit(grad_fn(k), KEY, reps=2) / k for k in K_PER_SAMPLE]
    if math.isinf(k_need):
        return "never (Var = inf)", per
    if k_need <= K_CAP:
        return _fmt_time(_timeit(grad_fn(int(math.ceil(k_need))), KEY, reps=2)), per
    return _fmt_time(per[-1] * k_need, extrapolated=True), per


def cost_table(dims):
    rows, notes, quad_cost = [], [], None
    for d in dims:
        p, q, args = problem(d)
        chi2_fn = jax.jit(lambda q_, p=p: divjax.exact_grad("chi2_forward", p, q_))
        kl_fn = jax.jit(lambda q_, p=p: divjax.exact_grad("kl_forward", p, q_))
        exact0 = float(_leaf0(chi2_fn(q)))
        closed = f"{_timeit(chi2_fn, q) * 1e3:.2f} / {_timeit(kl_fn, q) * 1e3:.2f} ms"
        if d <= 2:
            t, err, n_nodes = _quadrature(d, p, q, exact0)
            quad = f"{_fmt_time(t)} / {_sci(err, 1) if err else 0} ({n_nodes} nodes)"
            if d == 2:
                quad_cost = (t / n_nodes, math.isqrt(n_nodes), err)
        elif quad_cost is not None:
            per_node, n_axis, _ = quad_cost
            nodes = float(n_axis) ** d
            quad = f"infeasible: {_sci(nodes, 0)} nodes, > {_fmt_time(per_node * nodes)} (extrap.)"
        else:
            quad = "infeasible"
        cells = []
        for name, est, r in MC:
            a = snis_asymptotics(*args, r=r)
            k_need = math.exp(log_k_for_rel_rms(a, REL))
            t_mc, per = _mc_time(name, est, p, q, k_need)
            cells += ["inf" if math.isinf(k_need) else _sci(k_need), t_mc]
            notes.append(
                f"d={d} {est}: mu={a.mean:.4g}, V=K Var={math.exp(a.log_var):.3e}, "
                f"b=K bias={a.bias:.3e}, E[w^2r]/E[w^r]^2={math.exp(a.log_weight_ratio):.3e}, "
                f"K_need={k_need:.3e}; per sample {per[0] * 1e9:.0f} ns (K=2^16), "
                f"{per[1] * 1e9:.0f} ns (K=2^20)"
            )
            if d == 2 and est == "snis2" and quad_cost is not None:
                log_k = log_k_for_rel_rms(a, quad_cost[2])
                notes.append(
                    f"d=2 snis2 at the 2-D quadrature's relative error ({quad_cost[2]:.1e}) "
                    f"instead of 1%: K = {math.exp(log_k):.1e}"
                )
        rows.append((d, closed, quad, *cells))
        print(f"d={d} done", flush=True)
    print("\n" + "\n".join(notes))
    print(
        "\n| d | closed form, χ² / KL grad | quadrature time / rel. err (χ² grad) "
        "| snis2 (χ²): K for 1% | snis2 time at K | snis (KL): K for 1% | snis time at K |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def _exact_estimand(name, est, p, q):
    """The exact gradient (loc_1) that ``est``'s draws are compared with; None if unknown."""
    if name in ("kl_reverse", "chi2_reverse") and p.dim > 2:
        return None
    g = float(_leaf0(divjax.exact_grad(name, p, q)))
    if est in LOG1P:
        g /= 1.0 + float(divjax.divergence(name, p, q))
    return g


def _chain_draws(name, est, p, q, keys):
    """Gradient draws of a stateful estimator: one per independent chain after burn-in."""
    chain = divjax.stateful_surrogate(name, est, p, SNR_K)

    def one(key):
        k_init, k_burn, k_draw = jax.random.split(key, 3)

        def step(state, kk):
            return chain.loss_fn(q, kk, state)[1][1], None

        state, _ = jax.lax.scan(step, chain.init(q, k_init), jax.random.split(k_burn, BURN_IN))
        return _leaf0(jax.grad(chain.loss_fn, has_aux=True)(q, k_draw, state)[0])

    return np.asarray(jax.jit(jax.vmap(one))(keys))


def _is_stateful(name, est, p, q):
    chain = divjax.stateful_surrogate(name, est, p, SNR_K)
    return bool(jax.tree_util.tree_leaves(chain.init(q, KEY)))


def snr_tables(dims, n_draws):
    keys = jax.random.split(jax.random.fold_in(KEY, 1234), n_draws)
    cells = {}
    for d in dims:
        p, q, _ = problem(d)
        for name, ests in MV_ESTIMATORS.items():
            for est in ests:
                if est == "exact":
                    continue
                if _is_stateful(name, est, p, q):
                    g = _chain_draws(name, est, p, q, keys)
                else:
                    g = _draws(name, est, p, q, SNR_K, keys)
                bad = int(np.sum(~np.isfinite(g)))
                if bad:
                    cells[(name, est, d)] = f"{bad} non-finite"
                    continue
                cell = f"{abs(g.mean()) / g.std():.2f}"
                exact = _exact_estimand(name, est, p, q)
                if exact is not None:
                    rrms = math.sqrt(np.mean((g - exact) ** 2)) / abs(exact)
                    z = (g.mean() - exact) / (g.std() / math.sqrt(len(g)))
                    cell += f" ({rrms:.2g}){'†' if abs(z) > 4 else ''}"
                cells[(name, est, d)] = cell
        print(f"SNR d={d} done", flush=True)
    print(
        f"\nGradient SNR |mean| / std, first loc coordinate, K = {SNR_K}, {n_draws} draws "
        "(in brackets: relative RMS error per draw vs the exact gradient; † mean more "
        "than 4 standard errors from it)"
    )
    for name, ests in MV_ESTIMATORS.items():
        ests = [e for e in ests if e != "exact"]
        print(f"\n{name}\n\n| d | " + " | ".join(ests) + " |")
        print("|---" * (len(ests) + 1) + "|")
        for d in dims:
            print(f"| {d} | " + " | ".join(cells[(name, e, d)] for e in ests) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 1, 2, 3 and fewer draws")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    dims = DIMS[:3] if args.quick else DIMS
    check_variance(args.quick)
    t_check = time.perf_counter()
    cost_table(dims)
    t_cost = time.perf_counter()
    snr_tables(dims, 200 if args.quick else SNR_DRAWS)
    end = time.perf_counter()
    print(
        f"\ntotal {end - start:.0f} s (check {t_check - start:.0f} s, cost table "
        f"{t_cost - t_check:.0f} s, SNR {end - t_cost:.0f} s)"
    )


if __name__ == "__main__":
    main()
