"""Settings of benchmarks/django_writes.py: the demo shop on Postgres, applied by Celery."""

import os

from demo_project.settings import *  # noqa: F403

DEBUG = False  # as in production (DEBUG's query log costs every query)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_PG_NAME", "bench_stepping"),
        "USER": os.environ.get("BENCH_PG_USER", "postgres"),
        "HOST": "127.0.0.1",
        "PORT": "5432",
        # BENCH_PREPARE=1: let psycopg prepare statements run 5 times (Django's default is
        # never, for connection poolers). Django's own queries are bound client-side and
        # never prepared either way; capture's INSERT then is.
        "OPTIONS": {"prepare_threshold": 5} if os.environ.get("BENCH_PREPARE") else {},
    }
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("BENCH_CACHE", "redis://127.0.0.1:6379/14"),
    }
}
STEPPING = {
    "EAGER": False,
    "QUEUE": "stepping-bench",
    # One waiting task per view (a flag in the shared cache); unset: one task per commit.
    "TASK_DEDUPE_CACHE": os.environ.get("BENCH_DEDUPE", "default") or None,
}
CELERY_BROKER_URL = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/14")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
