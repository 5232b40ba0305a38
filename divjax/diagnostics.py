r"""Statistics of a gradient estimator over many independent draws, against the exact gradient.

`grad_stats` runs ``num_draws`` independent estimates in one ``vmap`` inside one
compiled program (per call signature), for several sample counts ``K`` and a
batch of ``q``'s at once, and compares them with the quantity the estimator is
unbiased or consistent for (its *estimand*, `GradStats.exact`).

Stateful estimators (``msc``, ``msc_rb``). One draw is the gradient at the
fixed ``q`` given a chain state drawn (approximately) from the kernel's
stationary distribution ``p``: each draw starts its own chain at a sample of
``q`` (`Stateful.init`), runs ``burn_in`` kernel steps at that ``q``, and takes
the estimate at the next step. The draws are independent chains, so
``stderr`` is a plain standard error; the reported bias includes whatever
``burn_in`` steps did not forget of the start.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divjax.divergences import divergence, exact_grad, is_infinite
from divjax.estimators import check_estimator, stateful_surrogate
from divjax.families import Gaussian
from divjax.parameterizations import get_parameterization, grad_in
from divjax.targets import GaussianMixture

_tree_map = jax.tree_util.tree_map


class GradStats(NamedTuple):
    r"""Statistics of ``num_draws`` independent estimates; shapes ``S = (len(Ks),) + batch``.

    The leading ``len(Ks)`` axis is present only when ``num_samples`` was a
    sequence, ``batch`` only when ``q`` was batched. `Gaussian` fields have
    leaves of shape ``S``, the rest are arrays of shape ``S``.

    Attributes:
      exact: the estimand ``c * exact_grad(name, p, q)``: ``c = 1`` for the
        KLs and ``"exact"``, ``c = 1 / Z`` for ``score`` and chi2_reverse
        ``reparam`` and ``score_cv`` (unbiased for ``grad chi^2 / Z``),
        ``c = 1 / (1 + chi^2)`` for ``snis2`` and ``score_sn`` (consistent for
        ``grad log(1 + chi^2)``). ``+inf`` where the divergence is infinite.
        For ``iwae`` and ``iwae_dreg`` (unbiased for ``-grad L_K``, the
        importance-weighted bound) this is ``grad KL(q || p)``, their estimand
        only at ``K = 1``: for ``K > 1`` ``bias`` is the bound's gap.
      scale: ``c`` above (recover ``exact_grad`` as ``exact / scale``).
      mean: mean of the draws.
      bias: ``mean - exact``.
      variance: per-parameter variance of one draw (``ddof=1``); ``+inf``
        where the estimator's variance is infinite (``infinite_variance`` for
        ``score`` and chi2_reverse ``reparam``), whatever the sample gave.
      sample_variance: the plain sample variance of the draws, whatever they
        were (finite in exact arithmetic; heavy-tailed draws can overflow it to
        ``inf`` in float32).
      stderr: standard error of ``mean``, ``sqrt(variance / num_draws)``.
      mse: ``mean((g - exact)^2)``; ``+inf`` where ``variance`` is.
      snr: signal-to-noise ratio ``|mean| / sqrt(variance)``, the definition of
        Rainforth et al. (2018); ``+inf`` for a zero-variance estimator, ``0``
        where the variance is infinite.
      snr_exact: ``|exact| / sqrt(variance)`` (the same against the estimand).
      cosine: mean over draws of ``cos(g, exact)`` in ``(loc, log_scale)``
        space (a single draw's alignment); NaN where ``exact`` is infinite.
      mean_ess: mean over draws of ``SurrogateAux.ess``.
      mean_ess_sq: mean over draws of ``SurrogateAux.ess_sq``.
      infinite_variance: `infinite_variance`: the estimator's variance, or for
        self-normalized estimators its asymptotic variance ``K Var``, is
        infinite, so the 1/K rate, the CLT and ``stderr`` do not hold. For
        ``snis``, ``snis2`` and ``score_sn`` the finite-K ``variance`` reported is
        still a valid (finite) estimate, but a heavy-tailed one.
      divergence_infinite: the divergence (hence ``exact``) is ``+inf`` here.
      num_samples: ``K`` for each row, shape ``S``.
      num_draws: ``()`` the number of independent draws.

    References:
      Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh (2018), Tighter
      variational bounds are not necessarily better, ICML (SNR).
    """

    exact: Gaussian
    scale: jax.Array
    mean: Gaussian
    bias: Gaussian
    variance: Gaussian
    sample_variance: Gaussian
    stderr: Gaussian
    mse: Gaussian
    snr: Gaussian
    snr_exact: Gaussian
    cosine: jax.Array
    mean_ess: jax.Array
    mean_ess_sq: jax.Array
    infinite_variance: jax.Array
    divergence_infinite: jax.Array
    num_samples: jax.Array
    num_draws: jax.Array


def infinite_variance(name: str, estimator: str, p: GaussianMixture, q: Gaussian) -> jax.Array:
    r"""Whether the estimator's (asymptotic) variance is infinite at ``q``.

    With ``s^2`` the widest component's variance and ``sigma^2`` q's variance,
    the moment that must be finite diverges when:

    - ``snis``: ``E_q[w^2 s^2]``, ``sigma^2 <= s^2 / 2`` (iff ``chi^2(p||q) = inf``);
      the same for ``snis_dreg``, ``msc_rb`` and ``iwae``, whose leading term is
      a ``wbar``-weighted average of polynomials in ``x``;
    - ``snis2``: ``E_q[w^4 s^2]``, ``sigma^2 <= 3 s^2 / 4``; the same for
      ``iwae_dreg`` (``K`` times it is a ratio with ``w^2`` in the numerator);
    - ``score``, ``score_sn``, ``score_cv``, chi2_reverse ``reparam``:
      ``E_q[(q/p)^2 s^2]``, ``sigma^2 >= 3 s^2 / 2`` (chi^2(q||p) itself is
      infinite from ``2 s^2``);
    - ``msc`` (``Var_p(s) < inf`` at stationarity), the other KL reverse
      estimators and ``"exact"``: never.

    For ``score`` and ``reparam`` that is ``Var g = inf`` at every ``K``; the
    self-normalized ones have finite variance at each ``K`` (convex
    combinations of scores) but ``K Var g -> inf``.

    Returns:
      A bool array of q's batch shape.
    """
    s2 = jnp.max(p.scales**2, axis=-1)
    v = q.variance
    if estimator in ("snis", "snis_dreg", "msc_rb", "iwae"):
        return v <= 0.5 * s2
    if estimator in ("snis2", "iwae_dreg"):
        return v <= 0.75 * s2
    if name == "chi2_reverse" and estimator != "exact":
        return v >= 1.5 * s2
    return jnp.zeros(jnp.shape(v), dtype=bool)


_UNBIASED_OVER_Z = ("score", "reparam", "score_cv")  # chi2_reverse: grad chi^2 / Z


def _estimand_scale(name: str, estimator: str, p: GaussianMixture, q: Gaussian) -> jax.Array:
    if name == "chi2_reverse" and estimator in _UNBIASED_OVER_Z:
        return jnp.exp(-p.log_normalizer) * jnp.ones_like(q.loc)
    if estimator in ("snis2", "score_sn"):
        return 1.0 / (1.0 + divergence(name, p, q))
    return jnp.ones_like(q.loc)


def _estimand(name, estimator, target, q):
    """``(exact, scale, divergence_infinite, infinite_variance)`` for one unbatched ``q``."""
    div_inf = is_infinite(name, target, q)
    scale = _estimand_scale(name, estimator, target, q)
    exact = _tree_map(lambda e: jnp.where(div_inf, jnp.inf, scale * e), exact_grad(name, target, q))
    return exact, scale, div_inf, infinite_variance(name, estimator, target, q)


def _draw_fn(name, estimator, target, q, k, burn_in):
    """``key -> (estimate, aux)``; a stateful estimator first runs ``burn_in`` kernel steps."""
    est = stateful_surrogate(name, estimator, target, k)
    grad_fn = jax.grad(est.loss_fn, has_aux=True)

    def draw(key):
        if not jax.tree_util.tree_leaves(jax.eval_shape(est.init, q, key)):
            g, (aux, _) = grad_fn(q, key, ())
            return g, aux
        key_init, key_chain, key_grad = jax.random.split(key, 3)

        def kernel(state, key_step):
            return est.loss_fn(q, key_step, state)[1][1], None

        state, _ = jax.lax.scan(kernel, est.init(q, key_init), jax.random.split(key_chain, burn_in))
        g, (aux, _) = grad_fn(q, key_grad, state)
        return g, aux

    return draw


def _stats_one(name, estimator, target, q, key, k, num_draws, estimand, burn_in, param):
    """Statistics for one unbatched ``q`` and one ``K``."""
    keys = jax.random.split(key, num_draws)
    g, aux = jax.vmap(_draw_fn(name, estimator, target, q, k, burn_in))(keys)

    exact, scale, div_inf, inf_var = estimand
    if param != "mu_log_sigma":  # every draw into theta's coordinates, before any statistic

        def to_theta(grad):
            return Gaussian._make(tuple(grad_in(param, grad, q)))

        g = jax.vmap(to_theta)(g)
        exact = to_theta(exact)
    truly_inf = inf_var & (name == "chi2_reverse") & (estimator in _UNBIASED_OVER_Z)

    mean = _tree_map(lambda a: jnp.mean(a, axis=0), g)
    sample_var = _tree_map(lambda a: jnp.var(a, axis=0, ddof=1), g)
    var = _tree_map(lambda s: jnp.where(truly_inf, jnp.inf, s), sample_var)
    std = _tree_map(jnp.sqrt, var)

    def ratio(num, den):
        return jnp.where(den > 0, jnp.abs(num) / den, jnp.inf)

    g_dot_e = g.loc * exact.loc + g.log_scale * exact.log_scale
    g_norm = jnp.sqrt(g.loc**2 + g.log_scale**2)
    e_norm = jnp.sqrt(exact.loc**2 + exact.log_scale**2)
    cos = jnp.where(g_norm > 0, g_dot_e / (g_norm * e_norm), 0.0)
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
        cosine=jnp.where(jnp.isinf(e_norm), jnp.nan, jnp.mean(cos)),
        mean_ess=jnp.mean(aux.ess),
        mean_ess_sq=jnp.mean(aux.ess_sq),
        infinite_variance=inf_var,
        divergence_infinite=div_inf,
        num_samples=jnp.asarray(k),
        num_draws=jnp.asarray(num_draws),
    )


@functools.partial(
    jax.jit, static_argnames=("name", "estimator", "ks", "num_draws", "burn_in", "param")
)
def _grad_stats(target, q, key, *, name, estimator, ks, num_draws, burn_in, param):
    def per_q(q_):
        estimand = _estimand(name, estimator, target, q_)
        rows = [
            _stats_one(
                name,
                estimator,
                target,
                q_,
                jax.random.fold_in(key, k),
                k,
                num_draws,
                estimand,
                burn_in,
                param,
            )
            for k in ks
        ]
        return _tree_map(lambda *r: jnp.stack(r), *rows)

    if jnp.ndim(q.loc) == 0:
        return per_q(q)
    out = jax.vmap(per_q)(q)
    return _tree_map(lambda a: jnp.swapaxes(a, 0, 1), out)  # K axis first


def grad_stats(
    name: str,
    estimator: str,
    target: GaussianMixture,
    q: Gaussian,
    num_samples: int | Sequence[int],
    num_draws: int,
    key: jax.Array,
    *,
    burn_in: int = 100,
    parameterization: str = "mu_log_sigma",
) -> GradStats:
    r"""Bias, variance, MSE, SNR, cosine and ESS of an estimator over many draws.

    All ``num_draws`` draws for every ``K`` and every ``q`` run in one compiled
    program: draws are vmapped, ``q``'s are vmapped, and the sample counts, which
    fix array shapes, are unrolled statically (one vmapped block per ``K``;
    ``benchmarks/bench_grad_stats.py`` measures it). Compilation is cached per
    ``(name, estimator, Ks, num_draws)`` and input shapes/dtypes. The draws for
    ``K`` use ``fold_in(key, K)``; the same keys serve every ``q`` in a batch
    (common random numbers across ``q``).

    Args:
      name: one of `divjax.DIVERGENCES`.
      estimator: one of ``divjax.ESTIMATORS[name]`` (``"exact"`` gives zero variance).
      target: a `GaussianMixture` (the exact gradient needs it).
      q: a `Gaussian` with scalar leaves, or leaves of shape ``(n,)`` for a batch.
      num_samples: ``K``, an int or a sequence of ints.
      num_draws: independent estimates per ``K`` and ``q`` (``>= 2``).
      key: a PRNG key.
      burn_in: kernel steps at ``q`` before each draw of a stateful estimator
        (``msc``, ``msc_rb``; see the module docstring); ignored otherwise.
      parameterization: the coordinates ``theta`` the gradient is taken in (a
        name in `divjax.PARAMETERIZATIONS`). Each draw and the exact gradient
        are mapped by `divjax.grad_in` (a vjp through the map) before any
        statistic; the `Gaussian`-shaped fields then hold ``(theta_1,
        theta_2)`` positionally in ``(.loc, .log_scale)``.

    Returns:
      A `GradStats` with shapes ``(len(Ks),) + batch`` (``K`` axis dropped for an
      int ``num_samples``, batch axis absent for an unbatched ``q``).

    Raises:
      ValueError: as `divjax.surrogate`, a non-`GaussianMixture` target, or
        ``num_draws < 2``, or ``burn_in`` not a non-negative int.
    """
    single = isinstance(num_samples, (int, np.integer)) and not isinstance(num_samples, bool)
    ks = (int(num_samples),) if single else tuple(num_samples)
    if not ks:
        raise ValueError("num_samples must be an int or a non-empty sequence of ints")
    if not isinstance(target, GaussianMixture):
        raise ValueError(
            f"grad_stats needs a divjax.GaussianMixture target, got {type(target).__name__}"
        )
    for k in ks:
        check_estimator(name, estimator, target, k)
    ks = tuple(int(k) for k in ks)
    if isinstance(num_draws, bool) or not isinstance(num_draws, (int, np.integer)) or num_draws < 2:
        raise ValueError(f"num_draws must be an int >= 2, got {num_draws!r}")
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or burn_in < 0:
        raise ValueError(f"burn_in must be an int >= 0, got {burn_in!r}")
    if not isinstance(q, Gaussian) or jnp.ndim(q.loc) > 1:
        raise ValueError("q must be a divjax.Gaussian with scalar or (n,) leaves")
    out = _grad_stats(
        target,
        q,
        key,
        name=name,
        estimator=estimator,
        ks=ks,
        num_draws=int(num_draws),
        burn_in=int(burn_in),
        param=get_parameterization(parameterization).name,
    )
    if single:
        out = _tree_map(lambda a: a[0], out)
    return out


__all__ = ["GradStats", "grad_stats", "infinite_variance"]
