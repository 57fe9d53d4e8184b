"""A writer process of the concurrency test: random ORM creates, updates and deletes on
shared rows of the test's Postgres database for DURATION seconds, with EAGER off (each
commit sends an apply task to the test's queue).

    python -m tests.django.writer_proc SEED DURATION_SECS

Environment: DJANGO_SETTINGS_MODULE=tests.settings, STEPPING_TEST_PG_NAME (the test
database), STEPPING_TEST_QUEUE. Prints `writes=N errors=M` at the end: N committed writes,
M writes that Postgres refused (a deadlock between two writers; the writer goes on).
"""

from __future__ import annotations

import random
import sys
import time

import django


def main() -> None:
    seed, duration = int(sys.argv[1]), float(sys.argv[2])
    django.setup()
    from django.db import DatabaseError, transaction
    from django.test import override_settings

    import tests.celeryapp  # noqa: F401  (the Celery app tasks are sent with)
    from tests.django.faults import USING, random_write

    rng = random.Random(seed)
    writes = errors = 0
    deadline = time.monotonic() + duration
    from django.conf import settings

    with override_settings(STEPPING={**settings.STEPPING, "EAGER": False}):
        while time.monotonic() < deadline:
            try:
                with transaction.atomic(using=USING):
                    writes += random_write(rng)
            except DatabaseError:
                errors += 1
    print(f"writes={writes} errors={errors}", flush=True)


if __name__ == "__main__":
    main()
