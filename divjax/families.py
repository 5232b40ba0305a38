r"""Variational families ``q_phi``: one interface, the dimension is a shape.

=================  =====================================  ==============  =================
family             parameters ``phi`` (unconstrained)      ``event_shape``  ``family``
=================  =====================================  ==============  =================
`Gaussian`         ``loc``, ``log_scale``  (scalars)       ``()``          ``"gaussian"``
`DiagGaussian`     ``loc``, ``log_scale``  ``(d,)``        ``(d,)``        ``"diag"``
`FullRankGaussian` ``loc (d,)``, ``chol (d, d)``           ``(d,)``        ``"full"``
`MixtureGaussian`  ``logits (C,)``, ``locs``,              ``(d,)``        ``"mixture"``
                   ``log_scales`` ``(C, d)``
=================  =====================================  ==============  =================

Every family is a NamedTuple pytree with ``event_shape``, ``dim``,
``log_prob(x)`` (``x`` of shape ``batch + event_shape``), ``sample(key,
sample_shape=())`` (reparameterized in ``phi`` where ``reparameterized`` is
true; ``seed=`` is accepted as in numpyro, TFP and distrax), ``mean()``,
``covariance()`` and ``log_marginal_scales()``. Gradients with respect to
``phi`` come back in the same container.

`FullRankGaussian`: ``L = tril(chol, -1) + diag(exp(diag(chol)))`` (the strict
upper triangle of ``chol`` is ignored). `MixtureGaussian`: ``sum_c
softmax(logits)_c N(locs_c, diag(exp(log_scales_c))^2)``; its component draw
is not reparameterizable, so only estimators that never differentiate through
samples apply to it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from divjax import _checks, _linalg
from divjax.family_base import (  # noqa: F401  (re-exported: the family protocol)
    LOG_2PI,
    _Family,
    _finite_float,
    normal_log_prob,
    register,
    resolve_key,
    sample_shape_of,
)


class _GaussianParams(NamedTuple):
    loc: jax.Array
    log_scale: jax.Array


@register
class Gaussian(_GaussianParams, _Family):
    r"""``q = N(loc, exp(log_scale)^2)`` in one dimension (``event_shape = ()``).

    ``loc`` and ``log_scale`` are scalars for a single ``q``, or arrays of equal
    shape ``(n,)`` for a batch (as in `divjax.Optima`).

    Raises:
      ValueError: non-numeric or non-finite ``loc`` or ``log_scale`` (concrete inputs).
    """

    __slots__ = ()
    family = "gaussian"

    def __new__(cls, loc, log_scale):
        if _checks.is_concrete(loc, log_scale):
            loc, log_scale = _finite_float(loc, "loc"), _finite_float(log_scale, "log_scale")
        return super().__new__(cls, loc, log_scale)

    @classmethod
    def from_loc_scale(cls, loc, scale) -> Gaussian:
        """From the mean and a positive standard deviation."""
        if _checks.is_concrete(scale):
            _checks.check_positive(scale, "scale")
        return cls(loc, jnp.log(jnp.asarray(scale, dtype=jnp.result_type(float))))

    @classmethod
    def from_loc_variance(cls, loc, variance) -> Gaussian:
        """From the mean and a positive variance."""
        if _checks.is_concrete(variance):
            _checks.check_positive(variance, "variance")
        return cls(loc, 0.5 * jnp.log(jnp.asarray(variance, dtype=jnp.result_type(float))))

    event_shape = ()
    dim = 1

    @property
    def scale(self) -> jax.Array:
        return jnp.exp(self.log_scale)

    @property
    def variance(self) -> jax.Array:
        return jnp.exp(2.0 * self.log_scale)

    def mean(self) -> jax.Array:
        return jnp.asarray(self.loc)

    def covariance(self) -> jax.Array:
        return self.variance

    def log_marginal_scales(self) -> jax.Array:
        return jnp.asarray(self.log_scale)

    def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
        """``log q(x)``; broadcasts ``x`` against the parameters."""
        z = (jnp.asarray(x) - self.loc) * jnp.exp(-self.log_scale)
        return normal_log_prob(z**2, self.log_scale, 1)

    def score(self, x: jax.typing.ArrayLike) -> Gaussian:
        r"""``grad_phi log q(x) = ((x - mu) / sigma^2, ((x - mu) / sigma)^2 - 1)``."""
        z = (jnp.asarray(x) - self.loc) * jnp.exp(-self.log_scale)
        return Gaussian._make((z * jnp.exp(-self.log_scale), z**2 - 1.0))

    def entropy(self) -> jax.Array:
        return self.log_scale + 0.5 * (LOG_2PI + 1.0)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        eps = jax.random.normal(key, (n,), dtype=jnp.result_type(self.loc, float))
        return self.loc + jnp.exp(self.log_scale) * eps

    def isotropic(self, log_scale: jax.Array) -> Gaussian:
        """The same family at the same ``loc`` with every scale ``exp(log_scale)``."""
        return Gaussian._make((self.loc, jnp.asarray(log_scale, self.dtype)))

    def to_mvn(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(loc (1,), scale_tril (1, 1), log_diag (1,))``: the d = 1 view."""
        loc = jnp.reshape(self.loc, (1,))
        log_diag = jnp.reshape(self.log_scale, (1,))
        return loc, jnp.exp(log_diag)[:, None], log_diag


