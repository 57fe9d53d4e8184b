"""The C row encoder, row hash and row __init__ (_speedups.c); serialize.py and data.py wire
them and are their reference."""

from collections.abc import Callable, Iterable
from typing import Any

def init(
    data: type,
    pair: type,
    uuid: type,
    error: type[Exception],
    enc: Callable[[Any], bytes],
    enc_data: Callable[[Any], bytes],
    /,
) -> None: ...
def enc(value: Any, /) -> bytes: ...
def identity(value: Any, /) -> bytes: ...
def identity_of_bytes(b: bytes, /) -> bytes: ...
def settle(row: Any, values: tuple[Any, ...], /) -> None: ...
def set_hash_fallback(fn: Callable[[Any], int], /) -> None: ...
def row_hashes(row: Any, /) -> tuple[int, int]: ...

class Row:
    """The base of st.Data: its hash, in C."""

class RowInit:
    """A row class's __init__ in C, doing what the generated Python one (`__wrapped__`) does."""

    __wrapped__: Callable[..., None]
    def __call__(self, row: Any, /, **fields: Any) -> None: ...

def row_init(
    wrapped: Callable[..., None],
    names: tuple[str, ...],
    defaults: tuple[Any, ...],
    required: object,
    kinds: bytes,
    cid: int,
    decimal: type,
    /,
) -> RowInit: ...
def group_accumulate(
    items: dict[Any, int], by: Callable[[Any], Any], pick: Callable[[Any], Any], /
) -> dict[Any, list[Any]]: ...
def group_merge(
    acc: dict[Any, list[Any]], current: dict[Any, dict[Any, int]], zero: Callable[[], Any], /
) -> tuple[dict[Any, int], dict[Any, int]]: ...
def add_into(target: dict[Any, int], items: dict[Any, int], /) -> None: ...
def file_weights(
    buckets: dict[Any, dict[Any, int]], f: Callable[[Any], Any], items: dict[Any, int], /
) -> None: ...
def note_keys(
    keys: Iterable[Any],
    buckets: dict[Any, dict[Any, int]],
    known: dict[Any, int],
    pairing: bool,
    replaced: list[tuple[Any, Any, int]],
    /,
) -> None: ...

class KnownRows:
    """stores/known.py's KnownRows, in C."""

    limit: int
    def __init__(self, loads: Callable[[bytes], Any], limit: int) -> None: ...
    def load(self, row_id: Any, data: Any, /) -> Any: ...
    def id(self, row: Any, /) -> bytes: ...
    def keep(self, rid: bytes, row: Any, /) -> None: ...
    def get(self, rid: bytes, /) -> Any: ...
    def id_of(self, row: Any, /) -> bytes | None: ...
    def id_and_data(self, row: Any, /) -> tuple[bytes, bytes]: ...
    def load_by(
        self, found: Iterable[tuple[Any, Any, int]], f: Callable[[Any], Any], /
    ) -> dict[Any, dict[Any, int]]: ...
    def replacements(
        self, replaced: Iterable[tuple[Any, Any, int]], bind: Callable[[bytes], Any] | None, /
    ) -> list[tuple[Any, Any, int, Any]]: ...

def write_row(
    writers: tuple[
        tuple[
            Callable[[Any], Any],
            bool,
            tuple[tuple[Callable[[Any], Any] | None, Callable[[Any], Any] | None], ...],
        ],
        ...,
    ],
    bind: Callable[[bytes], Any] | None,
    row: Any,
    row_id: bytes,
    c: int,
    data: bytes | None = None,
    /,
) -> tuple[Any, ...]: ...

class Pair:
    """data.py's Pair (PairPy), in C."""

    left: Any
    right: Any
    def __init__(self, left: Any, right: Any) -> None: ...

def encode_parts(
    keys: Iterable[Any], composite: bool, encodes: tuple[Callable[[Any], Any] | None, ...], /
) -> tuple[list[tuple[Any, ...]], list[Any]]: ...
def bind_flat(keys: list[tuple[Any, ...]], params: tuple[Any, ...], /) -> list[Any]: ...
def split_pending(
    pending: dict[Any, int], known: dict[Any, int], /
) -> tuple[list[tuple[Any, int]], list[tuple[Any, int]], list[Any]]: ...
def ids_by_delta(
    changes: list[tuple[Any, int]], id_of: Callable[[Any], bytes], /
) -> tuple[list[bytes], dict[int, list[bytes]]]: ...
def rows_left(
    write_row: Callable[..., tuple[Any, ...]],
    ids: list[bytes],
    changes: list[tuple[Any, int]],
    gone: set[bytes],
    /,
) -> list[tuple[Any, ...]]: ...
def by_key(
    f: Callable[[Any], Any], items: dict[Any, int], /
) -> dict[Any, list[tuple[Any, int]]]: ...
def join_pairs(
    found: dict[Any, dict[Any, int]],
    keyed: dict[Any, list[tuple[Any, int]]],
    keyed_left: bool,
    /,
) -> dict[Any, int]: ...
