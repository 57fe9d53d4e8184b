"""`@incremental_view`: a query function over models becomes a maintained view.

    @incremental_view
    def basket_totals(
        products: st.ZSet[Product], line_items: st.ZSet[LineItem]
    ) -> st.ZSet[BasketTotal]:
        ...  # engine operators

Each parameter annotated `st.ZSet[SomeModel]` (or `st.ZSet["app.Model"]`) is one input,
whose rows are the model's generated row class (see `rows.py`). Declaring never raises
for a bad declaration: the problem is kept on the view and reported by the system checks
(`manage.py check`), naming the view and the parameter; such a view is not maintained.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, overload

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, models

from stepping_django import engine as st
from stepping_django.engine.naming import digest
from stepping_django.rows import UnsupportedField, row_class

#: Names the output cache table uses for its own columns.
RESERVED_COLUMNS = ("row_id", "weight", "data")


@dataclass(frozen=True)
class Problem:
    """A declaration problem, reported by the system checks under `id`."""

    id: str
    message: str
    hint: str = ""


@dataclass(frozen=True)
class Param:
    name: str
    model: type[models.Model] | None


def _resolve(annotation: Any, func: Callable[..., Any]) -> Any:
    if isinstance(annotation, str):
        return eval(annotation, getattr(func, "__globals__", {}), {})  # noqa: S307
    return annotation


def _zset_arg(annotation: Any) -> Any:
    """X of `st.ZSet[X]`, or raise TypeError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (st.ZSet, st.ZSetPython) and len(args) == 1:
        return args[0]
    raise TypeError(f"{annotation!r} is not st.ZSet[...]")


def _model_of(arg: Any) -> type[models.Model]:
    if isinstance(arg, typing.ForwardRef):
        arg = arg.__forward_arg__
    if isinstance(arg, str):
        return apps.get_model(arg)  # raises LookupError / ValueError
    if isinstance(arg, type) and issubclass(arg, models.Model):
        if arg._meta.abstract:
            raise TypeError(f"{arg.__qualname__} is an abstract model")
        return arg
    raise TypeError(f"{arg!r} is not a Django model")


