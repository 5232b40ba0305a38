r"""`check_grad`: verify a hand-derived gradient formula against autodiff.

Users deriving their own gradient of a divergence (say, a new quadrature or
a closed form) pass it here; it is compared, q by q, with ``jax.grad`` of
the exact value (`divjax.autodiff_grad`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax.divergences import autodiff_grad, check_divergence, divergence
from divjax.families import Gaussian
from divjax.targets import GaussianMixture


class GradCheck(NamedTuple):
    """Result of `check_grad`; errors are per parameter (``Gaussian``-shaped).

    Attributes:
      max_abs_err: the largest ``|g_user - g_autodiff|`` over the q's.
      max_rel_err: the largest ``|g_user - g_autodiff| / max(|g_autodiff|, atol)``.
      num_q: how many q's (with a finite divergence) were compared.
      ok: whether every relative error is below ``rtol``.
    """

    max_abs_err: Gaussian
    max_rel_err: Gaussian
    num_q: int
    ok: bool


def default_qs(p: GaussianMixture, num: int = 5) -> Gaussian:
    """A grid of q's around the target: locations across its span, three scales."""
    m = np.asarray(p.locs, dtype=np.float64)
    s = np.asarray(p.scales, dtype=np.float64)
    span = m.max() - m.min() + 2 * s.max()
    locs = np.linspace(m.min() - 0.25 * span, m.max() + 0.25 * span, num)
    log_scales = np.log([s.max() * 0.9, s.max() * 1.2, max(span / 4, s.max() * 1.3)])
    loc, log_scale = np.meshgrid(locs, log_scales)
    return Gaussian(jnp.asarray(loc.ravel()), jnp.asarray(log_scale.ravel()))


def check_grad(
    grad_fn: Callable[[GaussianMixture, Gaussian], Gaussian],
    name: str,
    p: GaussianMixture,
    qs: Gaussian | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    verbose: bool = True,
) -> GradCheck:
    r"""Compares ``grad_fn(p, q)`` with ``jax.grad`` of ``divergence(name, p, q)``.

    Args:
      grad_fn: the user's gradient, ``(p, q) -> Gaussian`` with respect to
        ``(loc, log_scale)``. It is vmapped over ``qs``, so it must be
        written in ``jax.numpy``.
      name: one of `divjax.DIVERGENCES`.
      p: the target.
      qs: a batched `Gaussian` (leaves of shape ``(n,)``); by default a grid
        around ``p`` (`default_qs`). Points where the divergence is infinite
        are skipped: no gradient exists there.
      rtol: the relative error above which the check fails.
      atol: floor of the denominator of the relative error.
      verbose: print a table of the errors.

    Returns:
      A `GradCheck`.
    """
    check_divergence(name)
    if qs is None:
        qs = default_qs(p)
    values = jax.vmap(lambda q: divergence(name, p, q))(qs)
    finite = np.asarray(jnp.isfinite(values))
    if not finite.any():
        raise ValueError(
            f"check_grad: {name} is infinite at every q given; pass qs= where it is finite"
        )
    qs = jax.tree_util.tree_map(lambda a: a[finite], qs)
    user = jax.vmap(lambda q: grad_fn(p, q))(qs)
    ref = jax.vmap(lambda q: autodiff_grad(name, p, q))(qs)
    abs_err = jax.tree_util.tree_map(lambda u, r: jnp.abs(u - r), user, ref)
    rel_err = jax.tree_util.tree_map(lambda e, r: e / jnp.maximum(jnp.abs(r), atol), abs_err, ref)
    max_abs = Gaussian._make(jnp.max(a) for a in abs_err)
    max_rel = Gaussian._make(jnp.max(a) for a in rel_err)
    ok = bool(all(float(r) <= rtol for r in max_rel))
    result = GradCheck(max_abs, max_rel, int(finite.sum()), ok)
    if verbose:
        print(format_check(name, result, rtol))
    return result


def format_check(name: str, result: GradCheck, rtol: float) -> str:
    verdict = "PASS" if result.ok else "FAIL"
    lines = [
        f"check_grad {name}: {verdict} over {result.num_q} q's (rtol {rtol:g})",
        f"  {'parameter':<10} {'max abs err':>12} {'max rel err':>12}",
    ]
    for field, a, r in zip(Gaussian._fields, result.max_abs_err, result.max_rel_err):
        lines.append(f"  {field:<10} {float(a):>12.3e} {float(r):>12.3e}")
    return "\n".join(lines)
