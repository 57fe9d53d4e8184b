"""st.Cache: names the state of one vertex (usually an integrate) so it can be read later.

    cache = st.Cache[ReceiptItem]()
    ...inside the query:  _ = cache[items](lambda z: st.integrate(z))
    ...anywhere later:    cache.zset(store)

The lambda must build exactly one vertex that keeps one state; compiling the query binds
the cache to that state's table, which another process can read with no waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from stepping_django.engine.graph import CompileError, Stream
from stepping_django.engine.stores.base import StateSpec, StateView

T = TypeVar("T")


class Cache(Generic[T]):
    def __init__(self) -> None:
        self.spec: StateSpec | None = None

    def __getitem__(self, z: Any) -> Callable[[Callable[[Any], Any]], Any]:
        def attach(fn: Callable[[Any], Any]) -> Any:
            out = fn(z)
            if not isinstance(z, Stream):
                return out
            if not isinstance(out, Stream) or len(out.vertex.states) != 1:
                raise CompileError(
                    "Cache: the function must build one vertex that keeps one state, "
                    "e.g. lambda z: st.integrate(z)"
                )
            self.spec = out.vertex.states[0]
            z.builder.caches.append(out.vertex)
            return out

        return attach

    def zset(self, store: Any) -> StateView:
        if self.spec is None:
            raise CompileError("Cache.zset: the query that fills this cache has not been compiled")
        return StateView(store.state(self.spec))
