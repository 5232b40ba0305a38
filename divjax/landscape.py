r"""The divergence over q's parameters: grids, Hessians and values along paths.

One jitted evaluation serves the plots, the explorer and the examples: the
divergence (or ``log(1 + D)``, computed directly, finite even where ``D``
overflows) at many ``q``'s of the 1-D Gaussian family, in any of the five
coordinate systems of `divjax.coordinates`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax import _checks
from divjax.coordinates import get_parameterization
from divjax.divergences import check_divergence, divergence, is_infinite, log1p_divergence
from divjax.families import Gaussian


def _objective(name, p, param, log, alpha=None):
    value = log1p_divergence if log else divergence

    def f(theta):
        return value(name, p, param.to_gaussian(theta), alpha=alpha)

    return f


def landscape_grid(
    name: str,
    p,
    parameterization,
    theta1_range: tuple[float, float],
    theta2_range: tuple[float, float],
    num: int = 101,
    *,
    log: bool = False,
    alpha=None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""The divergence on a ``num x num`` grid of ``parameterization``'s coordinates.

    Map optima and trajectories into the same coordinates with
    ``parameterization.from_gaussian(q)`` (batched ``q`` gives ``(n, 2)``).

    Args:
      name: a divergence of `divjax.DIVERGENCES` or `divjax.ALPHA_DIVERGENCES`.
      p: a 1-D `GaussianMixture` target.
      parameterization: a name in `divjax.PARAMETERIZATIONS` or a `Parameterization`.
      theta1_range, theta2_range: ``(lo, hi)`` of each coordinate.
      num: points per axis.
      log: return ``log(1 + D)`` (finite where ``D`` is finite, even beyond
        the float range) instead of ``D``.
      alpha: the order of ``renyi_*`` and ``amari``.

    Returns:
      ``(T1, T2, values)``, each ``(num, num)`` (``meshgrid`` with ``indexing="xy"``:
      rows follow ``theta2``). ``values`` is ``+inf`` where the divergence is
      infinite and NaN outside the parameterization's domain.
    """
    alpha = check_divergence(name, alpha)
    param = get_parameterization(parameterization)
    num = _checks.check_int(num, "num", 2)
    t1, t2 = jnp.meshgrid(jnp.linspace(*theta1_range, num), jnp.linspace(*theta2_range, num))
    theta = jnp.stack([t1.ravel(), t2.ravel()], axis=-1)
    values = _grid(p, theta, name=name, param=param, log=log, alpha=alpha)
    return t1, t2, values.reshape(t1.shape)


@functools.partial(jax.jit, static_argnames=("name", "param", "log", "alpha"))
def _grid(p, theta, *, name, param, log, alpha):
    f = _objective(name, p, param, log, alpha)
    return jax.vmap(lambda t: jnp.where(param.in_domain(t), f(t), jnp.nan))(theta)


def hessian_eigenvalues(name: str, p, parameterization, q, *, log: bool = False, alpha=None):
    r"""Eigenvalues (ascending) of the divergence's Hessian in ``parameterization``'s coordinates.

    ``jax.hessian`` of ``theta -> D(to_gaussian(theta))`` at
    ``theta = from_gaussian(q)``; with ``log=True`` of ``log(1 + D)`` (for the
    chi-squares, the log of ``int p^2 / q`` resp. ``int q^2 / p``). Points
    where the divergence is infinite give NaN: keep ``q`` in the finite region.

    Args:
      q: a 1-D `Gaussian` with leaves of shape ``(n,)``.

    Returns:
      An array of shape ``(n, 2)``.
    """
    alpha = check_divergence(name, alpha)
    param = get_parameterization(parameterization)
    hess = jax.hessian(_objective(name, p, param, log, alpha))
    return jax.jit(jax.vmap(lambda t: jnp.linalg.eigvalsh(hess(t))))(param.from_gaussian(q))


