"""The C row encoder (_speedups.c); serialize.py wires it and is its reference."""

from collections.abc import Callable
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
