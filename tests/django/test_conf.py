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
        assert conf.validate() == []


def test_overrides_take_effect_at_once() -> None:
    with override_settings(STEPPING={"EAGER": True, "BATCH_SIZE": 7, "QUEUE": "views"}):
        assert (conf.eager(), conf.batch_size(), conf.queue()) == (True, 7, "views")
    with override_settings(STEPPING=["EAGER"]):
        assert conf.validate() == ["STEPPING must be a dict, not list"]
