r"""The natural gradient: one direction in every parameterization, Newton's method in one of them.

Prints three tables for the default target ``p = 0.3 N(-2, 0.5^2) + 0.7 N(3, 1)``:

1. the natural gradient of each divergence at one ``q``, computed in each
   parameterization (``jax.grad`` through the map, preconditioned by that
   parameterization's inverse Fisher) and pushed forward to
   ``(mu, log sigma)``: the same vector every time;
2. natural-gradient descent with step size 1 on the forward KL in ``natural``
   coordinates, a Newton step: the error ``||eta_k - eta*||`` and
   ``e_{k+1} / e_k^2`` (bounded: quadratic convergence), next to
   ``expectation`` coordinates, where one step lands on moment matching;
3. (skipped with ``--quick``) the same step-size-1 iteration in every
   parameterization: the direction is invariant, the discrete path is not.

Run: ``python examples/natural_gradient.py [--quick]``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import divjax as dj
from divjax.natural import natural_direction
from divjax.parameterizations import PARAMETERIZATIONS, mu_log_sigma

MEAN, VAR = 1.5, 6.025  # forward KL optimum (moment matching) for the default target


def invariance_table(p, q):
    print(
        f"1. natural gradient at q = N({float(q.loc):.2f}, {float(q.scale):.2f}^2) in each "
        "parameterization, pushed forward to (mu, log sigma)"
    )
    print(
        f"   {'divergence':<13} {'d mu':>14} {'d log sigma':>14}  max relative deviation over "
        f"{', '.join(PARAMETERIZATIONS)}"
    )
    for name in dj.DIVERGENCES:
        rows = []
        for param in PARAMETERIZATIONS.values():
            theta = param.from_gaussian(q)
            f = lambda t, param=param, name=name: dj.divergence(name, p, param.to_gaussian(t))  # noqa: E731
            g = jax.grad(f)(theta)
            d = natural_direction(param, theta, g)
            to_mls = lambda t, param=param: mu_log_sigma.from_gaussian(param.to_gaussian(t))  # noqa: E731
            rows.append(np.asarray(jax.jvp(to_mls, (theta,), (d,))[1]))
        rows = np.array(rows)
        dev = np.max(np.abs(rows - rows[0])) / np.max(np.abs(rows[0]))
        print(f"   {name:<13} {rows[0, 0]:14.6e} {rows[0, 1]:14.6e}  {dev:.1e}")


def step_one_fit(p, parameterization, num_steps):
    res = dj.fit(
        p,
        dj.default_q0(),
        "kl_forward",
        parameterization=parameterization,
        natural_gradient=True,
        optimizer=optax.sgd(1.0),
        num_steps=num_steps,
        trace_value=False,
        optima=dj.Optima(dj.Gaussian(jnp.array([MEAN]), jnp.array([0.5 * np.log(VAR)])), None),
    )
    return res


def newton_table(p, num_steps=8):
    nat = PARAMETERIZATIONS["natural"]
    res = step_one_fit(p, "natural", num_steps)
    eta_star = nat.from_gaussian(dj.Gaussian.from_loc_variance(MEAN, VAR))
    eta = np.concatenate([nat.from_gaussian(dj.default_q0())[None], nat.from_gaussian(res.trace.q)])
    err = np.linalg.norm(eta - eta_star, axis=-1)
    print("\n2. forward KL, natural gradient, step size 1, from q0 = N(0, 5)")
    print("   natural coordinates (= Newton's method):")
    print(f"   {'k':>3} {'||eta_k - eta*||':>18} {'e_k / e_(k-1)^2':>16}")
    for k, e in enumerate(err):
        ratio = f"{e / err[k - 1] ** 2:16.4f}" if k and err[k - 1] > 1e-7 else " " * 16
        print(f"   {k:>3} {e:18.3e} {ratio}")
    res = step_one_fit(p, "expectation", 1)
    print(
        f"   expectation coordinates, one step: q1 = N({float(res.q.loc):.15f}, "
        f"{float(res.q.variance):.15f}); moment match N({MEAN}, {VAR})"
    )


def paths_table(p, num_steps=6):
    print("\n3. the same iteration in every parameterization:")
    print("   max(|mu_k - 1.5|, |sigma_k^2 / 6.025 - 1|)")
    print("   (the direction is invariant, the discrete path is not)")
    head = " ".join(f"{'k=' + str(k):>9}" for k in range(1, num_steps + 1))
    print(f"   {'parameterization':<16} {head}  status")
    for name in PARAMETERIZATIONS:
        res = step_one_fit(p, name, num_steps)
        err = np.maximum(
            np.abs(np.asarray(res.trace.q.loc) - MEAN),
            np.abs(np.asarray(res.trace.q.variance) / VAR - 1),
        )
        print(f"   {name:<16} " + " ".join(f"{e:9.2e}" for e in err) + "  " + res.status.describe())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip table 3")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    p = dj.default_target()
    invariance_table(p, dj.Gaussian.from_loc_scale(0.5, 1.2))
    newton_table(p)
    if not args.quick:
        paths_table(p)


if __name__ == "__main__":
    main()
