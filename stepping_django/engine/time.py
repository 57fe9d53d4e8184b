"""Time: which changes an iteration applies, and which it must wait for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Time:
    """`input_time`: this iteration's time (-1: untimed). `frontier`: read a table only once
    it has recorded this time (-1: no wait). `flush_every_set`: False commits all tables at
    the end (all or nothing); True commits each table as soon as its vertex is done with it
    (pipelined, not atomic); None never flushes (the caller commits)."""

    input_time: int = -1
    frontier: int = -1
    flush_every_set: bool | None = False
