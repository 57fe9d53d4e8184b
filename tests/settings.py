"""Django settings for the test suite.

`default` is SQLite (in memory); `postgres` is the server at 127.0.0.1:5432 (database
`test`, trust auth), used by the tests parametrised over both. pytest-django creates the
test database `test_stepping_<pid>` on it; the Celery worker of the tests is pointed at the
same database through STEPPING_TEST_PG_NAME.
"""

import os

SECRET_KEY = "tests-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.admin",
    "django.contrib.sessions",
    "django.contrib.messages",
    "stepping_django",
    "tests.testapp",
]
PG_NAME = os.environ.get("STEPPING_TEST_PG_NAME", "test")
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    "postgres": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": PG_NAME,
        "USER": os.environ.get("STEPPING_TEST_PG_USER", "postgres"),
        "HOST": "127.0.0.1",
        "PORT": "5432",
        # One test database per test run: several runs may share the server.
        "TEST": {"NAME": f"test_stepping_{os.getpid()}"},
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The Celery test runs the writer with EAGER off and a worker on its own queue.
STEPPING = {
    "EAGER": True,
    "QUEUE": os.environ.get("STEPPING_TEST_QUEUE") or None,
    "TASK_DEDUPE_CACHE": os.environ.get("STEPPING_TEST_DEDUPE") or None,
}
ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"  # the live server of the browser test serves under it
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
CELERY_BROKER_URL = os.environ.get("STEPPING_TEST_BROKER", "redis://127.0.0.1:6379/15")
CELERY_TASK_ALWAYS_EAGER = False
# The workers of tests/django/test_parallel.py also maintain its parallel view.
_PARALLEL = bool(os.environ.get("STEPPING_TEST_PARALLEL"))
CELERY_IMPORTS = ["tests.testapp.parallel_views"] if _PARALLEL else []
# As the README recommends: a worker busy with one task reserves no other (so an idle
# worker takes the next batch of the same view).
CELERY_WORKER_PREFETCH_MULTIPLIER = 1 if _PARALLEL else 4
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Shared by the test process and its Celery worker (for TASK_DEDUPE_CACHE).
    "shared": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("STEPPING_TEST_CACHE", "redis://127.0.0.1:6379/15"),
    },
}
