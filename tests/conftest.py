"""Shared fixtures: fixed PRNG keys and a float64 switch; one compilation cache for the run."""

import os
from pathlib import Path

import jax
import pytest

# Programs compiled by one test (or by a test's subprocess) are reused by the
# others, and by the next run of the suite.
_CACHE = Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def x64():
    """Runs the test with float64 enabled (restored afterwards)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def key():
    return jax.random.key(0)


# The test modules that read `tests._shared.exact_1d` run in one pytest-xdist worker,
# so its programs compile once per run; every other module is scheduled on its own
# (``--dist loadfile``, as the Makefile runs it).
_SHARED_EXACT = frozenset(
    f"tests/{p.name}"
    for p in Path(__file__).parent.glob("test_*.py")
    if "_shared.exact_" in p.read_text()
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedExactScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "shared-exact" if path in _SHARED_EXACT else path

    return SharedExactScheduling(config, log)
