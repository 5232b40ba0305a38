"""divjax: fit a distribution q_phi to a target p by gradient descent on a divergence.

The data path is one straight line: target and family -> divergence ->
estimator (a surrogate loss) -> ``jax.grad`` -> optax -> ``lax.scan`` -> ``vmap``.
"""

from divjax.alpha import (
    ALPHA_DIVERGENCES,
    ALPHA_ESTIMATORS,
    alpha_divergence,
    alpha_grad,
    alpha_surrogate,
)
from divjax.diagnostics import GradStats, grad_stats
from divjax.divergences import (
    DIVERGENCES,
    autodiff_grad,
    divergence,
    exact_grad,
    infinite_reason,
    is_infinite,
)
from divjax.estimators import (
    ESTIMATORS,
    MIXTURE_ESTIMATORS,
    Stateful,
    SurrogateAux,
    min_samples,
    stateful_surrogate,
    surrogate,
)
from divjax.families import Gaussian, default_q0
from divjax.fit import FitResult, FitStatus, FitTrace, default_optimizer, fit
from divjax.gradcheck import GradCheck, check_grad
from divjax.msc import MSCState
from divjax.multivariate import (
    MV_ESTIMATORS,
    cross_entropy,
    mv_divergence,
    mv_exact_grad,
    mv_surrogate,
)
from divjax.mv_families import DiagGaussian, FullRankGaussian, MixtureGaussian, MvGaussianMixture
from divjax.natural import hold_scale, natural_direction, natural_gradient, wrap_optimizer
from divjax.optima import Optima, optimal_q
from divjax.parameterizations import (
    PARAMETERIZATIONS,
    Parameterization,
    convert,
    get_parameterization,
    grad_in,
    hessian_eigenvalues,
    landscape_grid,
)
from divjax.targets import GaussianMixture, default_target

__all__ = [
    "ALPHA_DIVERGENCES",
    "ALPHA_ESTIMATORS",
    "DIVERGENCES",
    "ESTIMATORS",
    "MIXTURE_ESTIMATORS",
    "MV_ESTIMATORS",
    "PARAMETERIZATIONS",
    "alpha_divergence",
    "alpha_grad",
    "alpha_surrogate",
    "autodiff_grad",
    "check_grad",
    "convert",
    "cross_entropy",
    "default_optimizer",
    "default_q0",
    "default_target",
    "DiagGaussian",
    "divergence",
    "exact_grad",
    "explore",
    "Explorer",
    "fit",
    "FitResult",
    "FitStatus",
    "FitTrace",
    "FullRankGaussian",
    "Gaussian",
    "GaussianMixture",
    "get_parameterization",
    "grad_in",
    "grad_stats",
    "GradCheck",
    "GradStats",
    "hessian_eigenvalues",
    "hold_scale",
    "infinite_reason",
    "is_infinite",
    "landscape_grid",
    "min_samples",
    "MixtureGaussian",
    "MSCState",
    "mv_divergence",
    "mv_exact_grad",
    "mv_surrogate",
    "MvGaussianMixture",
    "natural_direction",
    "natural_gradient",
    "Optima",
    "optimal_q",
    "Parameterization",
    "Stateful",
    "stateful_surrogate",
    "surrogate",
    "SurrogateAux",
    "wrap_optimizer",
]


def __getattr__(name):  # lazy: the explorer imports matplotlib.pyplot and its widgets
    if name in ("Explorer", "explore"):
        from divjax import explorer

        return getattr(explorer, name)
    raise AttributeError(f"module 'divjax' has no attribute {name!r}")
