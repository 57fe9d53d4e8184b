"""conf.py: documented defaults, overridable through STEPPING at any time."""

from __future__ import annotations

from django.test import override_settings

from stepping_django import conf


def test_defaults() -> None:
    with override_settings(STEPPING={}):
        assert conf.eager() is False
        assert conf.batch_size() == 1000
        assert conf.max_sleep_secs() == 5.0
        assert conf.queue() is None
        assert conf.retry_busy_secs() == 0.25
        assert conf.task_dedupe_cache() is None
        assert conf.background_send() is True
        assert conf.send_interval_secs() == 0.01
        assert conf.validate() == []


def test_overrides_take_effect_at_once() -> None:
    with override_settings(STEPPING={"EAGER": True, "BATCH_SIZE": 7, "QUEUE": "views"}):
        assert (conf.eager(), conf.batch_size(), conf.queue()) == (True, 7, "views")
    with override_settings(STEPPING=["EAGER"]):
        assert conf.validate() == ["STEPPING must be a dict, not list"]


def test_send_interval_must_be_seconds() -> None:
    for bad in (-1, "0.1", True, 61):
        with override_settings(STEPPING={"SEND_INTERVAL_SECS": bad}):
            (problem,) = conf.validate()
            assert "SEND_INTERVAL_SECS" in problem
    with override_settings(STEPPING={"SEND_INTERVAL_SECS": 0, "BACKGROUND_SEND": False}):
        assert conf.validate() == []
        assert (conf.background_send(), conf.send_interval_secs()) == (False, 0.0)
