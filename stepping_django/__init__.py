"""stepping_django: incremental views over Django models, kept fresh by DBSP.

The engine (`stepping_django.engine`) imports nothing from Django, so
`from stepping_django import engine as st` works in any Python process. The Django-facing
names are loaded on first use.
"""

from typing import Any

__all__ = ["apply_pending", "incremental_view", "notify"]


def __getattr__(name: str) -> Any:
    if name == "incremental_view":
        from stepping_django.declare import incremental_view

        return incremental_view
    if name == "notify":
        from stepping_django.capture import notify

        return notify
    if name == "apply_pending":
        from stepping_django.apply import apply_pending

        return apply_pending
    raise AttributeError(f"module 'stepping_django' has no attribute {name!r}")
