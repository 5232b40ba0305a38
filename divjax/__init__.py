"""divjax: fit a distribution q_phi to a target p by gradient descent on a divergence.

The data path is one straight line: target and family -> divergence ->
estimator (a surrogate loss) -> ``jax.grad`` -> optax -> ``lax.scan`` -> ``vmap``.
"""

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
    Stateful,
    SurrogateAux,
    min_samples,
    stateful_surrogate,
    surrogate,
)
from divjax.families import Gaussian, default_q0
from divjax.fit import FitResult, FitStatus, FitTrace, default_optimizer, fit
from divjax.gradcheck import GradCheck, check_grad
from divjax.optima import Optima, optimal_q
from divjax.msc import MSCState
from divjax.natural import hold_scale, natural_direction, natural_gradient, wrap_optimizer
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
    "DIVERGENCES",
    "Explorer",
    "explore",
    "ESTIMATORS",
    "FitResult",
    "FitStatus",
    "FitTrace",
    "GradStats",
    "MSCState",
    "Stateful",
    "PARAMETERIZATIONS",
    "Parameterization",
    "SurrogateAux",
    "default_optimizer",
    "fit",
    "grad_stats",
    "surrogate",
    "Gaussian",
    "GaussianMixture",
    "GradCheck",
    "Optima",
    "autodiff_grad",
    "check_grad",
    "convert",
    "get_parameterization",
    "grad_in",
    "hessian_eigenvalues",
    "hold_scale",
    "landscape_grid",
    "min_samples",
    "stateful_surrogate",
    "natural_direction",
    "natural_gradient",
    "wrap_optimizer",
    "default_q0",
    "default_target",
    "divergence",
    "exact_grad",
    "infinite_reason",
    "is_infinite",
    "optimal_q",
]


def __getattr__(name):  # lazy: the explorer imports matplotlib.pyplot and its widgets
    if name in ("Explorer", "explore"):
        from divjax import explorer

        return getattr(explorer, name)
    raise AttributeError(f"module 'divjax' has no attribute {name!r}")
