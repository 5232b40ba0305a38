r"""Targets ``p``: one protocol for Gaussian mixtures of every dimension and for log densities.

Every target has ``event_shape`` (``()`` or ``(d,)``), ``log_prob(x)``
(normalized where the normalizer is known), ``unnormalized_log_prob(x)``
(``log p~``, all Monte Carlo estimators need) and ``sample(key,
sample_shape=())`` where sampling is possible; ``x`` has shape
``batch + event_shape``.

- `GaussianMixture`: ``p~(x) = sum_k w_k N(x; m_k, A_k)`` with positive,
  possibly unnormalized weights (mass ``Z = sum_k w_k``). 1-D given ``(M,)``
  arrays; ``d``-dimensional given ``(M, d)`` locations with diagonal ``scales``
  ``(M, d)`` or full ``covs`` ``(M, d, d)``. Stored as ``(log_weights, locs,
  scale_trils)``; in 1-D ``scale_trils`` are the ``(M,)`` standard deviations.
- `LogDensity`: any log density, unnormalized unless declared otherwise. A
  function of one point (shape ``event_shape``) is the default convention and
  is vectorized with ``vmap``; ``batched=True`` declares a function that takes a
  batch ``(..., *event_shape)``. Its output shape is checked before use.

`as_target` wraps whatever the user passes (a mixture, a `LogDensity`, a plain
callable, or a distribution object with ``log_prob`` and ``event_shape`` from
numpyro, TFP or distrax) into this protocol, once, at the boundary.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from divjax import _checks, _linalg
from divjax.families import _Family, normal_log_prob, register, resolve_key, sample_shape_of
from divjax.log_density import LogDensity, distribution_density, is_distribution


class _MixtureParams(NamedTuple):
    log_weights: jax.Array
    locs: jax.Array
    scale_trils: jax.Array


def _validated(log_w, locs, scales, covs):
    """Concrete inputs, checked in float64 and cast to the default float type."""
    locs = _checks.numeric(locs, "locs")
    m = log_w.shape[0]
    if locs.ndim not in (1, 2) or locs.shape[0] != m:
        raise ValueError(f"locs must be (M,) or (M, d) with M = {m} components, got {locs.shape}")
    _checks.check_finite(locs, "locs")
    if locs.ndim == 1:
        if covs is not None or scales is None:
            raise ValueError("a 1-D mixture takes scales (M,), the standard deviations")
        scales = _checks.numeric(scales, "scales")
        if scales.shape != (m,):
            raise ValueError(f"scales must be (M,) = ({m},) like locs, got {scales.shape}")
        _checks.check_positive(scales, "scales")
        trils = scales
    elif (scales is None) == (covs is None):
        raise ValueError("give exactly one of scales (M, d) and covs (M, d, d)")
    elif scales is not None:
        scales = _checks.numeric(scales, "scales")
        if scales.shape != locs.shape:
            raise ValueError(f"scales must be (M, d) = {locs.shape} like locs, got {scales.shape}")
        _checks.check_positive(scales, "scales")
        trils = scales[:, :, None] * np.eye(locs.shape[1])
    else:
        covs = _checks.spd_matrices(covs, "covs")
        if covs.shape != locs.shape + locs.shape[1:]:
            raise ValueError(
                f"covs must be (M, d, d) = {locs.shape + locs.shape[1:]}, got {covs.shape}"
            )
        trils = np.linalg.cholesky(covs)
    dtype = jnp.result_type(float)
    return tuple(jnp.asarray(a, dtype) for a in (log_w, locs, trils))


def _traced(log_w, locs, scales, covs):
    locs = jnp.asarray(locs)
    if locs.ndim == 1:
        return jnp.asarray(log_w), locs, jnp.asarray(scales)
    if covs is None:
        return jnp.asarray(log_w), locs, jnp.asarray(scales)[..., None] * jnp.eye(locs.shape[-1])
    return jnp.asarray(log_w), locs, _linalg.cholesky(jnp.asarray(covs))


@register
class GaussianMixture(_MixtureParams):
    r"""A Gaussian mixture target ``p~ = sum_k w_k N(m_k, A_k)`` in any dimension.

    Args:
      weights: ``(M,)`` positive weights; need not sum to one (mass
        ``Z = sum(weights)``). Normalized in log space, in float64, before any
        cast, so ``[1e300, 1e300]`` is a valid target in float32 too.
      locs: ``(M,)`` for a 1-D target (``event_shape = ()``), ``(M, d)`` for
        ``d`` dimensions (``event_shape = (d,)``).
      scales: positive standard deviations, ``(M,)`` in 1-D, ``(M, d)``
        (diagonal covariances) in ``d`` dimensions.
      covs: keyword-only, ``(M, d, d)`` symmetric positive-definite
        covariances instead of ``scales``.

    Raises:
      ValueError: an empty mixture, non-numeric input, non-positive or
        non-finite weights or scales, non-finite locations, mismatched shapes,
        covariances that are not symmetric positive definite (checked on
        concrete inputs; traced inputs, inside ``jit``, are not checked).
    """

    __slots__ = ()

    def __new__(cls, weights, locs, scales=None, *, covs=None):
        if not _checks.is_concrete(weights, locs, *(a for a in (scales, covs) if a is not None)):
            return super().__new__(cls, *_traced(jnp.log(jnp.asarray(weights)), locs, scales, covs))
        w = np.atleast_1d(_checks.numeric(weights, "weights"))
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"weights must be (M,) with at least one component, got {w.shape}")
        _checks.check_positive(w, "weights")
        return super().__new__(cls, *_validated(np.log(w), locs, scales, covs))

    @classmethod
    def from_log_weights(cls, log_weights, locs, scales=None, *, covs=None) -> GaussianMixture:
        """The same target from ``log w_k`` (any finite reals): weights beyond the float range."""
        if not _checks.is_concrete(log_weights, locs):
            return cls._make(_traced(log_weights, locs, scales, covs))
        log_w = np.atleast_1d(_checks.numeric(log_weights, "log_weights"))
        if log_w.ndim != 1 or log_w.size == 0:
            raise ValueError(f"log_weights must be (M,), M >= 1, got {log_w.shape}")
        _checks.check_finite(log_w, "log_weights")
        return cls._make(_validated(log_w, locs, scales, covs))

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.locs.shape[1:])

    @property
    def dim(self) -> int:
        return 1 if self.locs.ndim == 1 else self.locs.shape[-1]

    @property
    def num_components(self) -> int:
        return self.log_weights.shape[-1]

    @property
    def weights(self) -> jax.Array:
        """``w_k`` (``inf`` in float32 for weights beyond its range: use ``log_weights``)."""
        return jnp.exp(self.log_weights)

    @property
    def log_normalizer(self) -> jax.Array:
        """``log Z = log sum_k w_k``."""
        return logsumexp(self.log_weights, axis=-1)

    @property
    def log_probs(self) -> jax.Array:
        """Normalized log mixture weights ``log(w_k / Z)``."""
        return jax.nn.log_softmax(self.log_weights, axis=-1)

    @property
    def probs(self) -> jax.Array:
        """Normalized mixture weights ``w_k / Z``."""
        return jax.nn.softmax(self.log_weights, axis=-1)

    @property
    def scales(self) -> jax.Array:
        """Standard deviations: ``(M,)`` in 1-D, the marginal ones ``(M, d)`` in ``d`` dims."""
        if self.locs.ndim == 1:
            return self.scale_trils
        return jnp.sqrt(jnp.sum(self.scale_trils**2, axis=-1))

    @property
    def covs(self) -> jax.Array:
        """Component covariances: ``(M,)`` variances in 1-D, ``(M, d, d)`` in ``d`` dims."""
        t = self.scale_trils
        return t**2 if self.locs.ndim == 1 else t @ jnp.swapaxes(t, -1, -2)

    def mvn(self) -> tuple[jax.Array, jax.Array]:
        """``(locs (M, d), scale_trils (M, d, d))``, with ``d = 1`` for a 1-D target."""
        if self.locs.ndim == 1:
            return self.locs[:, None], jnp.abs(self.scale_trils)[:, None, None]
        return self.locs, self.scale_trils

    def component_log_probs(self, x: jax.typing.ArrayLike) -> jax.Array:
        r"""``log(w_k / Z) + log N(x; m_k, A_k)``, shape ``batch + (M,)``."""
        x = jnp.asarray(x)
        if self.locs.ndim == 1:
            z = (x[..., None] - self.locs) / self.scale_trils
            log_n = normal_log_prob(z**2, jnp.log(jnp.abs(self.scale_trils)), 1)
        else:
            z = _linalg.solve_lower(self.scale_trils, x[..., None, :] - self.locs)
            log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(self.scale_trils, 0, -2, -1))), -1)
            log_n = normal_log_prob(jnp.sum(z**2, -1), log_det, self.dim)
        return self.log_probs + log_n

    def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
        r"""Normalized ``log p(x)``, shape ``batch``."""
        return logsumexp(self.component_log_probs(x), axis=-1)

    def unnormalized_log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
        r"""``log p~(x) = log p(x) + log Z``."""
        return self.log_prob(x) + self.log_normalizer

    def grad_log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
        r"""``grad_x log p(x) = -sum_k r_k(x) A_k^{-1} (x - m_k)`` (responsibilities ``r_k``)."""
        x = jnp.asarray(x)
        resp = jax.nn.softmax(self.component_log_probs(x), axis=-1)
        if self.locs.ndim == 1:
            return jnp.sum(resp * (self.locs - x[..., None]) / self.scale_trils**2, axis=-1)
        diff = x[..., None, :] - self.locs
        y = _linalg.solve_lower(self.scale_trils, diff)
        per = _linalg.solve_upper(jnp.swapaxes(self.scale_trils, -1, -2), y)
        return -jnp.sum(resp[..., None] * per, axis=-2)

    def mean(self) -> jax.Array:
        return jnp.tensordot(self.probs, self.locs, axes=1)

    def covariance(self) -> jax.Array:
        """The mixture's covariance: a scalar variance in 1-D, ``(d, d)`` in ``d`` dims."""
        diff = self.locs - self.mean()
        outer = diff**2 if self.locs.ndim == 1 else diff[:, :, None] * diff[:, None, :]
        return jnp.tensordot(self.probs, self.covs + outer, axes=1)

    def variance(self) -> jax.Array:
        """Marginal variances: a scalar in 1-D, ``(d,)`` in ``d`` dims."""
        cov = self.covariance()
        return cov if self.locs.ndim == 1 else jnp.diagonal(cov)

    def sample(self, key=None, sample_shape=(), *, seed=None) -> jax.Array:
        """Draws from the normalized mixture, shape ``sample_shape + event_shape``."""
        key = resolve_key(key, seed)
        shape = sample_shape_of(sample_shape)
        key_c, key_n = jax.random.split(key)
        comp = jax.random.categorical(key_c, self.log_weights, shape=shape)
        eps = jax.random.normal(key_n, shape + self.event_shape, dtype=self.locs.dtype)
        if self.locs.ndim == 1:
            return self.locs[comp] + self.scale_trils[comp] * eps
        return self.locs[comp] + jnp.einsum("...ij,...j->...i", self.scale_trils[comp], eps)


