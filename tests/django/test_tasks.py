"""tasks.py: a real Celery worker process, on the real broker (Redis) and Postgres, keeps
the views fresh while the test writes through the ORM with EAGER off."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connections
from django.test import override_settings

from stepping_django.models import Outbox, ViewState
from stepping_django.registry import registry
from tests.conftest import service_missing
from tests.testapp import incremental
from tests.testapp.models import Basket, LineItem, Product

ROOT = Path(__file__).resolve().parents[2]
BROKER_HOW = "redis-server --daemonize yes --port 6379"
#: How long the worker gets to catch up before the test gives up (a deadline, not a speed
#: assertion: the test passes as soon as the views are fresh).
DEADLINE_SECS = 90


@pytest.fixture
def broker() -> str:
    from django.conf import settings
    from kombu import Connection

    url = settings.CELERY_BROKER_URL
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as e:
        service_missing("The Celery broker (Redis)", BROKER_HOW, e)
    return str(url)


@dataclass
class Worker:
    proc: subprocess.Popen[str]
    queue: str
    log: Path


@pytest.fixture(params=[None, "shared"], ids=["task-per-commit", "dedupe-cache"])
def dedupe(request: pytest.FixtureRequest) -> str | None:
    """TASK_DEDUPE_CACHE of the writer and the worker: off, or the Redis cache `shared`."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def worker(broker: str, tmp_path: Path, dedupe: str | None) -> Iterator[Worker]:
    """A `celery worker` process on its own queue, using the test's Postgres database."""
    queue = f"stepping-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "STEPPING_TEST_PG_NAME": connections["postgres"].settings_dict["NAME"],
        "STEPPING_TEST_QUEUE": queue,
        "STEPPING_TEST_DEDUPE": dedupe or "",
    }
    log_path = tmp_path / "celery.log"
    log = open(log_path, "w+")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celeryapp", "worker", "-P", "solo",
         "-Q", queue, "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield Worker(proc, queue, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def views_fresh(using: str) -> bool:
    if Outbox.objects.using(using).exists():
        return False
    return all(v.maintained(using) == v.from_scratch(using) for v in registry.views())


@pytest.mark.postgres
@pytest.mark.broker
@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
def test_a_worker_process_keeps_the_views_fresh(worker: Worker, dedupe: str | None) -> None:
    proc, queue = worker.proc, worker.queue
    using = "postgres"
    import tests.celeryapp  # noqa: F401  (the current Celery app of the writer)

    with override_settings(STEPPING={"EAGER": False, "QUEUE": queue, "TASK_DEDUPE_CACHE": dedupe}):
        tv = Product.objects.using(using).create(name="tv", price=3)
        radio = Product.objects.using(using).create(name="radio", price=5)
        baskets = [Basket.objects.using(using).create(customer=c) for c in "abc"]
        for i, b in enumerate(baskets):
            LineItem.objects.using(using).create(basket=b, product=tv, qty=i + 1)
            LineItem.objects.using(using).create(basket=b, product=radio, qty=1)
        Product.objects.using(using).filter(pk=tv.pk).update(price=4)
        baskets[2].delete()

    deadline = time.monotonic() + DEADLINE_SECS
    while not views_fresh(using):
        if proc.poll() is not None or time.monotonic() > deadline:
            log = worker.log.read_text()
            pytest.fail(f"the worker did not bring the views up to date; its log:\n{log[-4000:]}")
        time.sleep(0.2)
    totals = incremental.basket_totals.objects.using(using).order_by("total")
    assert list(totals.values_list("total", flat=True)) == [9, 13]
    assert not Outbox.objects.using(using).exists()
    assert set(ViewState.objects.using(using).values_list("status", flat=True)) == {"fresh"}


@pytest.mark.broker
def test_the_dedupe_flag_on_redis_is_set_once_until_a_task_clears_it(broker: str) -> None:
    from django.core.cache import caches

    from stepping_django import tasks

    flag = tasks._flag("flag-test", "q")
    caches["shared"].delete(flag)
    try:
        assert tasks._add_flag("shared", "flag-test", "q") is True  # a writer sends a task
        assert tasks._add_flag("shared", "flag-test", "q") is False  # the next one does not
        assert caches["shared"].get(flag) == 1  # the same key and value as cache.add's
        caches["shared"].delete(flag)  # the task starts
        assert tasks._add_flag("shared", "flag-test", "q") is True
        assert tasks._add_flag("default", "flag-test", "q") is True
        assert tasks._add_flag("default", "flag-test", "q") is False
    finally:
        caches["shared"].delete(flag)
        caches["default"].delete(tasks._flag("flag-test", "q"))
