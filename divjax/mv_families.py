r"""d-dimensional targets and variational families (pytrees; ``x`` has shape ``(..., d)``).

- `MvGaussianMixture`: ``p~(x) = sum_k w_k N(x; m_k, A_k)``, ``A_k = L_k L_k^T``.
- `DiagGaussian`: ``N(loc, diag(exp(log_scale))^2)``.
- `FullRankGaussian`: ``N(loc, L L^T)``, ``L = tril(chol, -1) + diag(exp(diag(chol)))``
  with ``chol`` an unconstrained ``(d, d)`` array (its strict upper triangle is ignored).
- `MixtureGaussian`: ``sum_c softmax(logits)_c N(locs_c, diag(exp(log_scales_c))^2)``;
  ``sample`` is reparameterized within the (stopped) component draw.

Every family has ``dim``, ``log_prob(x)`` (``(..., d) -> (...)``) and
``sample(key, K)`` (``(K, d)``, reparameterized in the parameters), which is
all the Monte Carlo surrogates of `divjax.estimators` use.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from divjax import _checks, _linalg

_LOG_2PI = 1.8378770664093453


def _register(cls):
    jax.tree_util.register_pytree_node(cls, lambda t: (tuple(t), None), lambda _, c: cls._make(c))
    return cls


def _mvn_log_prob(x, loc, tril):
    """``log N(x; loc, tril tril^T)`` for ``x`` of shape ``(..., d)``."""
    d = loc.shape[-1]
    z = _linalg.solve_lower(tril, jnp.asarray(x) - loc)  # no LAPACK: see divjax._linalg
    log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(tril))))
    return -0.5 * jnp.sum(z**2, axis=-1) - log_det - 0.5 * d * _LOG_2PI


class _MvMixtureParams(NamedTuple):
    weights: jax.Array
    locs: jax.Array
    scale_trils: jax.Array


@_register
class MvGaussianMixture(_MvMixtureParams):
    r"""A Gaussian mixture target in ``d`` dimensions.

    Args:
      weights: ``(M,)`` positive, unnormalized (mass ``Z = sum(weights)``).
      locs: ``(M, d)`` component means.
      scales: ``(M, d)`` positive diagonal standard deviations, or
      covs: ``(M, d, d)`` symmetric positive-definite covariances (keyword-only;
        exactly one of ``scales`` and ``covs``).

    Stored as ``(weights, locs, scale_trils)`` with ``scale_trils`` the
    ``(M, d, d)`` Cholesky factors.

    Raises:
      ValueError: mismatched shapes (naming them), non-positive weights or
        scales, non-symmetric or non-positive-definite covariances.
    """

    __slots__ = ()

    def __new__(cls, weights, locs, scales=None, *, covs=None):
        if (scales is None) == (covs is None):
            raise ValueError("give exactly one of scales (M, d) and covs (M, d, d)")
        if not _checks.is_concrete(weights, locs, *(a for a in (scales, covs) if a is not None)):
            # Traced (inside jit/vmap): no validation, as for the 1-D target.
            w, m = jnp.atleast_1d(jnp.asarray(weights)), jnp.asarray(locs)
            trils = (
                jax.vmap(jnp.diag)(jnp.asarray(scales))
                if covs is None
                else _linalg.cholesky(jnp.asarray(covs))
            )
            return super().__new__(cls, w, m, trils)
        weights = jnp.atleast_1d(_checks.as_float_array(weights, "weights"))
        locs = _checks.as_float_array(locs, "locs")
        if weights.ndim != 1 or locs.ndim != 2 or locs.shape[0] != weights.shape[0]:
            raise ValueError(
                f"weights must be (M,) and locs (M, d); got {weights.shape} and {locs.shape}"
            )
        m, d = locs.shape
        _checks.check_positive(weights, "weights")
        _checks.check_finite(locs, "locs")
        if scales is not None:
            scales = _checks.as_float_array(scales, "scales")
            if scales.shape != (m, d):
                raise ValueError(f"scales must be (M, d) = {(m, d)} like locs, got {scales.shape}")
            _checks.check_positive(scales, "scales")
            trils = jax.vmap(jnp.diag)(scales)
        else:
            covs = _checks.as_float_array(covs, "covs")
            if covs.shape != (m, d, d):
                raise ValueError(f"covs must be (M, d, d) = {(m, d, d)}, got {covs.shape}")
            c = np.asarray(covs, dtype=np.float64)
            if not np.allclose(c, np.swapaxes(c, -1, -2), rtol=1e-6, atol=1e-12):
                raise ValueError("covs must be symmetric")
            eig = np.linalg.eigvalsh(c)
            if not np.all(eig > 0):
                bad = int(np.argmin(eig.min(axis=-1)))
                raise ValueError(
                    f"covs must be positive definite; component {bad} has eigenvalues {eig[bad]}"
                )
            trils = jnp.linalg.cholesky(covs)
        return super().__new__(cls, weights, locs, trils)

    @property
    def dim(self) -> int:
        return self.locs.shape[-1]

    @property
    def num_components(self) -> int:
        return self.weights.shape[-1]

    @property
    def covs(self) -> jax.Array:
        return self.scale_trils @ jnp.swapaxes(self.scale_trils, -1, -2)

    @property
    def log_normalizer(self) -> jax.Array:
        return logsumexp(jnp.log(self.weights))

    @property
    def probs(self) -> jax.Array:
        return self.weights / jnp.sum(self.weights)

    def component_log_probs(self, x) -> jax.Array:
        """``log w_k + log N(x; m_k, A_k)``, shape ``x.shape[:-1] + (M,)``."""
        lp = jax.vmap(lambda m, t: _mvn_log_prob(x, m, t), out_axes=-1)(self.locs, self.scale_trils)
        return jnp.log(self.weights) + lp

    def log_prob(self, x) -> jax.Array:
        """Unnormalized ``log p~(x)``, ``(..., d) -> (...)``."""
        return logsumexp(self.component_log_probs(x), axis=-1)

    def normalized_log_prob(self, x) -> jax.Array:
        return self.log_prob(x) - self.log_normalizer

    def mean(self) -> jax.Array:
        return self.probs @ self.locs

    def covariance(self) -> jax.Array:
        diff = self.locs - self.mean()
        outer = diff[:, :, None] * diff[:, None, :]
        return jnp.einsum("k,kij->ij", self.probs, self.covs + outer)

    def sample(self, key: jax.Array, shape=()) -> jax.Array:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        key_c, key_n = jax.random.split(key)
        comp = jax.random.categorical(key_c, jnp.log(self.weights), shape=shape)
        eps = jax.random.normal(key_n, shape + (self.dim,), dtype=self.locs.dtype)
        return self.locs[comp] + jnp.einsum("...ij,...j->...i", self.scale_trils[comp], eps)


class _DiagParams(NamedTuple):
    loc: jax.Array
    log_scale: jax.Array


@_register
class DiagGaussian(_DiagParams):
    r"""``q = N(loc, diag(exp(log_scale))^2)``; ``loc`` and ``log_scale`` are ``(d,)``."""

    __slots__ = ()

    def __new__(cls, loc, log_scale):
        if _checks.is_concrete(loc, log_scale):
            loc = jnp.atleast_1d(_checks.as_float_array(loc, "loc"))
            log_scale = jnp.atleast_1d(_checks.as_float_array(log_scale, "log_scale"))
            if loc.ndim != 1 or loc.shape != log_scale.shape:
                raise ValueError(
                    f"loc and log_scale must both be (d,), got {loc.shape}, {log_scale.shape}"
                )
            _checks.check_finite(loc, "loc")
            _checks.check_finite(log_scale, "log_scale")
        return super().__new__(cls, loc, log_scale)

    @property
    def dim(self) -> int:
        return self.loc.shape[-1]

    @property
    def scale_tril(self) -> jax.Array:
        """``(..., d, d)``, batch-safe like `cov`."""
        return jnp.exp(self.log_scale)[..., None] * jnp.eye(self.dim, dtype=self.log_scale.dtype)

    @property
    def cov(self) -> jax.Array:
        return jnp.exp(2.0 * self.log_scale)[..., None] * jnp.eye(
            self.dim, dtype=self.log_scale.dtype
        )

    def log_prob(self, x) -> jax.Array:
        z = (jnp.asarray(x) - self.loc) * jnp.exp(-self.log_scale)
        return -0.5 * jnp.sum(z**2, -1) - jnp.sum(self.log_scale) - 0.5 * self.dim * _LOG_2PI

    def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
        eps = jax.random.normal(key, (num_samples, self.dim), dtype=jnp.result_type(self.loc))
        return self.loc + jnp.exp(self.log_scale) * eps


class _FullParams(NamedTuple):
    loc: jax.Array
    chol: jax.Array


@_register
class FullRankGaussian(_FullParams):
    r"""``q = N(loc, L L^T)``, ``L = tril(chol, -1) + diag(exp(diag(chol)))``.

    ``loc`` is ``(d,)`` and ``chol`` an unconstrained ``(d, d)`` array (strict
    upper triangle ignored, its gradient zero). `from_cov` builds it from a
    covariance.
    """

    __slots__ = ()

    def __new__(cls, loc, chol):
        if _checks.is_concrete(loc, chol):
            loc = jnp.atleast_1d(_checks.as_float_array(loc, "loc"))
            chol = jnp.atleast_2d(_checks.as_float_array(chol, "chol"))
            if loc.ndim != 1 or chol.shape != (loc.shape[0],) * 2:
                raise ValueError(f"loc must be (d,) and chol (d, d); got {loc.shape}, {chol.shape}")
            _checks.check_finite(loc, "loc")
            _checks.check_finite(chol, "chol")
        return super().__new__(cls, loc, chol)

    @classmethod
    def from_cov(cls, loc, cov) -> FullRankGaussian:
        """From a mean and a symmetric positive-definite covariance (ValueError otherwise)."""
        c = np.asarray(cov, dtype=np.float64)
        if c.ndim != 2 or c.shape[0] != c.shape[1] or not np.allclose(c, c.T):
            raise ValueError(f"cov must be a symmetric (d, d) matrix, got shape {c.shape}")
        if not np.all(np.linalg.eigvalsh(c) > 0):
            raise ValueError(f"cov must be positive definite, eigenvalues {np.linalg.eigvalsh(c)}")
        tril = np.linalg.cholesky(c)
        chol = np.tril(tril, -1) + np.diag(np.log(np.diag(tril)))
        return cls(loc, chol)

    @property
    def dim(self) -> int:
        return self.loc.shape[-1]

    @property
    def scale_tril(self) -> jax.Array:
        """``(..., d, d)``; batch-safe (a batched ``q`` gives a batch of factors)."""
        diag = jnp.exp(jnp.diagonal(self.chol, axis1=-2, axis2=-1))
        return jnp.tril(self.chol, -1) + diag[..., None] * jnp.eye(self.dim, dtype=diag.dtype)

    @property
    def cov(self) -> jax.Array:
        t = self.scale_tril
        return t @ jnp.swapaxes(t, -1, -2)

    def log_prob(self, x) -> jax.Array:
        return _mvn_log_prob(x, self.loc, self.scale_tril)

    def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
        eps = jax.random.normal(key, (num_samples, self.dim), dtype=jnp.result_type(self.loc))
        return self.loc + eps @ self.scale_tril.T


class _MixParams(NamedTuple):
    logits: jax.Array
    locs: jax.Array
    log_scales: jax.Array


@_register
class MixtureGaussian(_MixParams):
    r"""``q = sum_c softmax(logits)_c N(locs_c, diag(exp(log_scales_c))^2)``.

    Shapes ``(C,)``, ``(C, d)``, ``(C, d)``. ``sample`` draws the component
    (not differentiable) and reparameterizes within it, so pathwise gradients
    reach ``locs``/``log_scales`` but not ``logits``: only the score-function
    and importance-sampling estimators are unbiased (or consistent) for every
    parameter (see `divjax.multivariate.MIXTURE_ESTIMATORS`).
    """

    __slots__ = ()

    def __new__(cls, logits, locs, log_scales):
        if _checks.is_concrete(logits, locs, log_scales):
            logits = jnp.atleast_1d(_checks.as_float_array(logits, "logits"))
            locs = _checks.as_float_array(locs, "locs")
            log_scales = _checks.as_float_array(log_scales, "log_scales")
            if locs.ndim != 2 or locs.shape != log_scales.shape or logits.shape != locs.shape[:1]:
                raise ValueError(
                    "logits must be (C,), locs and log_scales (C, d); got "
                    f"{logits.shape}, {locs.shape}, {log_scales.shape}"
                )
        return super().__new__(cls, logits, locs, log_scales)

    @property
    def dim(self) -> int:
        return self.locs.shape[-1]

    def log_prob(self, x) -> jax.Array:
        x = jnp.asarray(x)[..., None, :]
        z = (x - self.locs) * jnp.exp(-self.log_scales)
        comp = -0.5 * jnp.sum(z**2, -1) - jnp.sum(self.log_scales, -1) - 0.5 * self.dim * _LOG_2PI
        return logsumexp(jax.nn.log_softmax(self.logits) + comp, axis=-1)

    def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
        key_c, key_n = jax.random.split(key)
        comp = jax.random.categorical(
            key_c, jax.lax.stop_gradient(self.logits), shape=(num_samples,)
        )
        eps = jax.random.normal(key_n, (num_samples, self.dim), dtype=jnp.result_type(self.locs))
        return self.locs[comp] + jnp.exp(self.log_scales[comp]) * eps


__all__ = ["DiagGaussian", "FullRankGaussian", "MixtureGaussian", "MvGaussianMixture"]
