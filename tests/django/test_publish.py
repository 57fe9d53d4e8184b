"""publish.py: with EAGER off, a commit hands its views to a background thread that sends
the apply task after the commit; commits close together share one send; a task never
sent (the process died, the broker refused) is made up for by the sweep."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, current_app
from django.db import transaction
from django.test import override_settings

from stepping_django import publish, tasks
from stepping_django.models import Outbox
from tests.django.conftest import assert_views_fresh
from tests.testapp.models import Basket, LineItem, Product

pytestmark = pytest.mark.django_db(transaction=True)


class Sent:
    """What `tasks.send` was called with, and from which thread and Celery app."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str, str, Any]] = []
        self.queues: list[str | None] = []
        self.fail = False

    def __call__(self, labels: Any, using: str, queue: str | None, *a: Any, **kw: Any) -> None:
        thread = threading.current_thread().name
        self.calls.append((sorted(labels), using, thread, current_app._get_current_object()))
        self.queues.append(queue)
        if self.fail:
            raise ConnectionError("the broker is down")


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sent]:
    recorder = Sent()
    monkeypatch.setattr(tasks, "send", recorder)
    with override_settings(STEPPING={"EAGER": False, "SEND_INTERVAL_SECS": 0.2}):
        yield recorder
        assert publish.flush()


def test_the_task_is_sent_after_the_commit_from_the_publisher_thread(sent: Sent) -> None:
    with transaction.atomic():
        Product.objects.create(name="tv", price=3)
        assert publish.flush()
        assert sent.calls == []  # nothing before the commit
    assert publish.flush()
    ((labels, using, thread, _),) = sent.calls
    assert labels == ["testapp.basket_totals", "testapp.checked_prices"]
    assert using == "default"
    assert thread == "stepping_django-publisher"


def test_commits_within_the_interval_share_one_send(sent: Sent) -> None:
    with override_settings(STEPPING={"EAGER": False, "SEND_INTERVAL_SECS": 2}):
        Product.objects.create(name="tv", price=3)
        assert publish.flush()
        tv = Product.objects.create(name="radio", price=5)  # within 2 s of the first send
        basket = Basket.objects.create(customer="ann")
        LineItem.objects.create(basket=basket, product=tv, qty=1)
        assert publish.flush()
    assert [c[0] for c in sent.calls] == [
        ["testapp.basket_totals", "testapp.checked_prices"],
        [
            "testapp.basket_totals",
            "testapp.checked_prices",
            "testapp.product_quantities",
            "testapp.top_quantities",
        ],
    ]


def test_the_publisher_sends_with_the_writers_celery_app(sent: Sent) -> None:
    """Celery's current app is per thread: the publisher's would be Celery's fallback."""
    before = current_app._get_current_object()
    app = Celery("writer", set_as_current=True)
    try:
        Product.objects.create(name="tv", price=3)
        assert publish.flush()
    finally:
        before.set_current()
    assert sent.calls[-1][3] is app


def test_without_background_send_the_commit_sends_the_task(sent: Sent) -> None:
    with override_settings(STEPPING={"EAGER": False, "BACKGROUND_SEND": False}):
        Product.objects.create(name="tv", price=3)
    ((_, _, thread, _),) = sent.calls
    assert thread == threading.current_thread().name


def test_a_task_never_sent_is_made_up_for_by_the_sweep(sent: Sent) -> None:
    sent.fail = True  # every send fails, as if the process had died before sending
    tv = Product.objects.create(name="tv", price=3)
    basket = Basket.objects.create(customer="ann")
    LineItem.objects.create(basket=basket, product=tv, qty=2)
    assert publish.flush()
    assert sent.calls  # it tried, failed, and the writes stand
    assert Outbox.objects.exists()
    tasks.sweep("default")  # what Celery beat runs every minute (README)
    assert_views_fresh("default")


def test_a_forked_child_starts_with_an_empty_publisher(sent: Sent) -> None:
    Product.objects.create(name="tv", price=3)  # the parent's publisher thread runs
    parent = publish.publisher
    pid = os.fork()
    if pid == 0:  # the child: a publisher of its own, no thread, nothing to send
        child = publish.publisher
        os._exit(0 if child is not parent and child._thread is None and not child._pending else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent._thread is not None


def test_the_views_of_a_rolled_back_transaction_are_not_sent(sent: Sent) -> None:
    basket = Basket.objects.create(customer="ann")
    tv = Product.objects.create(name="tv", price=3)
    assert publish.flush()
    sent.calls.clear()
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        LineItem.objects.create(basket=basket, product=tv, qty=1)
        1 / 0  # noqa: B018
    Product.objects.create(name="radio", price=5)
    assert publish.flush()
    assert [c[0] for c in sent.calls] == [["testapp.basket_totals", "testapp.checked_prices"]]


def test_the_settings_of_the_commit_decide_where_the_task_goes(sent: Sent) -> None:
    """override_settings may end before the thread sends: the commit's queue is used."""
    settings = {"EAGER": False, "SEND_INTERVAL_SECS": 2}
    with override_settings(STEPPING=settings):
        Product.objects.create(name="tv", price=3)  # sent at once
        assert publish.flush()
    with override_settings(STEPPING={**settings, "QUEUE": "at-commit"}):
        Product.objects.create(name="radio", price=5)  # waits for the interval
    with override_settings(STEPPING={**settings, "QUEUE": "at-send"}):
        assert publish.flush()
    assert sent.queues == [None, "at-commit"]


def test_the_interval_doubles_while_a_task_waits_up_to_its_cap() -> None:
    with override_settings(STEPPING={"SEND_INTERVAL_SECS": 0.01}):
        got = [publish._interval(k) for k in range(6)]
    assert got == [0.01, 0.02, 0.04, publish.WAITING_INTERVAL_SECS, 0.05, 0.05]
    with override_settings(STEPPING={"SEND_INTERVAL_SECS": 0.2}):  # above the cap: kept
        assert publish._interval(3) == 0.2


def test_each_send_that_finds_a_task_waiting_lengthens_the_next_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The thread counts the sends in a row that found a task waiting (tasks.send returned
    False) and waits `_interval(count)` before the next; a send that sends resets it."""
    answers = [False] * 6 + [True, False]
    sends: list[int] = []
    counts: list[int] = []

    def send(*args: Any, **kwargs: Any) -> bool:
        sends.append(1)
        return answers[len(sends) - 1] if len(sends) <= len(answers) else True

    def interval(waiting: int) -> float:
        counts.append(waiting)
        return 0.0  # no sleeping: the test follows the counts, not the clock

    monkeypatch.setattr(tasks, "send", send)
    monkeypatch.setattr(publish, "_interval", interval)
    with override_settings(STEPPING={"EAGER": False}):
        while len(sends) < len(answers) + 1:
            publish.submit({"testapp.basket_totals"}, "default")
            assert publish.flush()
    assert counts[: len(answers) + 1] == [0, 1, 2, 3, 4, 5, 6, 0, 1]
