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
import operator
import struct
import uuid
from types import ModuleType
from typing import Any

import msgpack

from stepping_django.engine.data import (
    EMPTY,
    Data,
    Empty,
    Pair,
    UnsupportedType,
    settle,
    speedups,
)

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
    """The reference encoder (msgpack's packer with `_default`); `_enc` gives the same bytes
    faster for the common types and falls back to this for the rest."""
    return msgpack.packb(_nz(value), default=_default, use_bin_type=True, strict_types=True)  # type: ignore[no-any-return]


def _nz(v: Any) -> Any:
    """-0.0 == 0.0, so they must be one row with one encoding: adding 0.0 makes -0.0 0.0.
    msgpack packs floats itself, so every list handed to it goes through this."""
    return v + 0.0 if type(v) is float else v


# -- fast encoder -----------------------------------------------------------------------------
# msgpack written by hand for the types rows are made of: one Python call per value instead of
# a packer, an ExtType and a nested packb per extension value. Byte for byte what `_pack` gives
# (tests/engine/test_serialize_fast.py checks it), so identities never depend on the path.

_B = struct.Struct(">BB").pack
_H = struct.Struct(">BH").pack
_I = struct.Struct(">BI").pack
_Q = struct.Struct(">BQ").pack
_b = struct.Struct(">Bb").pack
_h = struct.Struct(">Bh").pack
_i = struct.Struct(">Bi").pack
_q = struct.Struct(">Bq").pack
_d = struct.Struct(">Bd").pack
_SMALL_INTS = {v: bytes([v & 0xFF]) for v in range(-32, 128)}


def _enc_int(v: int) -> bytes:
    b = _SMALL_INTS.get(v)
    if b is not None:
        return b
    if v > 0:
        if v < 0x100:
            return _B(0xCC, v)
        if v < 0x10000:
            return _H(0xCD, v)
        if v < 0x100000000:
            return _I(0xCE, v)
        if v < 0x10000000000000000:
            return _Q(0xCF, v)
    else:
        if v >= -0x80:
            return _b(0xD0, v)
        if v >= -0x8000:
            return _h(0xD1, v)
        if v >= -0x80000000:
            return _i(0xD2, v)
        if v >= -0x8000000000000000:
            return _q(0xD3, v)
    return _ext(EXT_BIGINT, str(v).encode())


def _enc_float(v: float) -> bytes:
    return _d(0xCB, v + 0.0)  # -0.0 is 0.0 (see _nz)


def _enc_str(v: str) -> bytes:
    try:
        b = v.encode("utf-8")
    except UnicodeEncodeError:
        return _pack(v)
    n = len(b)
    if n < 32:
        return bytes((0xA0 | n,)) + b
    if n < 0x100:
        return _B(0xD9, n) + b
    if n < 0x10000:
        return _H(0xDA, n) + b
    return _I(0xDB, n) + b


def _enc_bytes(v: bytes) -> bytes:
    n = len(v)
    if n < 0x100:
        return _B(0xC4, n) + v
    if n < 0x10000:
        return _H(0xC5, n) + v
    return _I(0xC6, n) + v


def _array_head(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return _H(0xDC, n)
    return _I(0xDD, n)


_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}


def _ext(code: int, body: bytes) -> bytes:
    n = len(body)
    fixed = _FIXEXT.get(n)
    if fixed is not None:
        return bytes((fixed, code)) + body
    if n < 0x100:
        return bytes((0xC7, n, code)) + body
    if n < 0x10000:
        return _H(0xC8, n) + bytes((code,)) + body
    return _I(0xC9, n) + bytes((code,)) + body


def _enc_seq(v: Any) -> bytes:
    return _array_head(len(v)) + b"".join([_enc(x) for x in v])


def _enc_pair(v: Pair[Any, Any]) -> bytes:
    return _ext(EXT_PAIR, b"\x92" + _enc(v.left) + _enc(v.right))


def _enc_uuid(v: uuid.UUID) -> bytes:
    return b"\xd8\x07" + v.bytes


def _enc_date(v: datetime.date) -> bytes:
    return _ext(EXT_DATE, _enc_int(v.toordinal()))


def _enc_datetime(v: datetime.datetime) -> bytes:
    return _ext(EXT_DATETIME, v.isoformat().encode())


def _enc_data(row: Any) -> bytes:
    cached = row.__dict__.get("_st_bytes")  # a dict miss is cheaper than an AttributeError
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    cls = type(row)
    # The class's own plan, never an inherited one: a subclass has its own id and fields.
    plan = cls.__dict__.get("__st_enc__")
    if plan is None:
        fields = cls.__st_fields__
        get = operator.attrgetter(*fields) if fields else (lambda r: ())
        head = _array_head(len(fields) + 1) + _enc_int(class_id(cls))
        plan = (get, head, len(fields) == 1)
        type.__setattr__(cls, "__st_enc__", plan)
    get, head, single = plan
    values = get(row)
    try:
        if single:
            body = head + _enc(values)
        else:
            body = head + b"".join([_enc(v) for v in values])
    except SerializationError as e:
        raise SerializationError(f"{cls.__qualname__}.{_failing_field(row)}: {e}") from None
    b = _ext(EXT_DATA, body)
    row.__dict__["_st_bytes"] = b
    return b