def as_target(obj, event_shape: tuple[int, ...] | None = None):
    r"""``obj`` in the target protocol: a `GaussianMixture` or a bound `LogDensity`.

    Accepts a `GaussianMixture`, a `LogDensity`, a distribution object with
    ``log_prob`` and ``event_shape`` (numpyro, TFP on JAX, distrax: treated as
    a normalized, batched log density), or a plain callable (a per-point
    ``log p~``). ``event_shape`` (typically ``q.event_shape``) binds a
    `LogDensity` whose shape was not given and checks its output shape.

    Raises:
      ValueError: anything else, or a log density whose output shape is wrong.
    """
    if isinstance(obj, GaussianMixture):
        target = obj
    elif isinstance(obj, LogDensity):
        target = obj
    elif is_distribution(obj):
        target = distribution_density(obj)
    elif callable(obj):
        target = LogDensity(obj)
    else:
        raise ValueError(
            "target must be a divjax.GaussianMixture, a divjax.LogDensity, a distribution with "
            f"log_prob and event_shape, or a callable log density; got {type(obj).__name__}"
        )
    if isinstance(target, LogDensity) and event_shape is not None:
        target = target.bind(event_shape)
    return target


def check_pair(target, q) -> None:
    r"""Raises `ValueError` where ``q``'s family does not fit ``target``'s event shape."""
    if not isinstance(q, _Family):
        raise ValueError(
            "q must be a divjax.Gaussian, DiagGaussian, FullRankGaussian or MixtureGaussian, "
            f"got {type(q).__name__}"
        )
    shape = target.event_shape
    if shape is None or shape == q.event_shape:
        return
    if shape == ():
        raise ValueError(
            f"a 1-D target (event_shape ()) needs a divjax.Gaussian q, got {type(q).__name__} "
            f"with event_shape {q.event_shape}; give the target (M, d) locs for d dimensions"
        )
    if q.event_shape == ():
        raise ValueError(
            f"a d = {shape[0]} target needs a DiagGaussian, FullRankGaussian or MixtureGaussian "
            "q, got Gaussian (1-D)"
        )
    raise ValueError(f"dimension mismatch: p has d = {shape[0]}, q has d = {q.event_shape[0]}")


def default_target() -> GaussianMixture:
    """The default scenario: ``p = 0.3 N(-2, 0.5^2) + 0.7 N(3, 1^2)``."""
    return GaussianMixture(weights=[0.3, 0.7], locs=[-2.0, 3.0], scales=[0.5, 1.0])


__all__ = ["GaussianMixture", "LogDensity", "as_target", "check_pair", "default_target"]
