r"""The natural gradient, gradient clipping and fixed-scale fits, as optax transformations.

The natural gradient preconditions the gradient in coordinates ``theta`` by
the inverse Fisher information of ``q_theta`` in those same coordinates,
``F(theta)^{-1} grad_theta D``. Pushed forward to any other coordinates it is
the same tangent vector: the steepest-descent direction of ``D`` measured by
the KL between nearby ``q``'s, which does not depend on the coordinates. It
composes with anything optax offers::

    opt = optax.chain(natural_gradient("natural"), optax.sgd(0.1, momentum=0.9))

Two exact facts for the forward KL, ``KL(p || q) = A(eta) - eta . E_p[T] + c``
(``T(x) = (x, x^2)``, ``A`` the log-partition), both checked in the tests:

- in ``natural`` coordinates the natural gradient is
  ``(nabla^2 A)^{-1} (E_q[T] - E_p[T])``, the Newton step (the Hessian of
  the forward KL there is the Fisher ``nabla^2 A``): quadratic convergence;
- in ``expectation`` coordinates ``m = E_q[T]`` it is ``m - E_p[T]``, so one
  step of size 1 lands exactly on moment matching.

Gradient clipping and fixed scales are also optax transformations
(`wrap_optimizer` assembles them for `divjax.fit`); clipping is optax's own
``clip_by_global_norm``.

References:
  Amari (1998), Natural gradient works efficiently in learning, Neural
  Computation 10(2).
  Martens (2020), New insights and perspectives on the natural gradient
  method, JMLR 21.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from divjax import _linalg
from divjax.coordinates import PARAMETERIZATIONS, Parameterization, get_parameterization


def _check_damping(damping) -> float:
    if isinstance(damping, bool) or not isinstance(damping, (int, float)) or not damping >= 0:
        raise ValueError(f"damping must be a float >= 0, got {damping!r}")
    return float(damping)


def natural_direction(
    parameterization: str | Parameterization,
    theta: jax.typing.ArrayLike,
    grad: jax.typing.ArrayLike,
    damping: float = 0.0,
) -> jax.Array:
    r"""``(F(theta) + damping I)^{-1} grad``: the natural gradient in ``theta``'s coordinates.

    Args:
      parameterization: a name in `divjax.PARAMETERIZATIONS` or a `Parameterization`.
      theta: coordinates, shape ``(..., 2)``, inside the domain.
      grad: the ordinary gradient ``grad_theta D``, same shape.
      damping: Levenberg-Marquardt damping added to the Fisher's diagonal.

    Returns:
      An array of ``grad``'s shape.
    """
    param = get_parameterization(parameterization)
    damping = _check_damping(damping)

    def solve(t, g):
        f = param.fisher(t) + damping * jnp.eye(2, dtype=g.dtype)
        # The Fisher is symmetric positive definite; no LAPACK (see divjax._linalg).
        return _linalg.solve_spd(f, g)

    theta, grad = jnp.asarray(theta), jnp.asarray(grad)
    if theta.shape[-1:] != (2,) or grad.shape != theta.shape:
        raise ValueError(
            f"theta and grad must both have shape (..., 2), got {theta.shape} and {grad.shape}"
        )
    return jnp.vectorize(solve, signature="(2),(2)->(2)")(theta, grad)


def natural_gradient(
    parameterization: str | Parameterization, damping: float = 0.0
) -> optax.GradientTransformation:
    r"""An optax transformation: precondition by the inverse Fisher of ``q`` at ``params``.

    ``update(grads, state, params)`` returns
    ``(F(params) + damping I)^{-1} grads`` where ``F`` is the Fisher
    information of ``q_params`` in ``parameterization``'s coordinates. It
    rescales only: follow it with a step, e.g.
    ``optax.chain(natural_gradient(p), optax.sgd(lr, momentum=0.9))``.
    Works with every divergence and estimator (it sees only the gradient).

    Args:
      parameterization: the coordinates the optimizer runs in (as in `divjax.fit`).
      damping: added to the Fisher's diagonal (``0`` = the exact natural gradient).

    Raises:
      ValueError: at ``update`` time when ``params`` is ``None`` (the Fisher
        depends on where ``q`` is).
    """
    param = get_parameterization(parameterization)
    damping = _check_damping(damping)

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                "natural_gradient needs params: call update(grads, state, params), "
                "the Fisher information depends on the current q"
            )
        return natural_direction(param, params, updates, damping), state

    return optax.GradientTransformation(init_fn, update_fn)


def hold_scale(parameterization: str | Parameterization) -> optax.GradientTransformation:
    """Zeros the scale coordinate of the updates, so only the location moves.

    Raises:
      ValueError: for a parameterization without a scale-only coordinate
        (``natural``, ``expectation``), naming the valid ones.
    """
    param = get_parameterization(parameterization)
    if param.scale_index is None:
        valid = [n for n, p in PARAMETERIZATIONS.items() if p.scale_index is not None]
        raise ValueError(
            f"fixed_scale needs a parameterization with a scale-only coordinate, got "
            f"{param.name!r}; valid choices: {', '.join(valid)}"
        )
    index = param.scale_index

    def update_fn(updates, state, params=None):
        del params
        return jnp.asarray(updates).at[..., index].set(0.0), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def wrap_optimizer(
    optimizer: optax.GradientTransformation,
    parameterization: str | Parameterization,
    *,
    natural: bool = False,
    damping: float = 0.0,
    clip_norm: float | None = None,
    fixed_scale: bool = False,
) -> optax.GradientTransformation:
    r"""``optimizer`` with the options of `divjax.fit` around it.

    The chain, each part present only when asked for:
    ``hold_scale -> clip_by_global_norm(clip_norm) -> natural_gradient -> optimizer -> hold_scale``.
    Clipping acts on the raw gradient in ``theta`` coordinates (to bound the
    natural-gradient step instead, put ``optax.clip_by_global_norm`` after
    `natural_gradient` in your own chain). The scale is zeroed both before the
    optimizer (momentum never sees it) and after (nothing, e.g. weight decay,
    moves it).

    Raises:
      ValueError: ``clip_norm`` not positive, ``damping`` negative, or
        ``fixed_scale`` with ``natural`` or ``expectation`` coordinates.
    """
    param = get_parameterization(parameterization)
    parts = []
    hold = hold_scale(param) if fixed_scale else None
    if hold is not None:
        parts.append(hold)
    if clip_norm is not None:
        if isinstance(clip_norm, bool) or not isinstance(clip_norm, (int, float)) or clip_norm <= 0:
            raise ValueError(f"clip_norm must be a positive float or None, got {clip_norm!r}")
        parts.append(optax.clip_by_global_norm(float(clip_norm)))
    if natural:
        parts.append(natural_gradient(param, damping))
    if not parts:
        return optimizer
    parts.append(optimizer)
    if hold is not None:
        parts.append(hold)
    return optax.chain(*parts)


__all__ = ["hold_scale", "natural_direction", "natural_gradient", "wrap_optimizer"]
