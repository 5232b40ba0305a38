r"""`check_grad`: verify a hand-derived gradient formula against autodiff.

Users deriving their own gradient of a divergence (a new quadrature, a closed
form) pass it here; it is compared, q by q, with ``jax.grad`` of the exact
value (`divjax.autodiff_grad`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax.divergences import autodiff_grad, check_divergence, divergence
from divjax.families import Gaussian


class GradCheck(NamedTuple):
    """Result of `check_grad`; errors are per parameter (pytrees like ``q``).

    Attributes:
      max_abs_err: the largest ``|g_user - g_autodiff|`` over the q's.
      max_rel_err: the largest ``|g_user - g_autodiff| / max(|g_autodiff|, atol)``.
      num_q: how many q's (with a finite divergence) were compared.
      ok: whether every relative error is below ``rtol``.
    """

    max_abs_err: Any
    max_rel_err: Any
    num_q: int
    ok: bool


def default_qs(p, num: int = 5) -> Gaussian:
    """A grid of 1-D q's around a 1-D target: locations across its span, three scales."""
    if p.event_shape != ():
        raise ValueError("default_qs is for a 1-D target; pass qs= for a d-dimensional one")
    m = np.asarray(p.locs, dtype=np.float64)
    s = np.asarray(p.scales, dtype=np.float64)
    span = m.max() - m.min() + 2 * s.max()
    locs = np.linspace(m.min() - 0.25 * span, m.max() + 0.25 * span, num)
    log_scales = np.log([s.max() * 0.9, s.max() * 1.2, max(span / 4, s.max() * 1.3)])
    loc, log_scale = np.meshgrid(locs, log_scales)
    return Gaussian(jnp.asarray(loc.ravel()), jnp.asarray(log_scale.ravel()))


def check_grad(
    grad_fn: Callable[[Any, Any], Any],
    name: str,
    p,
    qs=None,
    *,
    alpha=None,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    verbose: bool = True,
) -> GradCheck:
    r"""Compares ``grad_fn(p, q)`` with ``jax.grad`` of ``divergence(name, p, q)``.

    Args:
      grad_fn: the user's gradient, ``(p, q) -> pytree like q``. It is vmapped
        over ``qs``, so it must be written in ``jax.numpy``.
      name: a divergence (`divjax.DIVERGENCES`, `divjax.ALPHA_DIVERGENCES`).
      p: the target.
      qs: a batched family (leaves with a leading ``n``); by default a grid
        around a 1-D ``p`` (`default_qs`). Points where the divergence is
        infinite are skipped: no gradient exists there.
      alpha: the order of ``renyi_*`` and ``amari``.
      rtol: the relative error above which the check fails.
      atol: floor of the denominator of the relative error.
      verbose: print a table of the errors.
    """
    alpha = check_divergence(name, alpha)
    if qs is None:
        qs = default_qs(p)
    # Jitted: evaluated eagerly, a quadrature compiles every primitive on its own (seconds).
    values = jax.jit(jax.vmap(lambda q: divergence(name, p, q, alpha=alpha)))(qs)
    finite = np.asarray(jnp.isfinite(values))
    if not finite.any():
        raise ValueError(
            f"check_grad: {name} is infinite at every q given; pass qs= where it is finite"
        )
    qs = jax.tree_util.tree_map(lambda a: a[finite], qs)
    user = jax.jit(jax.vmap(lambda q: grad_fn(p, q)))(qs)
    ref = jax.jit(jax.vmap(lambda q: autodiff_grad(name, p, q, alpha=alpha)))(qs)
    abs_err = jax.tree_util.tree_map(lambda u, r: jnp.abs(u - r), user, ref)
    rel_err = jax.tree_util.tree_map(lambda e, r: e / jnp.maximum(jnp.abs(r), atol), abs_err, ref)
    max_abs = jax.tree_util.tree_map(jnp.max, abs_err)
    max_rel = jax.tree_util.tree_map(jnp.max, rel_err)
    ok = bool(all(float(r) <= rtol for r in jax.tree_util.tree_leaves(max_rel)))
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
    fields = getattr(result.max_abs_err, "_fields", None) or range(len(result.max_abs_err))
    for field, a, r in zip(fields, result.max_abs_err, result.max_rel_err):
        lines.append(f"  {field!s:<10} {float(a):>12.3e} {float(r):>12.3e}")
    return "\n".join(lines)


__all__ = ["GradCheck", "check_grad", "default_qs"]
