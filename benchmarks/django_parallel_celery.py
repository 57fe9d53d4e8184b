"""The Celery app of benchmarks/django_parallel_apply.py's workers."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.django_parallel_settings")

app = Celery("bench_parallel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["stepping_django"])
