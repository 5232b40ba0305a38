"""The cost of exactness: quadrature vs closed forms vs Monte Carlo as d grows.

For d in (1, 2, 3, 5, 10, 50), target p = 0.3 N(-1, I) + 0.7 N(1, 0.5 I)
(shifted along every axis), q = N(0.2, 1.2^2 I) (diagonal):
- chi2_forward closed form: time per gradient (jit, warm), exact reference;
- 2-D grid quadrature (d <= 2 only; N^d nodes): time and error vs the closed form;
- Monte Carlo (snis2 for chi2_forward): the K needed for relative RMS error
  1e-2 of the gradient (from the measured per-sample variance), and its time;
- gradient SNR |mean| / std (first loc coordinate, K = 16) of reparam, stl,
  reinforce_loo (kl_reverse) and snis (kl_forward) as d grows.

Run: ``.venv/bin/python benchmarks/bench_exactness.py`` (float64, < 3 min on CPU).
"""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from divjax import multivariate as mv  # noqa: E402
from divjax.mv_families import DiagGaussian, MvGaussianMixture  # noqa: E402

DIMS = (1, 2, 3, 5, 10, 50)
KEY = jax.random.key(0)


def _timeit(fn, *args, reps=5):
    jax.block_until_ready(fn(*args))
    t = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t) / reps


def _leaf0(g):
    return g.loc[..., 0]


def main():
    rows = []
    for d in DIMS:
        p = MvGaussianMixture(
            [0.3, 0.7],
            jnp.stack([-jnp.ones(d), jnp.ones(d)]),
            jnp.stack([jnp.ones(d), 0.7 * jnp.ones(d)]),
        )
        q = DiagGaussian(0.2 * jnp.ones(d), jnp.log(1.2) * jnp.ones(d))
        exact_fn = jax.jit(lambda q_: mv.mv_exact_grad("chi2_forward", p, q_))
        exact = exact_fn(q)
        t_closed = _timeit(exact_fn, q)
        if d == 2:
            quad_fn = jax.jit(jax.grad(lambda q_: mv.quadrature_2d("chi2_forward", p, q_)))
            t_quad = _timeit(quad_fn, q, reps=2)
            err_quad = float(jnp.abs(_leaf0(quad_fn(q)) - _leaf0(exact)) / jnp.abs(_leaf0(exact)))
            quad = f"{t_quad * 1e3:.1f} ms / {err_quad:.1e}"
        elif d == 1:
            quad = "(1-D rule, divjax.divergence)"
        else:
            quad = f"infeasible ({928**d:.0e} nodes)"
        # snis2 estimates grad log(1 + chi^2) = grad chi^2 / (1 + chi^2).
        target = float(_leaf0(exact) / (1 + mv.mv_divergence("chi2_forward", p, q)))
        k0 = 256
        f = mv.mv_surrogate("chi2_forward", "snis2", p, k0)
        draws = jax.jit(jax.vmap(lambda kk: _leaf0(jax.grad(f, has_aux=True)(q, kk)[0])))
        g = np.asarray(draws(jax.random.split(KEY, 200)))
        mse_per = np.mean((g - target) ** 2) * k0  # variance*K (+bias^2*K)
        k_need = int(math.ceil(mse_per / (1e-2 * abs(target)) ** 2))
        k_run = min(k_need, 2_000_000)
        f_need = jax.jit(
            lambda kk: jax.grad(mv.mv_surrogate("chi2_forward", "snis2", p, k_run), has_aux=True)(
                q, kk
            )[0]
        )
        t_mc = _timeit(f_need, KEY, reps=2)
        snr = {}
        for name, est in [
            ("kl_reverse", "reparam"),
            ("kl_reverse", "stl"),
            ("kl_reverse", "reinforce_loo"),
            ("kl_forward", "snis"),
        ]:
            s = mv.mv_surrogate(name, est, p, 16)
            gg = np.asarray(
                jax.jit(jax.vmap(lambda kk: _leaf0(jax.grad(s, has_aux=True)(q, kk)[0])))(
                    jax.random.split(KEY, 500)
                )
            )
            snr[est] = abs(gg.mean()) / gg.std()
        rows.append((d, t_closed, quad, k_need, t_mc, snr))
        print(f"d={d} done", flush=True)
    print(
        "\n| d | closed form (chi2_fwd grad) | 2-D quadrature time / rel. err | "
        "MC snis2: K for 1% rel. RMS | MC time at that K | SNR reparam | SNR stl | "
        "SNR reinforce_loo | SNR snis |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for d, tc, quad, k, tm, snr in rows:
        print(
            f"| {d} | {tc * 1e3:.2f} ms | {quad} | {k:.2e} | {tm * 1e3:.1f} ms"
            f"{' (capped K=2e6)' if k > 2_000_000 else ''} | {snr['reparam']:.2f} | "
            f"{snr['stl']:.2f} | {snr['reinforce_loo']:.2f} | {snr['snis']:.2f} |"
        )


if __name__ == "__main__":
    main()
