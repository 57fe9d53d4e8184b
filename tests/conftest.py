"""Shared test set-up: hypothesis profiles and the rule for tests that need a service.

In CI (`CI=true`) a test that needs Postgres or a broker fails when the service is
missing; elsewhere it is skipped with a message saying how to start the service.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

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
