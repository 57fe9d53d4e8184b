"""Rows: `Data` declarations, `Pair` and `Empty`.

Rows are immutable and hashable so that a Z-set can be a plain dict of row -> weight.
Field values are normalised to their declared types at construction, so
`Product(price=3)` and `Product(price=3.0)` are one row with one identity.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import os
import types
import typing
import uuid
from typing import Any, ClassVar, Generic, TypeVar

L = TypeVar("L")
R = TypeVar("R")

ATOM_TYPES: tuple[type, ...] = (
    str,
    int,
    float,
    bool,
    bytes,
    type(None),
    datetime.date,
    datetime.datetime,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    decimal.Decimal,
)


class UnsupportedType(TypeError):
    """A row declaration or value that cannot be stored in a Z-set."""


def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError:
        return {}


def _check_annotation(owner: str, field: str, tp: Any) -> None:
    """Refuse annotations whose values could be mutable or unserialisable."""
    if tp is Any or tp is object:
        return
    if isinstance(tp, type):
        if issubclass(tp, ATOM_TYPES) or issubclass(tp, (Data, enum.Enum, Pair, Empty)):
            return
        if tp in (tuple, frozenset):
            return
        raise UnsupportedType(
            f"{owner}.{field}: type {tp.__name__!r} is not supported in a row; use an atom "
            "(str, int, float, bool, None, date, datetime, UUID, Decimal, Enum), a tuple, "
            "a frozenset or another st.Data"
        )
    origin = typing.get_origin(tp)
    if origin in (tuple, frozenset, typing.Union, types.UnionType, Pair):
        for arg in typing.get_args(tp):
            if arg is not Ellipsis:
                _check_annotation(owner, field, arg)
        return
    if origin is typing.Literal:
        return
    raise UnsupportedType(f"{owner}.{field}: type {tp!r} is not supported in a row")


def _coercer(tp: Any) -> Any:
    """Return a function that normalises a value to `tp`, or None when none is needed."""
    members: tuple[Any, ...]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = typing.get_args(tp)
    else:
        members = (tp,)
    if float in members and int not in members:
        return _to_float
    if decimal.Decimal in members and int not in members:
        return _to_decimal
    return None


def _to_float(v: Any) -> Any:
    if type(v) is int:
        return float(v)
    return v


def _to_decimal(v: Any) -> Any:
    if type(v) is int:
        return decimal.Decimal(v)
    return v


def _load_speedups() -> types.ModuleType | None:
    """The C module, or None when it is not built or STEPPING_PURE_PYTHON=1 asks for pure
    Python (read once, here; serialize.py wires the encoder of this same module)."""
    if os.environ.get("STEPPING_PURE_PYTHON") == "1":
        return None
    try:
        from stepping_django.engine import _speedups
    except ImportError:
        return None
    return _speedups


speedups = _load_speedups()
#: Data's base: `_speedups.Row`, whose C hash reads the one the row's __init__ cached.
if typing.TYPE_CHECKING:
    _RowBase = object
else:
    _RowBase = object if speedups is None else speedups.Row


@typing.dataclass_transform(kw_only_default=True, frozen_default=True, order_default=True)
class Data(_RowBase):
    """Base of user row types: `class Product(st.Data): name: str; price: float`.

    Subclasses become frozen, keyword-only, ordered dataclasses. Fields are inherited,
    including from several bases (`class UserMeter(User, Meter)`).
    """

    __st_fields__: ClassVar[tuple[str, ...]] = ()
    __st_coerce__: ClassVar[tuple[tuple[str, Any], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, kw_only=True, order=True, eq=True)(cls)
        cls.__hash__ = _ROW_HASH  # type: ignore[method-assign]
        cls.__st_fields__ = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        hints = _field_types(cls)
        for name in cls.__st_fields__:
            if name in hints:
                _check_annotation(cls.__qualname__, name, hints[name])
        cls.__st_coerce__ = tuple(
            (name, c) for name in cls.__st_fields__ if (c := _coercer(hints.get(name))) is not None
        )
        from stepping_django.engine import serialize

        serialize.register_class(cls)
        _install_init(cls)

    def __post_init__(self) -> None:
        for name, coerce in self.__st_coerce__:
            value = self.__dict__[name]
            new = coerce(value)
            if new is not value:
                object.__setattr__(self, name, new)

    def _st_compute_hash(self) -> int:
        """The hash of a row made without the generated __init__ (decoded, unpickled,
        object.__new__), computed once and cached like that __init__ does."""
        values = [getattr(self, n) for n in self.__st_fields__]
        try:
            h = hash((type(self).__st_class_id__, *values))  # type: ignore[attr-defined]
        except TypeError as e:
            field = self._st_unhashable()
            raise UnsupportedType(f"{type(self).__qualname__}.{field}: {e}") from e
        object.__setattr__(self, "_st_hash", h)
        return h

    def _st_unhashable(self) -> str:
        """The first field whose value cannot be hashed (so cannot be in a row)."""
        for name in self.__st_fields__:
            try:
                hash(getattr(self, name))
            except TypeError:
                return name
        return "?"

    def __getstate__(self) -> dict[str, Any]:
        # Only the fields: a cached hash is only valid in the process that computed it.
        return {n: getattr(self, n) for n in self.__st_fields__}

    def __reduce__(self) -> tuple[Any, ...]:
        # The class and the fields, for every pickle protocol: copyreg's path for protocols
        # 0 and 1 cannot rebuild a subclass of a C base (_speedups.Row).
        return (_unpickle_row, (type(self), self.__getstate__()))

    def st_values(self) -> tuple[Any, ...]:
        d = self.__dict__
        return tuple(d[n] for n in self.__st_fields__)


def _unpickle_row(cls: type[Data], fields: dict[str, Any]) -> Data:
    """A pickled row, made again without __init__ (its hash is computed when first asked)."""
    row = cls.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(row, name, value)
    return row


def _py_row_hash(self: Data) -> int:
    # Set by the generated __init__; rows made another way compute it once.
    try:
        return self._st_hash  # type: ignore[no-any-return,attr-defined]
    except AttributeError:
        return self._st_compute_hash()


def _settle_py(row: Any, values: tuple[Any, ...]) -> None:
    """Pure Python leaves every row to the cyclic collector."""


#: settle(row, values): after a row's hash is cached, stop the cyclic collector tracking it
#: if nothing it holds can lead back to it (_speedups.c says how), since rows are most of
#: what the engine allocates and keeps.
settle: Any = _settle_py if speedups is None else speedups.settle

if speedups is None:
    _ROW_HASH: Any = _py_row_hash
    Data.__hash__ = _py_row_hash  # type: ignore[method-assign,assignment]
else:
    speedups.set_hash_fallback(Data._st_compute_hash)
    _ROW_HASH = _RowBase.__dict__["__hash__"]


class Pair(Generic[L, R]):
    """Two rows side by side: what join and group produce."""

    __slots__ = ("left", "right", "_h")
    left: L
    right: R

    def __init__(self, left: L, right: R) -> None:
        _set_left(self, left)
        _set_right(self, right)
        # Nearly every pair becomes a Z-set key: hash it now, once.
        values = (_PAIR_SALT, left, right)
        try:
            _set_h(self, hash(values))
        except TypeError:
            return
        settle(self, values)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_h":
            object.__setattr__(self, name, value)
            return
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __hash__(self) -> int:
        try:
            return self._h  # type: ignore[no-any-return,has-type,attr-defined]
        except AttributeError:
            h = hash((_PAIR_SALT, self.left, self.right))
            _set_h(self, h)
            return h

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.left == other.left and self.right == other.right  # type: ignore[attr-defined,no-any-return]

    def __lt__(self, other: Pair[L, R]) -> bool:
        return (self.left, self.right) < (other.left, other.right)  # type: ignore[operator]

    def __repr__(self) -> str:
        return f"Pair(left={self.left!r}, right={self.right!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.left, self.right))


_PAIR_SALT = 0x9A1E
_set_left: Any = Pair.__dict__["left"].__set__
_set_right: Any = Pair.__dict__["right"].__set__
_set_h: Any = Pair.__dict__["_h"].__set__

#: The Python Pair: the reference for `_speedups.Pair`, which takes its name where the C
#: module is built (a pair is made for every row a join or a group outputs).
PairPy = Pair
if speedups is not None and not typing.TYPE_CHECKING:
    Pair = speedups.Pair  # noqa: F811


class Empty:
    """The right side of an outer-join row that has no match."""

    __slots__ = ()
    _instance: ClassVar[Empty | None] = None

    def __new__(cls) -> Empty:
        if cls._instance is None:
            cls._instance = object.__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "EMPTY"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Empty)

    def __hash__(self) -> int:
        return 0x5E7EE

    def __lt__(self, other: object) -> bool:
        return False

    def __reduce__(self) -> tuple[Any, ...]:
        return (Empty, ())


EMPTY = Empty()


def _install_init(cls: type) -> None:
    """Replace the dataclass `__init__` of `cls` by one that sets the fields straight into
    the instance dict, normalises int -> float/Decimal inline, caches the row's hash (every
    row is hashed: Z-sets are dicts) and `settle`s the row. The semantics are the
    dataclass's: keyword-only, defaults, then the class's own `__post_init__` if it has one.
    Classes with `default_factory` or `init=False` fields keep the dataclass `__init__`."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [f.name for f in fields]
    initvar = getattr(dataclasses, "_FIELD_INITVAR", None)
    has_initvar = any(
        getattr(f, "_field_type", None) is initvar
        for f in cls.__dataclass_fields__.values()  # type: ignore[attr-defined]
    )
    if has_initvar or any(
        not f.init
        or f.default_factory is not dataclasses.MISSING
        or not f.name.isidentifier()
        or f.name.startswith("_st")
        or f.name == "self"
        for f in fields
    ):
        return
    ns: dict[str, Any] = {
        "_hash": hash,
        "_int": int,
        "_float": float,
        "_Decimal": decimal.Decimal,
        "_TypeError": TypeError,
        "_set": object.__setattr__,
        "_settle": settle,
        "_cid": cls.__st_class_id__,  # type: ignore[attr-defined]
    }
    params = []
    for f in fields:
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            ns[f"_st_default_{f.name}"] = f.default
            params.append(f"{f.name}=_st_default_{f.name}")
    body = []
    for name, coerce in cls.__st_coerce__:  # type: ignore[attr-defined]
        if coerce is _to_float:
            body.append(f"    if type({name}) is _int: {name} = _float({name})")
        elif coerce is _to_decimal:
            body.append(f"    if type({name}) is _int: {name} = _Decimal({name})")
        else:
            ns[f"_st_coerce_{name}"] = coerce
            body.append(f"    {name} = _st_coerce_{name}({name})")
    # object.__setattr__ keeps the attributes inline (no per-row dict object): half the
    # memory of a row, and far less for the cyclic collector to walk. The encoding and the
    # identity cached later get their places now (None: not made yet): CPython gives an
    # instance room for one attribute beyond those its class's instances already have, and
    # a second one set later turns the row's attributes into a dict of their own.
    body += [f"    _set(self, {n!r}, {n})" for n in names]
    body += ["    _set(self, '_st_bytes', None)", "    _set(self, '_st_id', None)"]
    own_post_init = cls.__post_init__ is not Data.__post_init__  # type: ignore[attr-defined]
    if own_post_init:
        body.append("    self.__post_init__()")
        values = ", ".join(f"self.{n}" for n in names)
    else:
        values = ", ".join(names)
    body += [
        "    try:",
        f"        _values = (_cid, {values}{',' if len(names) == 1 else ''})",
        "        _set(self, '_st_hash', _hash(_values))",
        "        _settle(self, _values)",
        "    except _TypeError:",
        "        pass",
    ]
    sig = ", ".join(["self", "*", *params]) if params else "self"
    src = f"def __init__({sig}) -> None:\n" + "\n".join(body) + "\n"
    exec(src, ns)
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = _in_c(init, cls, fields, own_post_init)  # type: ignore[misc]


#: A field without default, for `_speedups.row_init`.
_REQUIRED = object()
_COERCE_KINDS = {_to_float: 1, _to_decimal: 2}


def _in_c(init: Any, cls: type, fields: tuple[Any, ...], own_post_init: bool) -> Any:
    """`init`, or the C __init__ doing the same where the C module is built and the class
    has no `__post_init__` of its own (rows are built by the thousand in user functions)."""
    coerce = dict(cls.__st_coerce__)  # type: ignore[attr-defined]
    if speedups is None or own_post_init or any(c not in _COERCE_KINDS for c in coerce.values()):
        return init
    return speedups.row_init(
        init,
        tuple(f.name for f in fields),
        tuple(_REQUIRED if f.default is dataclasses.MISSING else f.default for f in fields),
        _REQUIRED,
        bytes(_COERCE_KINDS[coerce[f.name]] if f.name in coerce else 0 for f in fields),
        cls.__st_class_id__,  # type: ignore[attr-defined]
        decimal.Decimal,
    )
