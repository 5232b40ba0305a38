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