@functools.partial(jax.jit, static_argnames=("name", "log", "alpha"))
def path_values(name: str, p, path, *, log: bool = False, alpha=None) -> jax.Array:
    """The exact divergence (or ``log(1 + D)``) at every ``q`` of a path (leaves of any shape)."""
    value = log1p_divergence if log else divergence
    shape = jnp.shape(path.mean())[: jnp.ndim(path.mean()) - len(path.event_shape)]
    flat = jax.tree_util.tree_map(lambda a: jnp.reshape(a, (-1,) + a.shape[len(shape) :]), path)
    values = jax.vmap(lambda q: value(name, p, q, alpha=alpha))(flat)
    return values.reshape(shape)


class Surface(NamedTuple):
    """A divergence over a window of ``(loc, log_scale)`` (1-D Gaussian family), for plots.

    Attributes:
      name: the divergence; ``log``: whether ``values`` are ``log(1 + D)``.
      loc, log_scale, values: ``(num, num)`` meshes (rows follow ``log_scale``);
        ``values`` is ``+inf`` where the divergence is infinite.
      fine_loc, fine_log_scale, infinite: a finer mesh and `divjax.is_infinite`
        on it (a clean boundary for the infinite region).
    """

    name: str
    log: bool
    loc: np.ndarray
    log_scale: np.ndarray
    values: np.ndarray
    fine_loc: np.ndarray
    fine_log_scale: np.ndarray
    infinite: np.ndarray


def default_window(p, starts=()) -> tuple[tuple[float, float], tuple[float, float]]:
    """A ``(loc_range, log_scale_range)`` covering a 1-D target and the (loc, log_scale) starts."""
    m, s = np.asarray(p.locs, np.float64), np.asarray(p.scales, np.float64)
    sd = math.sqrt(float(p.variance()))
    locs = [m.min() - 2 * s.max(), m.max() + 2 * s.max()] + [float(a) for a, _ in starts]
    logs = [math.log(s.min()) - 0.8, math.log(sd) + 0.6] + [float(b) for _, b in starts]
    return (min(locs) - 0.5, max(locs) + 0.5), (min(logs) - 0.2, max(logs) + 0.2)


def surface(
    name: str,
    p,
    loc_range: tuple[float, float] | None = None,
    log_scale_range: tuple[float, float] | None = None,
    num: int = 60,
    *,
    log: bool | None = None,
    alpha=None,
) -> Surface:
    """The divergence on a ``num x num`` (loc, log_scale) mesh (``log(1 + D)`` for chi-squares)."""
    alpha = check_divergence(name, alpha)
    if loc_range is None or log_scale_range is None:
        default = default_window(p)
        loc_range, log_scale_range = loc_range or default[0], log_scale_range or default[1]
    log = not name.startswith("kl") if log is None else log
    _, _, values = landscape_grid(
        name, p, "mu_log_sigma", loc_range, log_scale_range, num, log=log, alpha=alpha
    )
    locs, logs = np.linspace(*loc_range, num), np.linspace(*log_scale_range, num)
    mesh_l, mesh_s = np.meshgrid(locs, logs)
    fine_l, fine_s = np.meshgrid(
        np.linspace(*loc_range, 4 * num), np.linspace(*log_scale_range, 8 * num)
    )
    dtype = p.locs.dtype
    inf = _infinite(
        p, jnp.asarray(fine_l, dtype), jnp.asarray(fine_s, dtype), name=name, alpha=alpha
    )
    return Surface(
        name, log, mesh_l, mesh_s, np.asarray(values, np.float64), fine_l, fine_s, np.asarray(inf)
    )


@functools.partial(jax.jit, static_argnames=("name", "alpha"))
def _infinite(p, loc, log_scale, *, name, alpha):
    flat = jax.vmap(lambda m, s: is_infinite(name, p, Gaussian._make((m, s)), alpha=alpha))
    return flat(loc.ravel(), log_scale.ravel()).reshape(loc.shape)


__all__ = [
    "Surface",
    "default_window",
    "hessian_eigenvalues",
    "landscape_grid",
    "path_values",
    "surface",
]