class _DiagParams(NamedTuple):
    loc: jax.Array
    log_scale: jax.Array


@register
class DiagGaussian(_DiagParams, _Family):
    r"""``q = N(loc, diag(exp(log_scale))^2)``; ``loc`` and ``log_scale`` are ``(d,)``."""

    __slots__ = ()
    family = "diag"

    def __new__(cls, loc, log_scale):
        if _checks.is_concrete(loc, log_scale):
            loc = jnp.atleast_1d(_finite_float(loc, "loc"))
            log_scale = jnp.atleast_1d(_finite_float(log_scale, "log_scale"))
            if loc.ndim != 1 or loc.shape != log_scale.shape:
                raise ValueError(
                    f"loc and log_scale must both be (d,), got {loc.shape}, {log_scale.shape}"
                )
        return super().__new__(cls, loc, log_scale)

    @classmethod
    def from_loc_scale(cls, loc, scale) -> DiagGaussian:
        """From the mean ``(d,)`` and positive per-axis standard deviations ``(d,)``."""
        if _checks.is_concrete(scale):
            _checks.check_positive(scale, "scale")
        return cls(loc, jnp.log(jnp.asarray(scale, dtype=jnp.result_type(float))))

    @property
    def event_shape(self) -> tuple[int]:
        return (self.loc.shape[-1],)

    @property
    def dim(self) -> int:
        return self.loc.shape[-1]

    @property
    def scale_tril(self) -> jax.Array:
        """``(..., d, d)``, batch-safe."""
        return jnp.exp(self.log_scale)[..., None] * jnp.eye(self.dim, dtype=self.log_scale.dtype)

    def mean(self) -> jax.Array:
        return self.loc

    def covariance(self) -> jax.Array:
        return jnp.exp(2.0 * self.log_scale)[..., None] * jnp.eye(
            self.dim, dtype=self.log_scale.dtype
        )

    def log_marginal_scales(self) -> jax.Array:
        return self.log_scale

    def log_prob(self, x) -> jax.Array:
        z = (jnp.asarray(x) - self.loc) * jnp.exp(-self.log_scale)
        return normal_log_prob(jnp.sum(z**2, -1), jnp.sum(self.log_scale, -1), self.dim)

    def entropy(self) -> jax.Array:
        return jnp.sum(self.log_scale, -1) + 0.5 * self.dim * (LOG_2PI + 1.0)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        eps = jax.random.normal(key, (n, self.dim), dtype=jnp.result_type(self.loc, float))
        return self.loc + jnp.exp(self.log_scale) * eps

    def isotropic(self, log_scale: jax.Array) -> DiagGaussian:
        return DiagGaussian._make((self.loc, jnp.full_like(self.log_scale, log_scale)))

    def to_mvn(self):
        return self.loc, self.scale_tril, self.log_scale


class _FullParams(NamedTuple):
    loc: jax.Array
    chol: jax.Array


