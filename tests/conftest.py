"""Shared test set-up: hypothesis profiles and the rule for tests that need a service.

In CI (`CI=true`) a test that needs Postgres or a broker fails when the service is
missing; elsewhere it is skipped with a message saying how to start the service.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: The engine runs without its C module: `make test` runs the engine's tests once more so.
PURE_PYTHON = os.environ.get("STEPPING_PURE_PYTHON") == "1"

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if IN_CI else "dev"))


def service_missing(name: str, how_to_start: str, error: BaseException | None = None) -> None:
    """Fail in CI, skip elsewhere: a missing service must never pass CI silently."""
    message = f"{name} is not reachable ({error}); start it with: {how_to_start}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def needs_speedups() -> Any:
    """The engine's C module, for a test of it against its Python reference: skipped when
    pure Python is asked for; otherwise it must be built (in CI a test fails without it)."""
    from stepping_django.engine.data import speedups

    if speedups is None:
        if PURE_PYTHON:
            pytest.skip("pure Python asked for (STEPPING_PURE_PYTHON=1)")
        message = "the C module is not built (`make install` builds it)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return speedups
