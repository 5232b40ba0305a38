r"""divjax families to and from numpyro, TFP-on-JAX and distrax distributions.

=================  ===============================  ===============================  =================================
divjax             numpyro                          TFP (``tfd``)                    distrax
=================  ===============================  ===============================  =================================
`Gaussian`         ``Normal``                       ``Normal``                       ``Normal``
`DiagGaussian`     ``Normal(...).to_event(1)``      ``MultivariateNormalDiag``       ``MultivariateNormalDiag``
`FullRankGaussian` ``MultivariateNormal``           ``MultivariateNormalTriL``       ``MultivariateNormalTri``
`MixtureGaussian`  ``MixtureSameFamily`` of         ``MixtureSameFamily`` of         ``MixtureSameFamily`` of
                   diagonal Gaussians               ``Independent(Normal)``          ``MultivariateNormalDiag``
=================  ===============================  ===============================  =================================

``to_numpyro(q)``, ``to_tfp(q)``, ``to_distrax(q)`` and ``to_distribution(q,
library)`` build the library's distribution; `from_distribution` (any of the
three, dispatched on the class) and ``from_numpyro`` / ``from_tfp`` /
``from_distrax`` read one back (``Independent(Normal, 1)``, full covariances
and upper-triangular scales are read too). `as_mixture` turns a Gaussian or
a mixture of diagonal Gaussians into a `GaussianMixture` target, whose
divergences are exact. A distribution object is also accepted directly as a
target anywhere (`divjax.as_target`). Each library is imported lazily, only
when used (``pip install divjax[interop]``).

Notes: TFP turns Python-float parameters into float32 even with float64
enabled, so arrays are always passed in; a lower-triangular scale with
negative diagonal entries (TFP and distrax accept one) is normalized by
flipping column signs, which leaves ``L L^T`` unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from divjax.families import DiagGaussian, FullRankGaussian, Gaussian, MixtureGaussian, check_family
from divjax.targets import GaussianMixture

LIBRARIES = ("numpyro", "tfp", "distrax")


def library_of(d) -> str | None:
    """``"numpyro"``, ``"tfp"``, ``"distrax"`` or None, from the class's module."""
    mod = type(d).__module__
    for prefix, lib in (("numpyro.", "numpyro"), ("tensorflow_probability.", "tfp"), ("distrax.", "distrax")):
        if mod.startswith(prefix):
            return lib
    return None


def tril_to_chol(scale_tril) -> jax.Array:
    """divjax's unconstrained ``chol`` of a lower-triangular scale (column signs normalized)."""
    t = jnp.tril(jnp.asarray(scale_tril))
    sign = jnp.where(jnp.diagonal(t, axis1=-2, axis2=-1) < 0, -1.0, 1.0).astype(t.dtype)
    t = t * sign[..., None, :]
    diag = jnp.diagonal(t, axis1=-2, axis2=-1)
    return jnp.tril(t, -1) + jnp.log(diag)[..., None] * jnp.eye(t.shape[-1], dtype=t.dtype)


def _unsupported(lib, d):
    raise ValueError(
        f"no divjax family for {lib} {type(d).__name__} (batch_shape {tuple(d.batch_shape)}, "
        f"event_shape {tuple(d.event_shape)}); supported: a Normal, a diagonal Gaussian (or "
        "Independent(Normal, 1)), a lower-triangular Gaussian, a MixtureSameFamily of "
        "diagonal Gaussians"
    )


# --- numpyro -----------------------------------------------------------------


def to_numpyro(q):
    """A divjax family as a numpyro distribution (``batch_shape`` ``()`` for an unbatched ``q``)."""
    import numpyro.distributions as nd

    check_family(q)
    if q.family == "gaussian":
        return nd.Normal(q.loc, jnp.exp(q.log_scale))
    if q.family == "diag":
        return nd.Normal(q.loc, jnp.exp(q.log_scale)).to_event(1)
    if q.family == "full":
        return nd.MultivariateNormal(q.loc, scale_tril=q.scale_tril)
    comps = nd.Normal(q.locs, jnp.exp(q.log_scales)).to_event(1)
    return nd.MixtureSameFamily(nd.Categorical(logits=q.logits), comps)