@register
class FullRankGaussian(_FullParams, _Family):
    r"""``q = N(loc, L L^T)``, ``L = tril(chol, -1) + diag(exp(diag(chol)))``.

    ``loc`` is ``(d,)`` and ``chol`` an unconstrained ``(d, d)`` array (strict
    upper triangle ignored, its gradient zero). `from_cov` builds it from a
    covariance.
    """

    __slots__ = ()
    family = "full"

    def __new__(cls, loc, chol):
        if _checks.is_concrete(loc, chol):
            loc = jnp.atleast_1d(_finite_float(loc, "loc"))
            chol = jnp.atleast_2d(_finite_float(chol, "chol"))
            if loc.ndim != 1 or chol.shape != (loc.shape[0],) * 2:
                raise ValueError(f"loc must be (d,) and chol (d, d); got {loc.shape}, {chol.shape}")
        return super().__new__(cls, loc, chol)

    @classmethod
    def from_cov(cls, loc, cov) -> FullRankGaussian:
        """From a mean and a symmetric positive-definite covariance (ValueError otherwise)."""
        c = _checks.spd_matrices(cov, "cov")
        if c.ndim != 2:
            raise ValueError(f"cov must be a (d, d) matrix, got shape {c.shape}")
        tril = np.linalg.cholesky(c)
        chol = np.tril(tril, -1) + np.diag(np.log(np.diag(tril)))
        return cls(loc, chol)

    @property
    def event_shape(self) -> tuple[int]:
        return (self.loc.shape[-1],)

    @property
    def dim(self) -> int:
        return self.loc.shape[-1]

    @property
    def scale_tril(self) -> jax.Array:
        """``(..., d, d)``; batch-safe (a batched ``q`` gives a batch of factors)."""
        diag = jnp.exp(jnp.diagonal(self.chol, axis1=-2, axis2=-1))
        return jnp.tril(self.chol, -1) + diag[..., None] * jnp.eye(self.dim, dtype=diag.dtype)

    def mean(self) -> jax.Array:
        return self.loc

    def covariance(self) -> jax.Array:
        t = self.scale_tril
        return t @ jnp.swapaxes(t, -1, -2)

    def log_marginal_scales(self) -> jax.Array:
        """``log sqrt(diag(L L^T))``, summed in log space (no overflow for huge factors)."""
        diag = jnp.diagonal(self.chol, axis1=-2, axis2=-1)
        lower = jnp.tril(self.chol, -1)
        nonzero = lower != 0
        log_lower = jnp.where(nonzero, jnp.log(jnp.abs(jnp.where(nonzero, lower, 1.0))), -jnp.inf)
        terms = jnp.concatenate([2.0 * diag[..., None], 2.0 * log_lower], axis=-1)
        return 0.5 * logsumexp(terms, axis=-1)

    def log_prob(self, x) -> jax.Array:
        z = _linalg.solve_lower(self.scale_tril, jnp.asarray(x) - self.loc)
        log_det = jnp.sum(jnp.diagonal(self.chol, axis1=-2, axis2=-1), -1)
        return normal_log_prob(jnp.sum(z**2, -1), log_det, self.dim)

    def entropy(self) -> jax.Array:
        log_det = jnp.sum(jnp.diagonal(self.chol, axis1=-2, axis2=-1), -1)
        return log_det + 0.5 * self.dim * (LOG_2PI + 1.0)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        eps = jax.random.normal(key, (n, self.dim), dtype=jnp.result_type(self.loc, float))
        return self.loc + eps @ self.scale_tril.T

    def isotropic(self, log_scale: jax.Array) -> FullRankGaussian:
        log_diag = jnp.full(self.loc.shape, log_scale, self.chol.dtype)
        return FullRankGaussian._make((self.loc, log_diag[..., None] * jnp.eye(self.dim)))

    def to_mvn(self):
        return self.loc, self.scale_tril, jnp.diagonal(self.chol, axis1=-2, axis2=-1)


class _MixParams(NamedTuple):
    logits: jax.Array
    locs: jax.Array
    log_scales: jax.Array


