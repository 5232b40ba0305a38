r"""Worst relative error of every exact divergence on the grid of extreme q's, per dtype.

The grid, the targets and the references are those of `tests/test_exactness.py`
(`tests.exactness_grid`: ``sigma`` from 1e-30 to 1e3, ``|loc|`` up to 1e5,
three targets; references from `tests.reference_hp`, cached). The error is
that of the value, or of ``log(1 + D)`` where ``D`` is beyond the dtype's
range; infinite values are counted apart (they must be infinite in the
reference too, or beyond the range). Prints a Markdown table.

Run: ``.venv/bin/python benchmarks/bench_exactness_grid.py`` (compiles one
program per divergence, order and dtype: minutes on 2 cores the first time,
seconds with the compilation cache that the tests fill).
"""

import os
import pathlib
import sys
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".pytest_cache" / "jax"))
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

from tests import exactness_grid as grid  # noqa: E402


def main() -> int:
    rows, failed = [], 0
    t0 = time.perf_counter()
    for name, alpha in grid.ORDERS + grid.MORE_ORDERS:
        cells = []
        for dtype in grid.DTYPES:
            out = grid.evaluate(name, alpha, dtype)
            refs = grid.cached_reference(name, alpha, dtype)
            bad, worst = grid.violations(name, alpha, dtype, out, refs)
            failed += len(bad)
            value = out["value"]
            n_inf = int(np.sum(refs[..., 2] > 0))
            n_beyond = int(np.sum((refs[..., 2] == 0) & np.isinf(value)))
            cells.append(
                f"{worst:.1e} | {n_inf} / {n_beyond}" + (f" ({len(bad)} bad)" if bad else "")
            )
        label = name if alpha is None else f"{name} (alpha = {alpha:g})"
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    n = len(grid.TARGETS) * grid.BATCH
    print(f"{n} (target, q) pairs per divergence; tolerance 1e-6 (float64), 1e-3 (float32)\n")
    print(
        "| divergence | float32 worst rel. error | float32 infinite / beyond range "
        "| float64 worst rel. error | float64 infinite / beyond range |"
    )
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"\n{failed} violations of the contract; {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
