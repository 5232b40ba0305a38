r"""Published results, reproduced: one entry per claim, run with ``divjax reproduce NAME``.

Each entry is a module of this package with the claim (``TITLE``, ``SOURCE``,
``STATEMENT``), two sizes (``SIZES["quick"]`` for the tests, ``SIZES["full"]``
for the command line), ``measure(size, key) -> Result`` (the measured table with
standard errors, and the claim's checks on divjax's exact values and gradients)
and ``figure(result) -> matplotlib Figure``. `divjax.gallery.runner` prints,
saves and summarizes them. ``import divjax`` does not import this package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ENTRIES = (
    "stl",
    "iwae_snr",
    "dreg",
    "snis_msc",
    "cubo",
    "renyi",
    "score_vs_pathwise",
    "seed_page",
)


def entry(name: str) -> ModuleType:
    """The entry module ``name`` (`ValueError` naming the valid ones)."""
    if name not in ENTRIES:
        raise ValueError(f"unknown gallery entry {name!r}; valid choices: {', '.join(ENTRIES)}")
    return importlib.import_module(f"divjax.gallery.{name}")


__all__ = ["ENTRIES", "entry"]
