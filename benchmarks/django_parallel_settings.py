"""Settings of benchmarks/django_parallel_apply.py: one busy parallel view on Postgres,
applied by Celery worker processes."""

import os

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "stepping_django",
    "benchmarks.orders_app",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_PG_NAME", "bench_parallel"),
        "USER": os.environ.get("BENCH_PG_USER", "postgres"),
        "HOST": "127.0.0.1",
        "PORT": "5432",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STEPPING = {
    "EAGER": False,
    "QUEUE": os.environ.get("BENCH_QUEUE", "stepping-bench-parallel"),
    "BATCH_SIZE": int(os.environ.get("BENCH_BATCH", "1000")),
}
CELERY_BROKER_URL = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/13")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
