"""Run by test_postgres in a subprocess (a hang is then a timeout, not a stuck suite): one
change of tens of MB written in one iteration's pipeline and read back; prints the rows
read and the total length of their text."""

from __future__ import annotations

import sys
import types

from stepping_django import engine as st
from stepping_django.engine.stores.base import StateSpec


class Note(st.Data):
    key: int
    text: str


BY_KEY = st.Index.pick(Note, lambda n: n.key)
SPEC = StateSpec("notes", indexes=(BY_KEY,))


def main(url: str, rows: int, size: int) -> None:
    graph = types.SimpleNamespace(states=(SPEC,))
    with st.connection_postgres(url) as conn:
        store = st.StorePostgres.from_graph(conn, graph, create_tables=True)
        state = store.state(SPEC)
        store.begin(st.Time(input_time=1, frontier=0, flush_every_set=False))
        notes = {Note(key=i, text=f"{i:08d}" * (size // 8)): 1 for i in range(rows)}
        state.add(st.ZSetPython(notes))
        store.commit(st.Time(input_time=1, frontier=0, flush_every_set=False))
        stored = state.zset()
    print(len(stored.data), sum(len(n.text) for n in stored.data))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
