"""Monte Carlo gradient estimators as surrogate losses whose ``jax.grad`` is the estimate.

Modules by kind: `score_function` (REINFORCE, SNIS and their relatives),
`pathwise` (reparameterization), `bounds` (importance-weighted bounds, DReG),
`control_variates`, `msc` (Markovian score climbing); `registry` holds one
`EstimatorInfo` per (divergence, estimator) and builds the surrogates.
"""

from divjax.estimators._core import SurrogateAux
from divjax.estimators.msc import MSCState
from divjax.estimators.registry import (
    ESTIMATORS,
    REGISTRY,
    EstimatorInfo,
    Stateful,
    check_estimator,
    check_q,
    estimator_info,
    estimators_for,
    min_samples,
    stateful_surrogate,
    surrogate,
)

__all__ = [
    "ESTIMATORS",
    "REGISTRY",
    "EstimatorInfo",
    "MSCState",
    "Stateful",
    "SurrogateAux",
    "check_estimator",
    "check_q",
    "estimator_info",
    "estimators_for",
    "min_samples",
    "stateful_surrogate",
    "surrogate",
]
