r"""Coordinate systems for the 1-D Gaussian family: where gradient descent happens.

A `Parameterization` maps coordinates ``theta`` (an array whose last axis has
length 2) to a `Gaussian` and back, and gives the Fisher information of
``q_theta`` in those coordinates. `divjax.fit` runs its optimizer on
``theta``; the gradient comes from ``jax.grad`` through ``to_gaussian``, never
from a hand-written chain rule.

==============  ======================================  =======================
name            theta                                   domain
==============  ======================================  =======================
mu_log_sigma    ``(mu, log sigma)``                     everywhere (default)
mu_sigma        ``(mu, sigma)``                         ``sigma > 0``
mu_tau          ``(mu, tau)``, ``tau = 1 / sigma^2``    ``tau > 0``
natural         ``(mu / sigma^2, -1 / (2 sigma^2))``    ``eta2 < 0``
expectation     ``(E[x], E[x^2])``                      ``m2 - m1^2 > 0``
==============  ======================================  =======================

Domain rule. ``to_gaussian`` returns NaN parameters outside the domain
(never a silently clipped value), and a fit step that would leave the domain
is not taken: `divjax.fit` freezes at the last valid ``q`` and reports
``diverged_at`` with reason ``"step left the parameterization's domain"``
(reason code `divjax.fit.OUT_OF_DOMAIN`). Lower the learning rate, clip the
gradient (``clip_norm``) or use the natural gradient to stay inside.

Fisher information (closed forms, checked in the tests against ``jax.hessian``
of the expected negative log-likelihood and a Monte Carlo average of
score outer products), with ``s2 = sigma^2``:

- ``mu_log_sigma``: ``diag(1 / s2, 2)``
- ``mu_sigma``: ``diag(1 / s2, 2 / s2)``
- ``mu_tau``: ``diag(tau, 1 / (2 tau^2))``
- ``natural``: ``Cov_q[T] = [[s2, 2 mu s2], [2 mu s2, 4 mu^2 s2 + 2 s2^2]]``
  (the Hessian of the log-partition), ``T(x) = (x, x^2)``
- ``expectation``: ``Cov_q[T]^{-1}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from divjax import _checks
from divjax.families import Gaussian


class Parameterization(NamedTuple):
    """Maps between coordinates ``theta`` (shape ``(..., 2)``) and a `Gaussian`.

    Attributes:
      name: the coordinate system's name.
      to_gaussian: ``theta -> Gaussian``; outside the domain it returns NaN
        parameters, which `divjax.fit` reports as a divergence.
      from_gaussian: ``Gaussian -> theta`` (stacked on the last axis, so a
        batched ``q`` with leaves ``(n,)`` gives ``(n, 2)``).
      fisher: ``theta -> (2, 2)`` Fisher information of ``q_theta`` in these
        coordinates (single ``theta``; ``vmap`` for batches).
      in_domain: ``theta -> bool`` whether ``theta`` is a valid Gaussian.
      scale_index: the coordinate that is a function of the scale alone and
        can be held fixed with the location still free (``fit(fixed_scale=True)``),
        or ``None``. ``natural`` has ``None`` although ``eta2`` depends on the
        scale alone: its Fisher couples ``eta1`` and ``eta2``, so masking
        ``eta2`` after the natural-gradient preconditioner would not give the
        natural gradient of the location-only family; ``expectation`` has no
        scale-only coordinate (``m2 = mu^2 + sigma^2``).
    """

    name: str
    to_gaussian: Callable[[jax.Array], Gaussian]
    from_gaussian: Callable[[Gaussian], jax.Array]
    fisher: Callable[[jax.Array], jax.Array]
    in_domain: Callable[[jax.Array], jax.Array]
    scale_index: int | None


def _stack(a, b) -> jax.Array:
    return jnp.stack(jnp.broadcast_arrays(a, b), axis=-1)


def _guarded(in_domain, formula, anchor):
    """``to_gaussian`` that is NaN outside the domain instead of whatever the formula gives.

    The formula is evaluated at ``anchor`` (a valid point) where ``theta`` is
    invalid, so neither branch of the final ``where`` produces NaN gradients.
    """

    def to_gaussian(theta):
        theta = jnp.asarray(theta)
        ok = in_domain(theta)
        safe = jnp.where(ok[..., None], theta, jnp.asarray(anchor, theta.dtype))
        loc, log_scale = formula(safe[..., 0], safe[..., 1])
        nan = jnp.asarray(jnp.nan, loc.dtype)
        return Gaussian._make((jnp.where(ok, loc, nan), jnp.where(ok, log_scale, nan)))

    return to_gaussian


def _diag(a, b):
    zero = jnp.zeros_like(a)
    return jnp.stack([jnp.stack([a, zero]), jnp.stack([zero, b])])


def _always(theta):
    return jnp.ones(jnp.shape(theta)[:-1], bool)


mu_log_sigma = Parameterization(
    "mu_log_sigma",
    lambda t: Gaussian._make((jnp.asarray(t)[..., 0], jnp.asarray(t)[..., 1])),
    lambda q: _stack(q.loc, q.log_scale),
    lambda t: _diag(jnp.exp(-2.0 * t[1]), 2.0 * jnp.ones_like(t[1])),
    _always,
    1,
)

mu_sigma = Parameterization(
    "mu_sigma",
    _guarded(lambda t: t[..., 1] > 0, lambda mu, sigma: (mu, jnp.log(sigma)), (0.0, 1.0)),
    lambda q: _stack(q.loc, q.scale),
    lambda t: _diag(1.0 / t[1] ** 2, 2.0 / t[1] ** 2),
    lambda t: t[..., 1] > 0,
    1,
)

mu_tau = Parameterization(
    "mu_tau",
    _guarded(lambda t: t[..., 1] > 0, lambda mu, tau: (mu, -0.5 * jnp.log(tau)), (0.0, 1.0)),
    lambda q: _stack(q.loc, jnp.exp(-2.0 * q.log_scale)),
    lambda t: _diag(t[1], 0.5 / t[1] ** 2),
    lambda t: t[..., 1] > 0,
    1,
)


def _natural_to(eta1, eta2):
    var = -0.5 / eta2
    return eta1 * var, 0.5 * jnp.log(var)


def _cov_t(mu, var):
    """``Cov_q[(x, x^2)]`` for ``q = N(mu, var)``."""
    c = 2.0 * mu * var
    return jnp.stack([jnp.stack([var, c]), jnp.stack([c, 4.0 * mu**2 * var + 2.0 * var**2])])


def _natural_fisher(t):
    var = -0.5 / t[1]
    return _cov_t(t[0] * var, var)


def _natural_domain(t):
    return t[..., 1] < 0


natural = Parameterization(
    "natural",
    _guarded(_natural_domain, _natural_to, (0.0, -0.5)),
    lambda q: _stack(q.loc / q.variance, -0.5 / q.variance),
    _natural_fisher,
    _natural_domain,
    None,
)


def _expectation_domain(t):
    return t[..., 1] - t[..., 0] ** 2 > 0


def _expectation_to(m1, m2):
    var = m2 - m1**2
    return m1, 0.5 * jnp.log(var)


def _expectation_fisher(t):
    # Cov_q[T]^{-1} in closed form (det Cov_q[T] = 2 var^3).
    mu, var = t[0], t[1] - t[0] ** 2
    c = -mu / var**2
    return jnp.stack([jnp.stack([(2.0 * mu**2 + var) / var**2, c]), jnp.stack([c, 0.5 / var**2])])


expectation = Parameterization(
    "expectation",
    _guarded(_expectation_domain, _expectation_to, (0.0, 1.0)),
    lambda q: _stack(q.loc, q.loc**2 + q.variance),
    _expectation_fisher,
    _expectation_domain,
    None,
)

# Every other family is fitted in its own unconstrained parameters (loc, log_scale,
# chol, logits): the identity map, every value a valid q, no Fisher in closed form.
own_parameters = Parameterization(
    "own", lambda theta: theta, lambda q: q, None, lambda theta: jnp.asarray(True), None
)

PARAMETERIZATIONS: dict[str, Parameterization] = {
    p.name: p for p in (mu_log_sigma, mu_sigma, mu_tau, natural, expectation)
}


def get_parameterization(parameterization: str | Parameterization) -> Parameterization:
    """Looks a parameterization up by name (ValueError naming the valid ones)."""
    if isinstance(parameterization, Parameterization):
        return parameterization
    _checks.check_choice(parameterization, PARAMETERIZATIONS, "parameterization")
    return PARAMETERIZATIONS[parameterization]


def convert(theta: jax.typing.ArrayLike, source, target) -> jax.Array:
    """Maps coordinates ``theta`` (shape ``(..., 2)``) from ``source`` to ``target``."""
    source, target = get_parameterization(source), get_parameterization(target)
    return target.from_gaussian(source.to_gaussian(jnp.asarray(theta)))


def grad_in(parameterization, grad: Gaussian, q: Gaussian) -> jax.Array:
    r"""Maps a ``(loc, log_scale)`` gradient into ``parameterization``'s coordinates.

    ``grad_theta = J^T grad_phi`` with ``J = d phi / d theta`` at
    ``theta = from_gaussian(q)``, computed by ``jax.vjp`` through
    ``to_gaussian`` (autodiff, not a hand-written chain rule).

    Args:
      parameterization: a name in `PARAMETERIZATIONS` or a `Parameterization`.
      grad: a `Gaussian`-shaped gradient (scalar leaves, or ``(n,)`` for a batch).
      q: the `Gaussian` at which ``grad`` was taken (same shape).

    Returns:
      An array of shape ``(2,)`` (``(n, 2)`` for a batch). Where any component
      of ``grad`` is infinite (an infinite chi-square) every component is
      ``+inf``: there is no gradient there in any coordinates.
    """
    param = get_parameterization(parameterization)

    def one(g, q_):
        _, vjp = jax.vjp(param.to_gaussian, param.from_gaussian(q_))
        (out,) = vjp(Gaussian._make(tuple(g)))
        inf = jnp.isinf(g.loc) | jnp.isinf(g.log_scale)
        return jnp.where(inf, jnp.inf, out)

    if jnp.ndim(q.loc) == 0:
        return one(grad, q)
    return jax.vmap(one)(grad, q)


__all__ = [
    "PARAMETERIZATIONS",
    "Parameterization",
    "convert",
    "expectation",
    "get_parameterization",
    "grad_in",
    "mu_log_sigma",
    "mu_sigma",
    "mu_tau",
    "natural",
    "own_parameters",
]