def _numpyro_diag(d):
    import numpyro.distributions as nd

    if isinstance(d, nd.Independent) and isinstance(d.base_dist, nd.Normal) and d.reinterpreted_batch_ndims == 1:
        shape = tuple(d.batch_shape) + tuple(d.event_shape)
        base = d.base_dist
        return jnp.broadcast_to(jnp.asarray(base.loc), shape), jnp.broadcast_to(jnp.asarray(base.scale), shape)
    return None


def from_numpyro(d):
    """A numpyro Gaussian-like distribution as a divjax family (ValueError otherwise)."""
    import numpyro.distributions as nd

    if isinstance(d, nd.Normal):
        shape = tuple(d.batch_shape)
        loc, scale = (jnp.broadcast_to(jnp.asarray(a), shape) for a in (d.loc, d.scale))
        return Gaussian(loc, jnp.log(scale))
    diag = _numpyro_diag(d)
    if diag is not None:
        return DiagGaussian(diag[0], jnp.log(diag[1]))
    if isinstance(d, nd.MultivariateNormal):
        shape = tuple(d.batch_shape) + tuple(d.event_shape)
        return FullRankGaussian(jnp.broadcast_to(d.loc, shape), tril_to_chol(d.scale_tril))
    if isinstance(d, nd.MixtureSameFamily):
        comp = _numpyro_diag(d.component_distribution)
        if comp is not None:
            return MixtureGaussian(d.mixing_distribution.logits, comp[0], jnp.log(comp[1]))
    _unsupported("numpyro", d)


# --- TFP on JAX ----------------------------------------------------------------


def _tfd():
    from tensorflow_probability.substrates import jax as tfp

    return tfp.distributions


def to_tfp(q):
    """A divjax family as a ``tensorflow_probability.substrates.jax`` distribution."""
    tfd = _tfd()
    check_family(q)
    if q.family == "gaussian":
        return tfd.Normal(q.loc, jnp.exp(q.log_scale))
    if q.family == "diag":
        return tfd.MultivariateNormalDiag(q.loc, jnp.exp(q.log_scale))
    if q.family == "full":
        return tfd.MultivariateNormalTriL(q.loc, q.scale_tril)
    comps = tfd.Independent(tfd.Normal(q.locs, jnp.exp(q.log_scales)), reinterpreted_batch_ndims=1)
    return tfd.MixtureSameFamily(tfd.Categorical(logits=q.logits), comps)


def _tfp_diag(d):
    tfd = _tfd()
    independent = (
        isinstance(d, tfd.Independent)
        and isinstance(d.distribution, tfd.Normal)
        and d.reinterpreted_batch_ndims == 1
    )
    if isinstance(d, tfd.MultivariateNormalDiag) or independent:
        return d.mean(), d.stddev()  # MVNDiag's .loc may be None; its .scale is an operator
    return None


def from_tfp(d):
    """A TFP-on-JAX Gaussian-like distribution as a divjax family (ValueError otherwise)."""
    tfd = _tfd()
    if isinstance(d, tfd.Normal):
        return Gaussian(d.mean(), jnp.log(d.stddev()))
    diag = _tfp_diag(d)
    if diag is not None:
        return DiagGaussian(diag[0], jnp.log(diag[1]))
    if isinstance(d, tfd.MultivariateNormalLinearOperator):
        dense = d.scale.to_dense()
        if not isinstance(d, tfd.MultivariateNormalTriL):
            dense = jnp.linalg.cholesky(dense @ jnp.swapaxes(dense, -1, -2))
        return FullRankGaussian(d.mean(), tril_to_chol(dense))
    if isinstance(d, tfd.MixtureSameFamily):
        comp = _tfp_diag(d.components_distribution)
        if comp is not None:
            logits = d.mixture_distribution.logits_parameter()
            return MixtureGaussian(logits, comp[0], jnp.log(comp[1]))
    _unsupported("tfp", d)


# --- distrax -------------------------------------------------------------------


