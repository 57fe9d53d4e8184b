"""Deterministic, positional msgpack for rows, and their stable identity.

Equal rows give equal bytes in every process: `Data` fields are written by position,
frozensets in the order of their encoded members, and classes by a 32-bit id derived from
their module and qualified name (never Python's salted `hash`). Decoding needs the row
classes to be imported, which they are wherever the query that uses them is.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import hashlib
import uuid
from typing import Any

import msgpack

from stepping_django.engine.data import EMPTY, Data, Empty, Pair, UnsupportedType

EXT_DATA = 1
EXT_PAIR = 2
EXT_EMPTY = 3
EXT_FROZENSET = 4
EXT_DATE = 5
EXT_DATETIME = 6
EXT_UUID = 7
EXT_DECIMAL = 8
EXT_ENUM = 9
EXT_BIGINT = 10
EXT_TIME = 11
EXT_TIMEDELTA = 12

IDENTITY_BYTES = 16

_CLASSES: dict[int, type] = {}
_CLASS_KEYS: dict[int, str] = {}


class SerializationError(TypeError):
    """A value that cannot be written to a store, named by where it was found."""


def class_key(cls: type) -> str:
    module = cls.__module__
    if module == "__mp_main__":
        module = "__main__"
    return f"{module}.{cls.__qualname__}"


def class_id(cls: type) -> int:
    try:
        return cls.__dict__["__st_class_id__"]  # type: ignore[no-any-return]
    except KeyError:
        return register_class(cls)


def register_class(cls: type) -> int:
    """Make `cls` decodable; a later class with the same module and name replaces it."""
    key = class_key(cls)
    cid = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big")
    known = _CLASS_KEYS.get(cid)
    if known is not None and known != key:
        raise UnsupportedType(f"row classes {known} and {key} have the same id; rename one")
    _CLASSES[cid] = cls
    _CLASS_KEYS[cid] = key
    type.__setattr__(cls, "__st_class_id__", cid)
    return cid


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, default=_default, use_bin_type=True, strict_types=True)  # type: ignore[no-any-return]


def _default(value: Any) -> Any:
    t = type(value)
    if t is tuple:
        return list(value)
    if isinstance(value, Data):
        fields = value.__st_fields__
        d = value.__dict__
        try:
            body = _pack([class_id(t), *(d[n] for n in fields)])
        except SerializationError as e:
            raise SerializationError(f"{t.__qualname__}.{_failing_field(value)}: {e}") from None
        return msgpack.ExtType(EXT_DATA, body)
    if t is Pair:
        return msgpack.ExtType(EXT_PAIR, _pack([value.left, value.right]))
    if t is Empty:
        return msgpack.ExtType(EXT_EMPTY, b"")
    if t is frozenset:
        return msgpack.ExtType(EXT_FROZENSET, _pack(sorted(_pack(v) for v in value)))
    if t is datetime.datetime:
        return msgpack.ExtType(EXT_DATETIME, value.isoformat().encode())
    if t is datetime.date:
        return msgpack.ExtType(EXT_DATE, _pack(value.toordinal()))
    if t is datetime.time:
        return msgpack.ExtType(EXT_TIME, value.isoformat().encode())
    if t is datetime.timedelta:
        return msgpack.ExtType(
            EXT_TIMEDELTA, _pack([value.days, value.seconds, value.microseconds])
        )
    if t is uuid.UUID:
        return msgpack.ExtType(EXT_UUID, value.bytes)
    if t is decimal.Decimal:
        return msgpack.ExtType(EXT_DECIMAL, _canonical_decimal(value).encode())
    if isinstance(value, enum.Enum):
        return msgpack.ExtType(EXT_ENUM, _pack([class_id(t), value.value]))
    if t is int:
        return msgpack.ExtType(EXT_BIGINT, str(value).encode())
    if isinstance(value, (int, float, str, bytes, tuple)):
        raise SerializationError(
            f"value {value!r} of subclass {t.__qualname__} is not supported; convert it first"
        )
    raise SerializationError(f"value of type {t.__qualname__} cannot be stored in a row: {value!r}")


def _canonical_decimal(d: decimal.Decimal) -> str:
    """One text per value: Decimal("1.0") == Decimal("1.00") must be one row, so trailing
    zeros go (exactly, without the context's rounding), and -0 is 0."""
    if not d.is_finite():
        return str(d)
    sign, digits, exponent = d.as_tuple()
    if not any(digits):
        return "0"
    end = len(digits)
    while digits[end - 1] == 0:
        end -= 1
    return str(decimal.Decimal((sign, digits[:end], int(exponent) + len(digits) - end)))


def _failing_field(row: Data) -> str:
    for name in row.__st_fields__:
        try:
            _pack(row.__dict__[name])
        except SerializationError:
            return name
    return "?"


def _ext_hook(code: int, body: bytes) -> Any:
    if code == EXT_DATA:
        cid, *values = _unpack(body)
        cls: Any = _CLASSES[cid]
        row: Any = object.__new__(cls)
        row.__dict__.update(zip(cls.__st_fields__, values))
        return row
    if code == EXT_PAIR:
        left, right = _unpack(body)
        return Pair(left, right)
    if code == EXT_EMPTY:
        return EMPTY
    if code == EXT_FROZENSET:
        return frozenset(_unpack(b) for b in _unpack(body))
    if code == EXT_DATETIME:
        return datetime.datetime.fromisoformat(body.decode())
    if code == EXT_DATE:
        return datetime.date.fromordinal(_unpack(body))
    if code == EXT_TIME:
        return datetime.time.fromisoformat(body.decode())
    if code == EXT_TIMEDELTA:
        days, seconds, micros = _unpack(body)
        return datetime.timedelta(days=days, seconds=seconds, microseconds=micros)
    if code == EXT_UUID:
        return uuid.UUID(bytes=body)
    if code == EXT_DECIMAL:
        return decimal.Decimal(body.decode())
    if code == EXT_ENUM:
        cid, value = _unpack(body)
        return _CLASSES[cid](value)
    if code == EXT_BIGINT:
        return int(body.decode())
    raise SerializationError(f"unknown msgpack extension {code}")


def _unpack(body: bytes) -> Any:
    return msgpack.unpackb(
        body, ext_hook=_ext_hook, use_list=False, raw=False, strict_map_key=False
    )


def dumps(value: Any) -> bytes:
    """Encode a row; Data and Pair rows cache their encoding."""
    if isinstance(value, Data):
        d = value.__dict__
        try:
            return d["_st_bytes"]  # type: ignore[no-any-return]
        except KeyError:
            b = _pack(value)
            object.__setattr__(value, "_st_bytes", b)
            return b
    return _pack(value)


def loads(body: bytes) -> Any:
    return _unpack(body)


def identity(value: Any) -> bytes:
    """A row's stable identity: its encoding when short, else a 16-byte BLAKE2b digest."""
    b = dumps(value)
    if len(b) <= IDENTITY_BYTES:
        return b
    return hashlib.blake2b(b, digest_size=IDENTITY_BYTES).digest()


def register_enum(cls: type[enum.Enum]) -> int:
    return register_class(cls)
