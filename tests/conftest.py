"""Shared fixtures: fixed PRNG keys and a float64 switch."""

import jax
import pytest


@pytest.fixture
def x64():
    """Runs the test with float64 enabled (restored afterwards)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def key():
    return jax.random.key(0)