class IncrementalView:
    """A declared view: its inputs, compiled graph, output type and output model.

    `view.objects` is the manager of the output cache (an unmanaged model with one typed
    column per field of the output row, plus `weight`). Calling the view with concrete
    Z-sets computes it from scratch.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        app_label: str | None = None,
        parallel: bool = False,
    ) -> None:
        self.func = func
        self.name = name or func.__name__
        #: Apply successive batches on several workers at once (pipeline.py; Postgres).
        self.parallel = parallel
        if app_label is None:
            config = apps.get_containing_app_config(func.__module__)
            app_label = config.label if config is not None else func.__module__.split(".")[0]
        self.app_label = app_label
        self.label = f"{app_label}.{self.name}"
        self.problems: list[Problem] = []
        self.params: list[Param] = []
        self.output_type: Any = object
        self.graph: st.Graph | None = None
        self.version = ""
        self.table_prefix = f"sdv_{digest(self.label, 8)}_"
        self._model: type[models.Model] | None = None
        self._declare()

    def __repr__(self) -> str:
        return f"<IncrementalView {self.label}>"

    def __call__(self, *zsets: Any) -> Any:
        return self.func(*zsets)

    # -- declaration ---------------------------------------------------------------------

    def _declare(self) -> None:
        func = self.func
        if not self.name.isidentifier():
            # The name becomes part of the cache table's name, which Django's quote_name
            # does not escape: refuse quotes, semicolons, spaces rather than trust them.
            self.problems.append(
                Problem(
                    "stepping_django.E010",
                    f"view {self.label!r}: the name {self.name!r} is not a Python identifier",
                    "Name the view with letters, digits and underscores (name=...).",
                )
            )
            return
        raw = dict(getattr(func, "__annotations__", {}))
        row_annotations: dict[str, Any] = {}
        for p in inspect.signature(func).parameters.values():
            model = self._param_model(p.name, raw.get(p.name, inspect.Parameter.empty))
            self.params.append(Param(p.name, model))
            if model is not None:
                row_annotations[p.name] = st.ZSet[row_class(model)]  # type: ignore[misc]
        if not self.params:
            self.problems.append(
                Problem(
                    "stepping_django.E001",
                    f"view {self.label} has no parameters; it needs one input per model",
                    "Add a parameter annotated st.ZSet[SomeModel].",
                )
            )
        self._declare_output(raw.get("return", inspect.Parameter.empty))
        if self.problems:
            return
        if self.output_type is not object:
            row_annotations["return"] = st.ZSet[self.output_type]  # type: ignore[name-defined]
        traced = types.FunctionType(
            func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__
        )
        traced.__qualname__ = func.__qualname__
        traced.__module__ = func.__module__
        traced.__kwdefaults__ = func.__kwdefaults__
        traced.__annotations__ = row_annotations
        try:
            graph = st.compile(traced)
        except Exception as e:  # the user's query: any error is reported, not raised
            self.problems.append(
                Problem(
                    "stepping_django.E005",
                    f"view {self.label} cannot be compiled: {type(e).__name__}: {e}",
                )
            )
            return
        if len(graph.outputs) != 1:
            self.problems.append(
                Problem(
                    "stepping_django.E006",
                    f"view {self.label} returns {len(graph.outputs)} outputs; a view has one",
                    "Return one Z-set; declare another view for the other output.",
                )
            )
            return
        for v in graph.vertices:
            v.states = tuple(replace(s, name=self.table_prefix + s.name) for s in v.states)
        self.graph = graph
        self.version = digest(
            "|".join(
                [
                    graph.identifier,
                    *(self._layout(row_class(m)) for m in self.models),
                    self._layout(self.output_type),
                ]
            ),
            16,
        )

    @staticmethod
    def _layout(tp: Any) -> str:
        from stepping_django.cache_models import row_fields

        hints = row_fields(tp)
        return (
            f"{getattr(tp, '__qualname__', tp)}({','.join(f'{k}:{v}' for k, v in hints.items())})"
        )

    def _param_model(self, name: str, annotation: Any) -> type[models.Model] | None:
        where = f"parameter {name!r} of view {self.label}"
        if annotation is inspect.Parameter.empty:
            self.problems.append(
                Problem(
                    "stepping_django.E001",
                    f"{where} has no annotation",
                    "Annotate it with the model it reads, e.g. st.ZSet[Product].",
                )
            )
            return None
        try:
            arg = _zset_arg(_resolve(annotation, self.func))
        except Exception as e:
            self.problems.append(
                Problem(
                    "stepping_django.E002",
                    f"{where}: annotation {annotation!r} is not st.ZSet[SomeModel] ({e})",
                    "Annotate it st.ZSet[SomeModel] or st.ZSet['app_label.ModelName'].",
                )
            )
            return None
        try:
            model = _model_of(arg)
        except (LookupError, ValueError, TypeError) as e:
            self.problems.append(
                Problem(
                    "stepping_django.E002",
                    f"{where} reads an unknown model: {e}",
                    "Use an installed model: st.ZSet[SomeModel] or st.ZSet['app_label.Model'].",
                )
            )
            return None
        try:
            row_class(model)
        except UnsupportedField as e:
            self.problems.append(Problem("stepping_django.E003", f"{where}: {e}"))
            return None
        return model._meta.concrete_model or model

    def _declare_output(self, annotation: Any) -> None:
        if annotation is inspect.Parameter.empty:
            return
        try:
            out = _zset_arg(_resolve(annotation, self.func))
        except Exception as e:
            self.problems.append(
                Problem(
                    "stepping_django.E007",
                    f"view {self.label}: return annotation {annotation!r} is not "
                    f"st.ZSet[SomeRow] ({e})",
                    "Annotate the return st.ZSet[SomeRow] where SomeRow is an st.Data class.",
                )
            )
            return
        if not (isinstance(out, type) and issubclass(out, st.Data)):
            self.problems.append(
                Problem(
                    "stepping_django.E007",
                    f"view {self.label}: output rows {out!r} are not an st.Data class",
                    "Map the result to an st.Data class so it can have typed columns.",
                )
            )
            return
        from stepping_django.cache_models import column_for, row_fields

        for field, tp in row_fields(out).items():
            if field in RESERVED_COLUMNS:
                self.problems.append(
                    Problem(
                        "stepping_django.E008",
                        f"view {self.label}: output field {out.__qualname__}.{field} clashes "
                        f"with a column of the cache table ({', '.join(RESERVED_COLUMNS)})",
                        "Rename the field.",
                    )
                )
            else:
                try:
                    column_for(tp, field)
                except UnsupportedField as e:
                    self.problems.append(Problem("stepping_django.E008", f"view {self.label}: {e}"))
        self.output_type = out

    # -- use -----------------------------------------------------------------------------

    @property
    def models(self) -> list[type[models.Model]]:
        """The input models, one per parameter (a model may appear twice)."""
        return [p.model for p in self.params if p.model is not None]

    @property
    def model(self) -> type[models.Model]:
        """The unmanaged model over the output cache table."""
        if self._model is None:
            if self.graph is None:
                raise RuntimeError(
                    f"view {self.label} is not usable: "
                    + "; ".join(p.message for p in self.problems)
                )
            from stepping_django.cache_models import output_model

            self._model = output_model(self)
        return self._model

    @property
    def objects(self) -> models.Manager[Any]:
        """The output cache as a queryset source: `view.objects.filter(...)`."""
        return self.model._default_manager

    def from_scratch(self, using: str = DEFAULT_DB_ALIAS) -> st.ZSetPython[Any]:
        """The view computed from the current tables, ignoring everything maintained."""
        from stepping_django.rows import zset_of

        result = self.func(*(zset_of(m, using) for m in self.models))
        return st.ZSetPython(dict(result.iter()))

    def maintained(self, using: str = DEFAULT_DB_ALIAS) -> st.ZSetPython[Any]:
        """The view as maintained in its output cache table."""
        from stepping_django.cache_models import read_output

        return read_output(self, using)


@overload
def incremental_view(func: Callable[..., Any], /) -> IncrementalView: ...


@overload
def incremental_view(
    *, name: str | None = None, app_label: str | None = None, parallel: bool = False
) -> Callable[[Callable[..., Any]], IncrementalView]: ...


def incremental_view(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    app_label: str | None = None,
    parallel: bool = False,
) -> Any:
    """Declare a view maintained from the models its parameters read.

    Args:
        func: the query; each parameter annotated `st.ZSet[SomeModel]`, the return
            annotated `st.ZSet[SomeRow]` with `SomeRow` an `st.Data` class.
        name: the view's name (default: the function's name); unique per app.
        app_label: the app the view belongs to (default: the app of the function's module).
        parallel: let several workers apply successive batches of this view at once,
            pipelined (pipeline.py). PostgreSQL only; a batch that fails part-way costs a
            rebuild of the view.

    Returns:
        The registered `IncrementalView`; read it with `view.objects`.
    """

    def declare(f: Callable[..., Any]) -> IncrementalView:
        from stepping_django.registry import registry

        view = IncrementalView(f, name=name, app_label=app_label, parallel=parallel)
        registry.register(view)
        return view

    if func is not None:
        return declare(func)
    return declare
