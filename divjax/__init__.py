"""divjax: fit a distribution q_phi to a target p by gradient descent on a divergence.

The data path is one straight line: target and family -> divergence ->
estimator (a surrogate loss) -> ``jax.grad`` -> optax -> ``lax.scan`` -> ``vmap``.
"""

from divjax.closed_forms import cross_entropy
from divjax.coordinates import (
    PARAMETERIZATIONS,
    Parameterization,
    convert,
    get_parameterization,
    grad_in,
)
from divjax.diagnostics import GradStats, grad_stats
from divjax.divergences import (
    ALPHA_DIVERGENCES,
    DIVERGENCES,
    autodiff_grad,
    divergence,
    exact_grad,
    infinite_reason,
    is_infinite,
    log1p_divergence,
)
from divjax.estimators import (
    ESTIMATORS,
    REGISTRY,
    EstimatorInfo,
    MSCState,
    Stateful,
    SurrogateAux,
    estimators_for,
    min_samples,
    stateful_surrogate,
    surrogate,
)
from divjax.families import DiagGaussian, FullRankGaussian, Gaussian, MixtureGaussian, default_q0
from divjax.fit import (
    FitResult,
    FitState,
    FitTrace,
    Fitter,
    StepInfo,
    default_optimizer,
    fit,
    fitter,
)
from divjax.gradcheck import GradCheck, check_grad
from divjax import status
from divjax.landscape import hessian_eigenvalues, landscape_grid, path_values
from divjax.natural import hold_scale, natural_direction, natural_gradient, wrap_optimizer
from divjax.optima import Optima, classify, optimal_q
from divjax.status import FitStatus
from divjax.sweeps import SweepResult, sweep
from divjax.targets import GaussianMixture, LogDensity, as_target, default_target

__version__ = "0.2.0"

__all__ = [
    "ALPHA_DIVERGENCES",
    "DIVERGENCES",
    "ESTIMATORS",
    "PARAMETERIZATIONS",
    "REGISTRY",
    "DiagGaussian",
    "EstimatorInfo",
    "Explorer",
    "FitResult",
    "FitState",
    "FitStatus",
    "FitTrace",
    "Fitter",
    "FullRankGaussian",
    "Gaussian",
    "GaussianMixture",
    "GradCheck",
    "GradStats",
    "LogDensity",
    "MSCState",
    "MixtureGaussian",
    "Optima",
    "Parameterization",
    "Stateful",
    "StepInfo",
    "SurrogateAux",
    "SweepResult",
    "__version__",
    "as_target",
    "autodiff_grad",
    "check_grad",
    "classify",
    "convert",
    "cross_entropy",
    "default_optimizer",
    "default_q0",
    "default_target",
    "divergence",
    "estimators_for",
    "exact_grad",
    "explore",
    "fit",
    "fitter",
    "get_parameterization",
    "grad_in",
    "grad_stats",
    "hessian_eigenvalues",
    "hold_scale",
    "infinite_reason",
    "is_infinite",
    "landscape_grid",
    "log1p_divergence",
    "min_samples",
    "natural_direction",
    "natural_gradient",
    "optimal_q",
    "path_values",
    "stateful_surrogate",
    "status",
    "surrogate",
    "sweep",
    "wrap_optimizer",
]


def __getattr__(name):  # lazy: the explorer imports matplotlib and its widgets
    if name in ("Explorer", "explore"):
        from divjax import explorer

        return getattr(explorer, name)
    raise AttributeError(f"module 'divjax' has no attribute {name!r}")
