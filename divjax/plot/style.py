r"""What every picture shares: colours, labels, the outcome legend, estimator styles, numbers.

One colour per role everywhere: the target ``p`` dark grey (`TARGET`), the
fitted ``q_phi`` purple (`PURPLE`), optimal ``q*`` orange (`OPTIMUM`; dashed
global, dotted local), a positive gradient contribution blue (`POSITIVE`), a
negative one red (`NEGATIVE`), an infinite region pink and hatched
(`INFINITE`), and one colour per fit outcome of `divjax.status.OUTCOMES`
(`OUTCOME_COLORS`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from divjax.divergences import ALL_DIVERGENCES
from divjax.estimators import REGISTRY
from divjax.status import OUTCOMES

PURPLE = "#7B2D8E"
POSITIVE = "#2166AC"
NEGATIVE = "#B2182B"
TARGET = "#333333"
OPTIMUM = "#E08214"
INFINITE = "#F4A6A6"

OUTCOME_COLORS = dict(
    zip(
        OUTCOMES,
        ("#1B9E77", "#7570B3", "#E6AB02", "#999999", "#80B1D3", "#8C510A", "#D95F02"),
        strict=True,
    )
)
OUTCOME_LABELS = {
    "global": "global optimum",
    "local": "local optimum",
    "stuck": "stuck (near no optimum)",
    "settled": "settled (no optima known)",
    "moving": "still moving",
    "ran_away": "ran away",
    "diverged": "diverged",
}

LABELS = {
    "kl_forward": r"$\mathrm{KL}(p\,\|\,q)$",
    "kl_reverse": r"$\mathrm{KL}(q\,\|\,p)$",
    "chi2_forward": r"$\chi^2(p\,\|\,q)$",
    "chi2_reverse": r"$\chi^2(q\,\|\,p)$",
    "renyi_forward": r"$D_\alpha(p\,\|\,q)$",
    "renyi_reverse": r"$D_\alpha(q\,\|\,p)$",
    "amari": r"$A_\alpha(p\,\|\,q)$",
    "hellinger": r"$H^2(p, q)$",
    "jensen_shannon": r"$\mathrm{JS}(p, q)$",
}
OTHER_DIRECTION = {
    "kl_forward": "kl_reverse",
    "kl_reverse": "kl_forward",
    "chi2_forward": "chi2_reverse",
    "chi2_reverse": "chi2_forward",
    "renyi_forward": "renyi_reverse",
    "renyi_reverse": "renyi_forward",
}
SEEKING = {"forward": "mean-seeking", "reverse": "mode-seeking"}

# Distinct colours for estimator lines (tab10 without its grey, black, tab20b's dark tones and
# three more); line styles and markers tell divergences apart.
ESTIMATOR_COLORS = (
    tuple(c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7)
    + ("#000000",)
    + tuple(plt.get_cmap("tab20b").colors[i] for i in (0, 4, 8, 12, 16))
    + ("#E6AB02", "#66C2A5", "#FC8D62")
)
DIVERGENCE_LINESTYLES = dict(
    zip(
        ALL_DIVERGENCES,
        (
            "-",
            "--",
            "-.",
            ":",
            (0, (5, 1)),
            (0, (3, 1, 1, 1, 1, 1)),
            (0, (1, 1)),
            (0, (5, 3, 1, 3)),
            (0, (8, 2, 2, 2)),
        ),
        strict=True,
    )
)
DIVERGENCE_MARKERS = dict(zip(ALL_DIVERGENCES, "osD^vP*Xh", strict=True))


def label(name: str, alpha=None) -> str:
    """The divergence's symbol, with its order where it has one (``D_0.5(p || q)``)."""
    text = LABELS[name]
    if alpha is not None and r"\alpha" in text:
        text = text.replace(r"\alpha", f"{{{float(alpha):g}}}")
    return text


def seeking(name: str) -> str | None:
    """``"mean-seeking"`` for a forward divergence, ``"mode-seeking"`` for a reverse one."""
    for direction, word in SEEKING.items():
        if name.endswith("_" + direction):
            return word
    return None


def estimator_styles(keys: Iterable[tuple[str, str]] | None = None) -> dict:
    r"""``{(divergence, estimator): {"color", "ls", "marker"}}``, every pair distinct.

    The order is `divjax.REGISTRY`'s (``"exact"`` left out). Colours are
    handed out in that order among ``keys`` (all registered estimators by
    default), so up to ``len(ESTIMATOR_COLORS)`` lines each get their own
    colour; the line style and marker follow the divergence.
    """
    wanted = None if keys is None else {tuple(k) for k in keys}
    ordered = [k for k in REGISTRY if k[1] != "exact" and (wanted is None or k in wanted)]
    ordered += sorted(k for k in (wanted or ()) if k not in REGISTRY)
    out = {}
    for i, (name, est) in enumerate(ordered):
        out[(name, est)] = {
            "color": ESTIMATOR_COLORS[i % len(ESTIMATOR_COLORS)],
            "ls": DIVERGENCE_LINESTYLES.get(name, "-"),
            "marker": DIVERGENCE_MARKERS.get(name, "o"),
        }
    return out


def outcome_handles() -> list[Patch]:
    """One legend patch per outcome of `divjax.status.OUTCOMES`, in that order."""
    return [Patch(color=OUTCOME_COLORS[o], label=OUTCOME_LABELS[o]) for o in OUTCOMES]


def format_value(log1p: float, infinite: bool = False, dtype: str = "float32") -> str:
    r"""A divergence ``D`` for a title, from ``log(1 + D)`` (`divjax.log1p_divergence`).

    ``∞`` where it is infinite (`divjax.is_infinite`); ``≈ 10^k`` with a note
    where it is finite but beyond ``dtype``'s range; ``n/a`` for NaN.
    """
    log1p = float(log1p)
    if math.isnan(log1p):
        return "n/a"
    if infinite:
        return r"$\infty$"
    with np.errstate(over="ignore"):
        value = float(np.expm1(np.float64(log1p)))
    if math.isfinite(value) and abs(value) <= float(np.finfo(dtype).max):
        return f"{value:.3g}"
    if math.isfinite(log1p):
        return rf"$\approx 10^{{{log1p / math.log(10):.0f}}}$ (beyond {dtype} range)"
    return f"finite, beyond {dtype} range even in log space"


def new_axes(ax, figsize=(6.0, 3.0)):
    """``(figure, axes)``: ``ax``'s, or a new figure's with constrained layout."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def grid_of_axes(n: int, max_cols: int, panel=(3.4, 2.6), **kw):
    """``(figure, axes (rows, cols))`` for ``n`` panels, the unused ones hidden."""
    cols = max(1, min(n, max_cols))
    rows = -(-max(n, 1) // cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(panel[0] * cols, panel[1] * rows),
        squeeze=False,
        layout="constrained",
        **kw,
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def as_float(a) -> np.ndarray:
    return np.asarray(a, np.float64)
