r"""The divergences' names and orders, and how each is computed exactly (`EXACT`).

`check_divergence` validates a name and its order ``alpha``; `exponent` gives
the ``a`` of ``I(a) = int q^a p^(1 - a)`` behind a power divergence;
`reduces_to_kl` says which KL a divergence equals at a given order. `EXACT`
is keyed by (divergence, target kind, family); `lookup` raises a
`ValueError` quoting `EXACTNESS` where no exact method exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from divjax import _checks, gradients_1d
from divjax.targets import GaussianMixture

DIVERGENCES = ("kl_forward", "kl_reverse", "chi2_forward", "chi2_reverse")
ALPHA_DIVERGENCES = ("renyi_forward", "renyi_reverse", "amari", "hellinger", "jensen_shannon")
ALL_DIVERGENCES = DIVERGENCES + ALPHA_DIVERGENCES
NEEDS_ALPHA = ("renyi_forward", "renyi_reverse", "amari")


def check_divergence(name: str, alpha=None) -> float | None:
    """Validates ``name`` and its order ``alpha``; returns ``alpha`` as a float (or None).

    Raises:
      ValueError: an unknown name (listing the valid ones), a missing or
        non-finite ``alpha`` where one is needed, a Renyi order ``<= 0``, or an
        ``alpha`` given to a divergence that has none.
    """
    _checks.check_choice(name, ALL_DIVERGENCES, "divergence")
    if name not in NEEDS_ALPHA:
        if alpha is not None and name != "hellinger":
            raise ValueError(f"{name} takes no alpha, got alpha={alpha!r}")
        return 0.5 if name == "hellinger" else None
    if alpha is None or isinstance(alpha, bool):
        raise ValueError(f"{name} needs a finite float alpha (e.g. alpha=0.5), got {alpha!r}")
    try:
        alpha = float(alpha)
    except (TypeError, ValueError) as err:
        raise ValueError(f"alpha must be a finite float, got {alpha!r}") from err
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite float, got {alpha!r}")
    if name.startswith("renyi") and alpha <= 0:
        raise ValueError(f"{name}: the Renyi order alpha must be > 0, got {alpha}")
    return alpha


def exponent(name: str, alpha: float | None) -> float | None:
    """The ``a`` of ``I(a)`` behind a divergence's value (None for the KLs and JS)."""
    return {
        "chi2_forward": -1.0,
        "chi2_reverse": 2.0,
        "renyi_reverse": alpha,
        "renyi_forward": None if alpha is None else 1.0 - alpha,
        "amari": None if alpha is None else 1.0 - alpha,
        "hellinger": 0.5,
    }.get(name)


def reduces_to_kl(name: str, alpha) -> str | None:
    """The KL a divergence equals at this order, if any."""
    if name in ("kl_forward", "kl_reverse"):
        return name
    if name == "renyi_reverse" and alpha == 1:
        return "kl_reverse"
    if name == "renyi_forward" and alpha == 1:
        return "kl_forward"
    if name == "amari" and alpha in (0.0, 1.0):
        return "kl_reverse" if alpha == 0 else "kl_forward"
    return None


class Method(NamedTuple):
    """How one divergence is computed exactly for one (target kind, family).

    Attributes:
      quadrature: ``(alpha, num_components) -> (value, gradient)`` whether
        each needs quadrature (hence ``d <= 2``).
      hand_grad: a hand-derived gradient ``(p, q) -> grad`` or None (autodiff).
      how: one line for the docs and error messages.
    """

    quadrature: Callable[[float | None, int], tuple[bool, bool]]
    hand_grad: Callable | None
    how: str


def _power_needs_quadrature(name):
    def needs(alpha, m):
        if reduces_to_kl(name, alpha):
            kl = reduces_to_kl(name, alpha)
            return (True, kl == "kl_reverse")
        a = exponent(name, alpha)
        closed = a in (-1.0, 0.0, 1.0) or m == 1
        return (not closed, not closed)

    return needs


_QUADRATURE = {
    "kl_forward": lambda alpha, m: (True, False),
    "kl_reverse": lambda alpha, m: (True, True),
    "jensen_shannon": lambda alpha, m: (True, True),
}
_HOW = {
    "kl_forward": "gradient closed form (p's moments); value adds E_p[log p] by quadrature",
    "kl_reverse": "quadrature in q's standardized variable",
    "chi2_forward": "closed form (pairs of components), any d",
    "jensen_shannon": "quadrature in q's frame and around p",
}


def _method(name, family):
    needs = _QUADRATURE.get(name) or _power_needs_quadrature(name)
    hand = gradients_1d.GRADIENTS.get(name) if family == "gaussian" else None
    return Method(
        needs,
        hand,
        _HOW.get(name, "I(a) by quadrature in q's frame; closed form for I(-1) and one component"),
    )


EXACT: dict[tuple[str, str, str], Method] = {
    (name, "mixture", family): _method(name, family)
    for name in ALL_DIVERGENCES
    for family in ("gaussian", "diag", "full")
}

EXACTNESS = (
    "exact divergences need a divjax.GaussianMixture target and a Gaussian, DiagGaussian or "
    "FullRankGaussian q: chi2_forward (and any I(-1)) in closed form in any d; kl_forward's "
    "gradient in any d, its value in d <= 2; every other divergence in d <= 2 (quadrature) "
    "or for a one-component target. Otherwise use a Monte Carlo estimator (divjax.surrogate)."
)


def target_kind(p) -> str:
    return "mixture" if isinstance(p, GaussianMixture) else "density"


def check_exact_target(name: str, p, alpha=None, *, what: str = "value") -> None:
    """`ValueError` (quoting `EXACTNESS`) where no exact ``what`` exists for this target."""
    if target_kind(p) != "mixture":
        raise ValueError(
            f"no exact {name} for a {type(p).__name__} target (only its log density is known). "
            f"{EXACTNESS}"
        )
    method = EXACT[(name, "mixture", "full")]
    needs = method.quadrature(alpha, p.num_components)[0 if what == "value" else 1]
    if needs and p.dim > 2:
        raise ValueError(f"{name} {what} is not exact in d = {p.dim}. {EXACTNESS}")


def lookup(name: str, p, q, alpha=None, *, what: str = "value") -> Method:
    """The `Method` for ``(name, p, q)``; `ValueError` (quoting `EXACTNESS`) where none exists.

    ``what`` is ``"value"`` or ``"gradient"``. Runs on types and shapes only,
    so it may be called on traced arguments.
    """
    family = getattr(q, "family", type(q).__name__)
    method = EXACT.get((name, target_kind(p), family))
    if method is None:
        raise ValueError(
            f"no exact {name} for a {type(p).__name__} target and a {type(q).__name__} q. "
            f"{EXACTNESS}"
        )
    if p.event_shape != q.event_shape:
        raise ValueError(f"p's event_shape {p.event_shape} does not match q's {q.event_shape}")
    check_exact_target(name, p, alpha, what=what)
    return method


def exact_available(name: str, p, q, alpha=None, *, what: str = "value") -> bool:
    """Whether `lookup` succeeds (no exception)."""
    try:
        lookup(name, p, q, alpha, what=what)
    except ValueError:
        return False
    return True


__all__ = [
    "ALL_DIVERGENCES",
    "ALPHA_DIVERGENCES",
    "DIVERGENCES",
    "EXACT",
    "EXACTNESS",
    "NEEDS_ALPHA",
    "Method",
    "check_divergence",
    "check_exact_target",
    "exact_available",
    "exponent",
    "lookup",
    "reduces_to_kl",
    "target_kind",
]
