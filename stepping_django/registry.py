"""The views of this process, by label (`"app_label.view_name"`), and the models they read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from stepping_django.declare import IncrementalView


class ViewNotFound(LookupError):
    """No view is declared under the given label."""


class ViewRegistry:
    """Views by label. A second view with a label already taken is kept aside, so the
    system checks can report both (stepping_django.E004) instead of one silently winning."""

    def __init__(self) -> None:
        self._views: dict[str, IncrementalView] = {}
        self.duplicates: list[IncrementalView] = []

    def register(self, view: IncrementalView) -> None:
        if view.label in self._views:
            self.duplicates.append(view)
            return
        self._views[view.label] = view
        from stepping_django import capture

        capture.views_changed()
        capture.connect_models(view.models)

    def unregister(self, label: str) -> None:
        self._views.pop(label, None)
        self.duplicates = [v for v in self.duplicates if v.label != label]
        from stepping_django import capture

        capture.views_changed()

    def get(self, label: str) -> IncrementalView:
        try:
            return self._views[label]
        except KeyError:
            known = ", ".join(sorted(self._views)) or "none"
            raise ViewNotFound(
                f"no incremental view is declared as {label!r} (declared: {known}); views are "
                "found in <app>/incremental.py of each installed app"
            ) from None

    def views(self) -> list[IncrementalView]:
        """The usable views (declared without problems), in declaration order."""
        return [v for v in self._views.values() if v.graph is not None]

    def all_views(self) -> list[IncrementalView]:
        """Every declared view, including those the system checks report."""
        return [*self._views.values(), *self.duplicates]

    def reading(self, model: type[models.Model]) -> list[IncrementalView]:
        """Usable views with an input of `model` (its concrete model)."""
        concrete = model._meta.concrete_model
        return [v for v in self.views() if concrete in v.models]

    def models(self) -> set[type[models.Model]]:
        return {m for v in self.views() for m in v.models}


registry = ViewRegistry()
