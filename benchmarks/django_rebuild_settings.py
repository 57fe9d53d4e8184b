"""Settings of benchmarks/django_rebuild.py: the meter-reads models on Postgres, applied
eagerly (no broker), DEBUG off (no query log growing in memory)."""

import os

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "stepping_django",
    "benchmarks.meter_app",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_PG_NAME", "bench_rebuild"),
        "USER": os.environ.get("BENCH_PG_USER", "postgres"),
        "HOST": "127.0.0.1",
        "PORT": "5432",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STEPPING = {"EAGER": True, "BATCH_SIZE": int(os.environ.get("BENCH_BATCH", "1000"))}