@register
class MixtureGaussian(_MixParams, _Family):
    r"""``q = sum_c softmax(logits)_c N(locs_c, diag(exp(log_scales_c))^2)``.

    Shapes ``(C,)``, ``(C, d)``, ``(C, d)``. ``sample`` draws the component (not
    differentiable) and reparameterizes within it, so pathwise gradients reach
    ``locs`` and ``log_scales`` but not ``logits``: the estimator registry lists
    which estimators support this family.
    """

    __slots__ = ()
    family = "mixture"
    reparameterized = False

    def __new__(cls, logits, locs, log_scales):
        if _checks.is_concrete(logits, locs, log_scales):
            logits = jnp.atleast_1d(_finite_float(logits, "logits"))
            locs = _finite_float(locs, "locs")
            log_scales = _finite_float(log_scales, "log_scales")
            if locs.ndim != 2 or locs.shape != log_scales.shape or logits.shape != locs.shape[:1]:
                raise ValueError(
                    "logits must be (C,), locs and log_scales (C, d); got "
                    f"{logits.shape}, {locs.shape}, {log_scales.shape}"
                )
        return super().__new__(cls, logits, locs, log_scales)

    @property
    def event_shape(self) -> tuple[int]:
        return (self.locs.shape[-1],)

    @property
    def dim(self) -> int:
        return self.locs.shape[-1]

    @property
    def probs(self) -> jax.Array:
        return jax.nn.softmax(self.logits, axis=-1)

    def mean(self) -> jax.Array:
        return jnp.einsum("...c,...cd->...d", self.probs, self.locs)

    def covariance(self) -> jax.Array:
        diff = self.locs - self.mean()[..., None, :]
        outer = diff[..., :, None] * diff[..., None, :]
        comp = jnp.exp(2.0 * self.log_scales)[..., None] * jnp.eye(self.dim, dtype=diff.dtype)
        return jnp.einsum("...c,...cij->...ij", self.probs, comp + outer)

    def log_marginal_scales(self) -> jax.Array:
        """The components' log scales ``(C, d)`` (what the fit's range check watches)."""
        return self.log_scales

    def log_prob(self, x) -> jax.Array:
        z = (jnp.asarray(x)[..., None, :] - self.locs) * jnp.exp(-self.log_scales)
        comp = normal_log_prob(jnp.sum(z**2, -1), jnp.sum(self.log_scales, -1), self.dim)
        return logsumexp(jax.nn.log_softmax(self.logits) + comp, axis=-1)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        key_c, key_n = jax.random.split(key)
        comp = jax.random.categorical(key_c, jax.lax.stop_gradient(self.logits), shape=(n,))
        eps = jax.random.normal(key_n, (n, self.dim), dtype=jnp.result_type(self.locs, float))
        return self.locs[comp] + jnp.exp(self.log_scales[comp]) * eps


def mean_and_log_sd(q) -> tuple[jax.Array, jax.Array]:
    """``(means, log marginal sds)`` of a (batched) family, trailing axis ``(..., d)`` (1 in 1-D).

    For a `MixtureGaussian` the sds are the mixture's overall marginal ones.
    """
    mean = q.mean()
    if q.event_shape == ():
        return mean[..., None], jnp.asarray(q.log_marginal_scales())[..., None]
    if q.family == "mixture":
        return mean, 0.5 * jnp.log(jnp.diagonal(q.covariance(), 0, -2, -1))
    return mean, q.log_marginal_scales()


FAMILIES = {cls.family: cls for cls in (Gaussian, DiagGaussian, FullRankGaussian, MixtureGaussian)}


def check_family(q, what: str = "q") -> None:
    """Raises `ValueError` unless ``q`` is one of divjax's families."""
    if not isinstance(q, _Family):
        names = ", ".join(cls.__name__ for cls in FAMILIES.values())
        raise ValueError(f"{what} must be a divjax family ({names}), got {type(q).__name__}")


def default_q0() -> Gaussian:
    """The default start ``q0 = N(0, 5)`` (mean 0, variance 5)."""
    return Gaussian.from_loc_variance(0.0, 5.0)


__all__ = [
    "FAMILIES",
    "LOG_2PI",
    "DiagGaussian",
    "FullRankGaussian",
    "Gaussian",
    "MixtureGaussian",
    "check_family",
    "default_q0",
    "mean_and_log_sd",
    "normal_log_prob",
]
