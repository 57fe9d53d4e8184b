"""Waiting for frontiers: an iteration reads a table only once every earlier time is in it.

`last_update.t` of a table only grows, and reaching `t` means every change up to and
including time `t` has been committed to that table. Waiting polls with short, growing
sleeps and gives up after `stepping_django.engine.MAX_SLEEP_SECS`, read at each wait so
that changing it at run time takes effect.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

FIRST_SLEEP_SECS = 0.0005
#: A poll is one indexed read of `last_update`; sleeping longer between polls would add
#: its latency to every step of a pipeline of parallel iterations (measured: the seed's
#: parallel example on SQLite took 2.8 s with 50 ms, 2.0 s with 2 ms).
LONGEST_SLEEP_SECS = 0.002


class FrontierTimeout(TimeoutError):
    """A table did not reach the awaited time: an earlier iteration is slow or failed."""


def max_sleep_secs() -> float:
    from stepping_django import engine

    return float(engine.MAX_SLEEP_SECS)


def wait_for_frontier(
    read_times: Callable[[], dict[str, int]], names: Sequence[str], frontier: int
) -> dict[str, int]:
    """Poll `read_times` until each of `names` has reached `frontier`; return what was
    seen, or raise `FrontierTimeout` naming the first table still behind."""
    limit = max_sleep_secs()
    deadline = time.monotonic() + limit
    sleep = FIRST_SLEEP_SECS
    while True:
        seen = read_times()
        behind = [n for n in names if seen.get(n, -1) < frontier]
        if not behind:
            return seen
        left = deadline - time.monotonic()
        if left <= 0:
            name = behind[0]
            raise FrontierTimeout(
                f"table {name!r} did not reach time {frontier} within {limit} s "
                f"(MAX_SLEEP_SECS): its last_update.t is {seen.get(name, 'missing')}; "
                "an earlier iteration is still running, or failed before committing"
            )
        time.sleep(min(sleep, left))
        sleep = min(sleep * 1.5, LONGEST_SLEEP_SECS)
