"""The demo project: a small shop whose incremental views are kept fresh on SQLite."""

from demo_project.celery import app as celery_app

__all__ = ["celery_app"]
