"""The Celery app of the test suite (`celery -A tests.celeryapp worker`): settings from
`tests.settings` (CELERY_* keys), tasks from stepping_django.tasks."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["stepping_django"])
