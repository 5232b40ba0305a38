r"""Statistics of a gradient estimator over many independent draws: `grad_stats`.

All ``num_draws`` draws for every ``K`` and every ``q`` run in one compiled
program (draws and ``q``'s vmapped, the sample counts unrolled statically).
Where an exact gradient exists (a `GaussianMixture` target and a Gaussian
family where `divjax.exact_grad` is defined), each estimator is compared with
the quantity it is unbiased or consistent for (its *estimand*, from the
registry's `EstimatorInfo.estimand`): bias, MSE, SNR against it and cosine.
Elsewhere (a log density, a `MixtureGaussian` q, ``d`` beyond the quadrature)
the mean, variance, standard error and SNR about the mean are reported, and
the exact-based fields are NaN.

Stateful estimators (``msc``, ``msc_rb``): one draw is the gradient after
``burn_in`` kernel steps at the fixed ``q`` from a chain started at a draw of
``q``; draws are independent chains, so ``stderr`` is a plain standard error.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax import _checks, divergences
from divjax.coordinates import get_parameterization, grad_in
from divjax.estimators import REGISTRY, check_estimator, min_samples, stateful_surrogate
from divjax.families import Gaussian, check_family
from divjax.q_frame import frame, power_integral_infinite
from divjax.targets import GaussianMixture, as_target, check_pair

_tree_map = jax.tree_util.tree_map


class GradStats(NamedTuple):
    r"""Statistics of ``num_draws`` estimates; shapes ``(len(Ks),) + batch`` (+ each leaf's shape).

    The ``len(Ks)`` axis is present only when ``num_samples`` was a sequence,
    ``batch`` only when ``q`` was batched. Fields like ``q`` are pytrees of
    ``q``'s structure; the rest are arrays.

    Attributes:
      exact: the estimand ``scale * exact_grad(name, p, q)`` (NaN where no
        exact gradient exists; ``+inf`` where the divergence is infinite). For
        ``iwae`` and ``iwae_dreg`` (``estimand = "bound"``) this is
        ``grad KL(q || p)``, their estimand only at ``K = 1``.
      scale: ``1``, ``1 / Z`` (``gradient_over_z``) or ``1 / (1 + D)``
        (``gradient_log1p``).
      mean, bias, variance, sample_variance, stderr, mse: per parameter;
        ``variance`` and ``mse`` are ``+inf`` where the estimator's variance is
        known to be infinite (``sample_variance`` is what the draws gave).
      snr: ``|mean| / sqrt(variance)`` (Rainforth et al. 2018); ``+inf`` for a
        zero-variance estimator, ``0`` where the variance is infinite.
      snr_exact: ``|exact| / sqrt(variance)``.
      cosine: mean over draws of ``cos(g, exact)`` over all parameters.
      mean_ess, mean_ess_sq: mean ``SurrogateAux.ess`` and ``ess_sq``.
      infinite_variance: the (asymptotic) variance is infinite
        (`EstimatorInfo.variance_exponent`); False where not known.
      divergence_infinite: the divergence is ``+inf`` here.
      num_samples, num_draws: ``K`` per row, and the draws.

    References:
      Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh (2018), Tighter
      variational bounds are not necessarily better, ICML (SNR).
    """

    exact: Any
    scale: jax.Array
    mean: Any
    bias: Any
    variance: Any
    sample_variance: Any
    stderr: Any
    mse: Any
    snr: Any
    snr_exact: Any
    cosine: jax.Array
    mean_ess: jax.Array
    mean_ess_sq: jax.Array
    infinite_variance: jax.Array
    divergence_infinite: jax.Array
    num_samples: jax.Array
    num_draws: jax.Array


def infinite_variance(name: str, estimator: str, p, q, *, alpha=None) -> jax.Array:
    r"""Whether the estimator's (asymptotic) variance is infinite at an unbatched ``q``.

    ``I(a) = inf`` for the record's ``variance_exponent`` ``a``: with ``s^2`` the
    widest component's variance and ``sigma^2`` q's (1-D), ``snis``, ``snis_dreg``,
    ``msc_rb`` and ``iwae`` iff ``sigma^2 <= s^2 / 2``; ``snis2`` and
    ``iwae_dreg`` iff ``sigma^2 <= 3 s^2 / 4``; ``score``, ``score_sn``,
    ``score_cv`` and chi2_reverse ``reparam`` iff ``sigma^2 >= 3 s^2 / 2``;
    never for ``msc``, the other reverse-KL estimators and ``"exact"``. False
    where it cannot be known (a log-density target or a `MixtureGaussian` q).
    """
    info = REGISTRY[(name, estimator)]
    if (
        info.variance_exponent is None
        or not isinstance(p, GaussianMixture)
        or q.family == "mixture"
    ):
        return jnp.zeros((), bool)
    return power_integral_infinite(frame(p, q), info.variance_exponent(alpha))


def _estimand(name, estimator, alpha, target, q, exact_ok):
    """``(exact, scale, divergence_infinite, infinite_variance)`` at one unbatched ``q``."""
    info = REGISTRY[(name, estimator)]
    inf_var = infinite_variance(name, estimator, target, q, alpha=alpha)
    dtype = jax.tree_util.tree_leaves(q)[0].dtype
    if not exact_ok:
        nan = jnp.asarray(jnp.nan, dtype)
        return _tree_map(lambda a: jnp.full_like(a, jnp.nan), q), nan, jnp.zeros((), bool), inf_var
    div_inf = divergences.is_infinite(name, target, q, alpha=alpha)
    if info.estimand == "gradient_over_z":
        scale = jnp.exp(-target.log_normalizer).astype(dtype)
    elif info.estimand == "gradient_log1p":
        scale = jnp.exp(-divergences.log1p_divergence(name, target, q, alpha=alpha))
    else:
        scale = jnp.ones((), dtype)
    grad = divergences.exact_grad(name, target, q, alpha=alpha)
    exact = _tree_map(lambda e: jnp.where(div_inf, jnp.inf, scale * e), grad)
    return exact, scale, div_inf, inf_var


def _draw_fn(name, estimator, alpha, target, q, k, burn_in):
    """``key -> (estimate, aux)``; a stateful estimator first runs ``burn_in`` kernel steps."""
    est = stateful_surrogate(name, estimator, target, k, alpha=alpha)
    grad_fn = jax.grad(est.loss_fn, has_aux=True)

    def draw(key):
        if not REGISTRY[(name, estimator)].stateful:
            g, (aux, _) = grad_fn(q, key, ())
            return g, aux
        key_init, key_chain, key_grad = jax.random.split(key, 3)

        def kernel(state, key_step):
            return est.loss_fn(q, key_step, state)[1][1], None

        state, _ = jax.lax.scan(kernel, est.init(q, key_init), jax.random.split(key_chain, burn_in))
        g, (aux, _) = grad_fn(q, key_grad, state)
        return g, aux

    return draw


def _flat(tree, axis_from):
    return jnp.concatenate(
        [jnp.reshape(a, a.shape[:axis_from] + (-1,)) for a in jax.tree_util.tree_leaves(tree)], -1
    )


def _stats_one(name, estimator, alpha, target, q, key, k, num_draws, estimand, burn_in, param):
    """Statistics for one unbatched ``q`` and one ``K``."""
    keys = jax.random.split(key, num_draws)
    g, aux = jax.vmap(_draw_fn(name, estimator, alpha, target, q, k, burn_in))(keys)
    exact, scale, div_inf, inf_var = estimand
    if param != "mu_log_sigma":  # every draw into theta's coordinates, before any statistic

        def to_theta(grad):
            return Gaussian._make(tuple(grad_in(param, grad, q)))

        g = jax.vmap(to_theta)(g)
        exact = to_theta(exact)
    info = REGISTRY[(name, estimator)]
    truly_inf = inf_var & (not info.self_normalized)
    mean = _tree_map(lambda a: jnp.mean(a, axis=0), g)
    sample_var = _tree_map(lambda a: jnp.var(a, axis=0, ddof=1), g)
    var = _tree_map(lambda s: jnp.where(truly_inf, jnp.inf, s), sample_var)
    std = _tree_map(jnp.sqrt, var)

    def ratio(num, den):
        return jnp.where(den > 0, jnp.abs(num) / den, jnp.inf)

    gf, ef = _flat(g, 1), _flat(exact, 0)
    g_norm, e_norm = jnp.linalg.norm(gf, axis=-1), jnp.linalg.norm(ef)
    cos = jnp.where(g_norm > 0, gf @ ef / (g_norm * e_norm), 0.0)
    mse = _tree_map(
        lambda a, e: jnp.where(truly_inf, jnp.inf, jnp.mean((a - e) ** 2, axis=0)), g, exact
    )
    return GradStats(
        exact=exact,
        scale=scale,
        mean=mean,
        bias=_tree_map(jnp.subtract, mean, exact),
        variance=var,
        sample_variance=sample_var,
        stderr=_tree_map(lambda v: jnp.sqrt(v / num_draws), var),
        mse=mse,
        snr=_tree_map(ratio, mean, std),
        snr_exact=_tree_map(ratio, exact, std),
        cosine=jnp.where(jnp.isfinite(e_norm), jnp.mean(cos), jnp.nan),
        mean_ess=jnp.mean(aux.ess),
        mean_ess_sq=jnp.mean(aux.ess_sq),
        infinite_variance=inf_var,
        divergence_infinite=div_inf,
        num_samples=jnp.asarray(k),
        num_draws=jnp.asarray(num_draws),
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "name",
        "groups",
        "alpha",
        "num_draws",
        "burn_in",
        "param",
        "exact_ok",
        "batched",
    ),
)
def _grad_stats(
    target, q, keys, *, name, groups, alpha, num_draws, burn_in, param, exact_ok, batched
):
    """One program for several estimators: ``groups`` is ``((estimator, Ks), ...)``."""

    def per_q(q_):
        out = []
        for (estimator, ks), key in zip(groups, keys):
            estimand = _estimand(name, estimator, alpha, target, q_, exact_ok)
            rows = [
                _stats_one(
                    name,
                    estimator,
                    alpha,
                    target,
                    q_,
                    jax.random.fold_in(key, k),
                    k,
                    num_draws,
                    estimand,
                    burn_in,
                    param,
                )  # fmt: skip
                for k in ks
            ]
            out.append(_tree_map(lambda *r: jnp.stack(r), *rows))
        return tuple(out)

    if not batched:
        return per_q(q)
    return _tree_map(lambda a: jnp.swapaxes(a, 0, 1), jax.vmap(per_q)(q))  # K axis first


def _prepare(name, estimators, target, q, ks_by_est, num_draws, burn_in, parameterization, alpha):
    for est, ks in zip(estimators, ks_by_est):
        if not ks:
            raise ValueError("num_samples must be an int or a non-empty sequence of ints")
        for k in ks:
            _, alpha, target = check_estimator(name, est, target, k, alpha=alpha)
    num_draws = _checks.check_int(num_draws, "num_draws", 2)
    burn_in = _checks.check_int(burn_in, "burn_in", 0)
    check_family(q)
    check_pair(target, q)
    target = as_target(target, q.event_shape)
    batched = jnp.ndim(q.mean()) > len(q.event_shape)
    param = get_parameterization(parameterization).name
    if param != "mu_log_sigma" and q.family != "gaussian":
        raise ValueError("parameterization applies to a 1-D Gaussian q only")
    one = _tree_map(lambda a: a[0], q) if batched else q
    exact_ok = q.family != "mixture" and isinstance(target, GaussianMixture)
    exact_ok = exact_ok and divergences.exact_available(name, target, one, alpha, what="gradient")
    return dict(
        alpha=alpha, num_draws=num_draws, burn_in=burn_in, param=param, exact_ok=exact_ok,
        batched=batched,
    ), target  # fmt: skip


def grad_stats_many(
    name: str,
    estimators,
    target,
    q,
    num_samples,
    num_draws: int,
    key: jax.Array,
    *,
    alpha=None,
    burn_in: int = 100,
    parameterization: str = "mu_log_sigma",
) -> dict:
    r"""`grad_stats` of several estimators of one divergence in ONE compiled program.

    ``num_samples`` is a sequence of ``K``; each estimator uses those at or
    above its minimum (`divjax.min_samples`). Estimator ``i``'s draws use
    ``fold_in(key, i)`` in place of ``key``. Returns ``{estimator: GradStats}``
    with a leading ``K`` axis.
    """
    estimators = tuple(estimators)
    ks_by_est = [
        tuple(int(k) for k in num_samples if k >= min_samples(e, name)) for e in estimators
    ]
    kw, target = _prepare(
        name, estimators, target, q, ks_by_est, num_draws, burn_in, parameterization, alpha
    )
    keys = tuple(jax.random.fold_in(key, i) for i in range(len(estimators)))
    out = _grad_stats(target, q, keys, name=name, groups=tuple(zip(estimators, ks_by_est)), **kw)
    return dict(zip(estimators, out))


def grad_stats(
    name: str,
    estimator: str,
    target,
    q,
    num_samples: int | Sequence[int],
    num_draws: int,
    key: jax.Array,
    *,
    alpha=None,
    burn_in: int = 100,
    parameterization: str = "mu_log_sigma",
) -> GradStats:
    r"""Bias, variance, MSE, SNR, cosine and ESS of an estimator over many draws.

    Args:
      name, estimator, alpha: as `divjax.surrogate`.
      target: any target `divjax.surrogate` takes (exact comparisons need a
        `GaussianMixture` where `divjax.exact_grad` is defined).
      q: any family, unbatched or with a leading batch axis ``(n, ...)``.
      num_samples: ``K``, an int or a sequence of ints.
      num_draws: independent estimates per ``K`` and ``q`` (``>= 2``); draws for
        ``K`` use ``fold_in(key, K)``, the same for every ``q`` of a batch.
      key: a PRNG key.
      burn_in: kernel steps before each draw of a stateful estimator.
      parameterization: 1-D `Gaussian` only: the coordinates the gradient is
        taken in (`divjax.grad_in` maps each draw and the exact gradient).

    Returns:
      A `GradStats` with leading shape ``(len(Ks),) + batch``.

    Raises:
      ValueError: as `divjax.surrogate`, ``num_draws < 2``, a bad ``burn_in``,
        or a ``q`` that does not fit the target.
    """
    single = isinstance(num_samples, (int, np.integer)) and not isinstance(num_samples, bool)
    ks = (int(num_samples),) if single else tuple(int(k) for k in num_samples)
    kw, target = _prepare(
        name, (estimator,), target, q, [ks], num_draws, burn_in, parameterization, alpha
    )
    (out,) = _grad_stats(target, q, (key,), name=name, groups=((estimator, ks),), **kw)
    if single:
        out = _tree_map(lambda a: a[0], out)
    return out


__all__ = ["GradStats", "grad_stats", "grad_stats_many", "infinite_variance"]