_ENCODERS: dict[type, Any] = {
    int: _enc_int,
    float: _enc_float,
    str: _enc_str,
    bytes: _enc_bytes,
    bool: lambda v: b"\xc3" if v else b"\xc2",
    type(None): lambda v: b"\xc0",
    tuple: _enc_seq,
    Pair: _enc_pair,
    uuid.UUID: _enc_uuid,
    datetime.date: _enc_date,
    datetime.datetime: _enc_datetime,
}


def _enc(value: Any) -> bytes:
    f = _ENCODERS.get(type(value))
    if f is not None:
        return f(value)  # type: ignore[no-any-return]
    if isinstance(value, Data):
        return _enc_data(value)
    return _pack(value)


def _default(value: Any) -> Any:
    t = type(value)
    if t is tuple:
        return [_nz(v) for v in value]
    if isinstance(value, Data):
        fields = value.__st_fields__
        d = value.__dict__
        try:
            body = _pack([class_id(t), *(_nz(d[n]) for n in fields)])
        except SerializationError as e:
            raise SerializationError(f"{t.__qualname__}.{_failing_field(value)}: {e}") from None
        return msgpack.ExtType(EXT_DATA, body)
    if t is Pair:
        return msgpack.ExtType(EXT_PAIR, _pack([_nz(value.left), _nz(value.right)]))
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


# A row without __init__ (Data's base may be the C Row, which object.__new__ refuses).
_new_row = Data.__new__
_set_attr = object.__setattr__

# Decoded atoms that repeat a lot (ids, days), shared: they are immutable. Bounded.
_DECODED: dict[tuple[int, bytes], Any] = {}
_DECODED_MAX = 1 << 16


def _ext_hook(code: int, body: bytes) -> Any:
    if code == EXT_DATA:
        unpacked = _unpack(body)
        cls: Any = _CLASSES[unpacked[0]]
        row: Any = _new_row(cls)
        # Attribute by attribute, as the generated __init__ sets them: `row.__dict__` would
        # make the row a dict of its own.
        for name, value in zip(cls.__st_fields__, unpacked[1:]):
            _set_attr(row, name, value)
        _set_attr(row, "_st_bytes", _ext(EXT_DATA, body))  # written back as read
        _set_attr(row, "_st_id", None)
        # The same hash as the generated __init__ gives: (class id, *fields).
        try:
            _set_attr(row, "_st_hash", hash(unpacked))
        except TypeError:
            return row
        settle(row, unpacked)
        return row
    if code == EXT_UUID or code == EXT_DATE:
        key = (code, body)
        v = _DECODED.get(key)
        if v is None:
            v = (
                uuid.UUID(bytes=body)
                if code == EXT_UUID
                else datetime.date.fromordinal(_unpack(body))
            )
            if len(_DECODED) >= _DECODED_MAX:
                _DECODED.clear()
            _DECODED[key] = v
        return v
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
    """Encode a row; Data rows cache their encoding."""
    return _enc(value)


def loads(body: bytes) -> Any:
    return _unpack(body)


def identity(value: Any) -> bytes:
    """A row's stable identity: its encoding when short, else a 16-byte BLAKE2b digest.
    Data rows cache it (orderings sort by it, SQL stores key rows by it)."""
    if isinstance(value, Data):
        d = value.__dict__
        i = d.get("_st_id")
        if i is None:
            i = d["_st_id"] = identity_of_bytes(_enc_data(value))
        return i  # type: ignore[no-any-return]
    return identity_of_bytes(_enc(value))


def identity_of_bytes(b: bytes) -> bytes:
    """The identity of the row whose encoding is `b` (what `identity` gives)."""
    return (
        b if len(b) <= IDENTITY_BYTES else hashlib.blake2b(b, digest_size=IDENTITY_BYTES).digest()
    )


def register_enum(cls: type[enum.Enum]) -> int:
    return register_class(cls)


# -- C encoder ---------------------------------------------------------------------------------
# _speedups.c writes the same bytes as `_enc`, `identity` and `identity_of_bytes`, about ten
# times faster. It falls back to the Python `_enc` for what it does not handle, so that one is
# kept as `_enc_py`; once `_enc` is the C one, `_enc_data` and the other helpers reach it
# through the global name too.

_enc_py = _enc
_identity_of_bytes_py = identity_of_bytes


def _load_speedups() -> ModuleType | None:
    """The C module wired to this encoder, or None when data.py found it not built or
    turned off by STEPPING_PURE_PYTHON=1."""
    if speedups is not None:
        speedups.init(Data, Pair, uuid.UUID, SerializationError, _enc_py, _enc_data)
    return speedups


_speedups = _load_speedups()
if _speedups is not None:
    _enc = _speedups.enc
    identity = _speedups.identity
    identity_of_bytes = _speedups.identity_of_bytes
