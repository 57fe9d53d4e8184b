"""The `st` facade: `from stepping_django import engine as st`.

A pure-Python DBSP engine with the public API of the `stepping` package and of the seed
page on storing state. It imports nothing from Django.
"""

from stepping_django.engine.cache import Cache as Cache
from stepping_django.engine.data import EMPTY as EMPTY
from stepping_django.engine.data import Data as Data
from stepping_django.engine.data import Empty as Empty
from stepping_django.engine.data import Pair as Pair
from stepping_django.engine.data import UnsupportedType as UnsupportedType
from stepping_django.engine.dot import to_dot as to_dot
from stepping_django.engine.dot import to_text as to_text
from stepping_django.engine.dot import write_png as write_png
from stepping_django.engine.graph import CompileError as CompileError
from stepping_django.engine.graph import Graph as Graph
from stepping_django.engine.graph import at_compile_time as at_compile_time
from stepping_django.engine.graph import compile as compile
from stepping_django.engine.graph import compile_lazy as compile_lazy
from stepping_django.engine.graph import compile_typeof as compile_typeof
from stepping_django.engine.index import Index as Index
from stepping_django.engine.operators.add import add as add
from stepping_django.engine.operators.add import add3 as add3
from stepping_django.engine.operators.count import count as count
from stepping_django.engine.operators.delay import delay as delay
from stepping_django.engine.operators.delay import delay_indexed as delay_indexed
from stepping_django.engine.operators.differentiate import differentiate as differentiate
from stepping_django.engine.operators.distinct import distinct as distinct
from stepping_django.engine.operators.distinct import haitch as haitch
from stepping_django.engine.operators.filter import filter as filter
from stepping_django.engine.operators.first_n import first_n as first_n
from stepping_django.engine.operators.group import flatten as flatten
from stepping_django.engine.operators.group import group as group
from stepping_django.engine.operators.group import per_group as per_group
from stepping_django.engine.operators.group_reduce import (
    group_reduce_flatten as group_reduce_flatten,
)
from stepping_django.engine.operators.identity_print import identity_print as identity_print
from stepping_django.engine.operators.integrate import integrate as integrate
from stepping_django.engine.operators.integrate import integrate_delay as integrate_delay
from stepping_django.engine.operators.integrate import integrate_indexed as integrate_indexed
from stepping_django.engine.operators.join import join as join
from stepping_django.engine.operators.map import map as map
from stepping_django.engine.operators.map_many import map_many as map_many
from stepping_django.engine.operators.neg import neg as neg
from stepping_django.engine.operators.outer_join import outer_join as outer_join
from stepping_django.engine.operators.reduce import reduce as reduce
from stepping_django.engine.operators.transitive_closure import (
    transitive_closure as transitive_closure,
)
from stepping_django.engine.run import Action as Action
from stepping_django.engine.run import actions as actions
from stepping_django.engine.run import batched as batched
from stepping_django.engine.run import iteration as iteration
from stepping_django.engine.serialize import SerializationError as SerializationError
from stepping_django.engine.stores.base import State as State
from stepping_django.engine.stores.base import Store as Store
from stepping_django.engine.stores.memory import StorePython as StorePython
from stepping_django.engine.stores.postgres import ConnPostgres as ConnPostgres
from stepping_django.engine.stores.postgres import StorePostgres as StorePostgres
from stepping_django.engine.stores.postgres import connection_postgres as connection_postgres
from stepping_django.engine.stores.sql import MissingTable as MissingTable
from stepping_django.engine.stores.sql import StoreSQL as StoreSQL
from stepping_django.engine.stores.sqlite import ConnSQLite as ConnSQLite
from stepping_django.engine.stores.sqlite import StoreSQLite as StoreSQLite
from stepping_django.engine.stores.sqlite import connection_sqlite as connection_sqlite
from stepping_django.engine.stores.wait import FrontierTimeout as FrontierTimeout
from stepping_django.engine.time import Time as Time
from stepping_django.engine.zset import MATCH_ALL as MATCH_ALL
from stepping_django.engine.zset import ZSet as ZSet
from stepping_django.engine.zset import ZSetPython as ZSetPython

#: How long an iteration waits for a table to reach its frontier before giving up.
#: Read at each wait, so setting it at run time takes effect.
MAX_SLEEP_SECS: float = 5.0