def to_distrax(q):
    """A divjax family as a distrax distribution."""
    import distrax

    check_family(q)
    if q.family == "gaussian":
        return distrax.Normal(q.loc, jnp.exp(q.log_scale))
    if q.family == "diag":
        return distrax.MultivariateNormalDiag(q.loc, jnp.exp(q.log_scale))
    if q.family == "full":
        return distrax.MultivariateNormalTri(q.loc, q.scale_tril, is_lower=True)
    comps = distrax.MultivariateNormalDiag(q.locs, jnp.exp(q.log_scales))
    return distrax.MixtureSameFamily(distrax.Categorical(logits=q.logits), comps)


def _distrax_diag(d):
    import distrax

    if isinstance(d, distrax.MultivariateNormalDiag):
        return d.loc, d.scale_diag
    independent = (
        isinstance(d, distrax.Independent)
        and isinstance(d.distribution, distrax.Normal)
        and d.reinterpreted_batch_ndims == 1
    )
    return (d.mean(), d.stddev()) if independent else None


def from_distrax(d):
    """A distrax Gaussian-like distribution as a divjax family (ValueError otherwise)."""
    import distrax

    if isinstance(d, distrax.Normal):
        return Gaussian(d.mean(), jnp.log(d.stddev()))
    diag = _distrax_diag(d)
    if diag is not None:
        return DiagGaussian(diag[0], jnp.log(diag[1]))
    if isinstance(d, distrax.MultivariateNormalTri):
        tri = d.scale_tri
        if not d.is_lower:
            tri = jnp.linalg.cholesky(tri @ jnp.swapaxes(tri, -1, -2))
        return FullRankGaussian(d.loc, tril_to_chol(tri))
    if isinstance(d, distrax.MixtureSameFamily):
        comp = _distrax_diag(d.components_distribution)
        if comp is not None:
            return MixtureGaussian(d.mixture_distribution.logits, comp[0], jnp.log(comp[1]))
    _unsupported("distrax", d)


# --- dispatch -----------------------------------------------------------------

_TO = {"numpyro": to_numpyro, "tfp": to_tfp, "distrax": to_distrax}
_FROM = {"numpyro": from_numpyro, "tfp": from_tfp, "distrax": from_distrax}


def to_distribution(q, library: str):
    """``q`` as a distribution of ``library`` (``"numpyro"``, ``"tfp"`` or ``"distrax"``)."""
    if library not in _TO:
        raise ValueError(f"unknown library {library!r}; valid choices: {', '.join(LIBRARIES)}")
    return _TO[library](q)


def from_distribution(d):
    """A numpyro, TFP or distrax Gaussian-like distribution as a divjax family."""
    lib = library_of(d)
    if lib is None:
        raise ValueError(f"{type(d).__name__} is not a numpyro, TFP or distrax distribution")
    return _FROM[lib](d)


def as_mixture(d) -> GaussianMixture:
    """A Gaussian (or a mixture of diagonal Gaussians) distribution as a `GaussianMixture`.

    Unlike a distribution passed as a target (a log density: Monte Carlo only),
    the mixture has exact divergences.
    """
    q = d if hasattr(d, "family") else from_distribution(d)
    if jnp.ndim(q.mean()) != len(q.event_shape):
        raise ValueError("as_mixture needs one distribution, not a batch")
    if q.family == "gaussian":
        return GaussianMixture(jnp.ones(1), jnp.reshape(q.loc, (1,)), jnp.exp(jnp.reshape(q.log_scale, (1,))))
    if q.family == "diag":
        return GaussianMixture(jnp.ones(1), q.loc[None], jnp.exp(q.log_scale)[None])
    if q.family == "full":
        return GaussianMixture(jnp.ones(1), q.loc[None], covs=q.covariance()[None])
    return GaussianMixture(jax.nn.softmax(q.logits), q.locs, jnp.exp(q.log_scales))


__all__ = [
    "LIBRARIES",
    "as_mixture",
    "from_distrax",
    "from_distribution",
    "from_numpyro",
    "from_tfp",
    "library_of",
    "to_distrax",
    "to_distribution",
    "to_numpyro",
    "to_tfp",
    "tril_to_chol",
]
