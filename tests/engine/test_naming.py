"""Vertex and table names: stable across processes, changed exactly downstream of an edit.

The queries live in module files written to a temporary directory, in versions that
differ by one edit, and are compiled in fresh interpreters (with different hash seeds),
imported as modules or run as `__main__`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from stepping_django import engine as st
from tests.engine.operators.driver import Item

REPO = Path(__file__).resolve().parents[2]

HEADER = """\
from stepping_django import engine as st


class Row(st.Data):
    a: int
    b: int


def dump(graph):
    import json

    return json.dumps(
        {
            "vertices": [[v.kind, v.name] for v in graph.vertices],
            "states": [s.name for s in graph.states],
        }
    )
"""

QUERY = """
def query(rows: st.ZSet[Row]):
    bumped = st.map(rows, f=lambda r: Row(a=r.a, b=r.b + 1))
    kept = st.filter(bumped, f=lambda r: r.a > 0)
    others = st.map(rows, f=lambda r: r.b)
    return st.distinct(kept), st.count(others)
"""

MAIN = """
if __name__ == "__main__":
    print(dump(st.compile(query)))
"""

Names = dict[str, list[Any]]


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(HEADER + textwrap.dedent(body) + MAIN)
    return path


def compile_in_subprocess(tmp_path: Path, module: str, *, as_main: bool = False) -> Names:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}", "PYTHONHASHSEED": "0"}
    if as_main:
        env["PYTHONHASHSEED"] = "12345"
        args = [sys.executable, str(tmp_path / f"{module}.py")]
    else:
        code = f"import {module}; from stepping_django import engine as st; "
        code += f"print({module}.dump(st.compile({module}.query)))"
        args = [sys.executable, "-c", code]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    names: Names = json.loads(done.stdout)
    return names


def by_kind(names: Names) -> list[tuple[str, str]]:
    return [(kind, name) for kind, name in names["vertices"]]


def test_same_query_in_two_processes_gets_the_same_names(tmp_path: Path) -> None:
    write(tmp_path, "version_a", QUERY)
    first = compile_in_subprocess(tmp_path, "version_a")
    second = compile_in_subprocess(tmp_path, "version_a", as_main=True)
    assert first == second
    assert len(first["states"]) == 2  # distinct's integral, count's total


def test_names_do_not_depend_on_the_module_name_or_being_main(tmp_path: Path) -> None:
    write(tmp_path, "version_a", QUERY)
    write(tmp_path, "elsewhere", QUERY)
    imported = compile_in_subprocess(tmp_path, "version_a")
    as_main = compile_in_subprocess(tmp_path, "elsewhere", as_main=True)
    assert imported == as_main


def test_names_do_not_depend_on_local_variable_or_parameter_names(tmp_path: Path) -> None:
    renamed = (
        QUERY.replace("bumped", "changed")
        .replace("kept", "positive")
        .replace("others", "bs")
        .replace("rows", "inputs")
    )
    assert renamed != QUERY
    write(tmp_path, "version_a", QUERY)
    write(tmp_path, "renamed", renamed)
    assert compile_in_subprocess(tmp_path, "version_a") == compile_in_subprocess(
        tmp_path, "renamed"
    )


def test_changing_a_lambda_renames_the_vertices_downstream_of_it_and_no_others(
    tmp_path: Path,
) -> None:
    edited = QUERY.replace("r.a > 0", "r.a > 1")
    write(tmp_path, "version_a", QUERY)
    write(tmp_path, "version_b", edited)
    before = by_kind(compile_in_subprocess(tmp_path, "version_a"))
    after = by_kind(compile_in_subprocess(tmp_path, "version_b"))
    assert [k for k, _ in before] == [k for k, _ in after]
    changed = {kind for (kind, old), (_, new) in zip(before, after) if old != new}
    unchanged = {kind for (kind, old), (_, new) in zip(before, after) if old == new}
    assert changed == {"filter", "distinct"}
    assert unchanged == {"input", "map", "reduce"}


def test_changing_an_upstream_lambda_renames_everything_downstream(tmp_path: Path) -> None:
    edited = QUERY.replace("r.b + 1", "r.b + 2")
    write(tmp_path, "version_a", QUERY)
    write(tmp_path, "version_b", edited)
    before = compile_in_subprocess(tmp_path, "version_a")
    after = compile_in_subprocess(tmp_path, "version_b")
    pairs = list(zip(by_kind(before), by_kind(after)))
    renamed = [kind for (kind, old), (_, new) in pairs if old != new]
    assert renamed == ["map", "filter", "distinct"]
    assert before["states"][0] != after["states"][0]  # the distinct's table
    assert before["states"][1] == after["states"][1]  # the count's table


def test_two_lambdas_on_one_line_are_told_apart(tmp_path: Path) -> None:
    one_line = """
    def query(rows: st.ZSet[Row]):
        x, y = st.map(rows, f=lambda r: r.a), st.map(rows, f=lambda r: r.b)
        return x, y
    """
    swapped = one_line.replace(
        "lambda r: r.a), st.map(rows, f=lambda r: r.b)",
        "lambda r: r.b), st.map(rows, f=lambda r: r.a)",
    )
    write(tmp_path, "one_line", one_line)
    write(tmp_path, "swapped", swapped)
    first = by_kind(compile_in_subprocess(tmp_path, "one_line"))
    maps = [name for kind, name in first if kind == "map"]
    assert len(maps) == 2 and maps[0] != maps[1]
    second = by_kind(compile_in_subprocess(tmp_path, "swapped"))
    assert [name for kind, name in second if kind == "map"] == maps[::-1]


def test_lambdas_inside_a_lambda_on_one_line_are_named_by_their_own_source(
    tmp_path: Path,
) -> None:
    nested = """
    def query(rows: st.ZSet[Row]):
        g = st.group(rows, by=st.Index.pick(Row, lambda r: r.a))
        out = st.per_group[g](lambda g: st.filter(st.map(g, f=lambda r: r.b), f=lambda b: b > 0))
        return st.flatten(out)
    """
    write(tmp_path, "nested", nested)
    write(tmp_path, "inner_edit", nested.replace("lambda r: r.b", "lambda r: r.b + 1"))
    write(tmp_path, "outer_edit", nested.replace("b > 0", "b > 1"))
    before = by_kind(compile_in_subprocess(tmp_path, "nested"))
    inner_edit = by_kind(compile_in_subprocess(tmp_path, "inner_edit"))
    outer_edit = by_kind(compile_in_subprocess(tmp_path, "outer_edit"))
    assert [kind for kind, _ in before] == ["input", "map", "map", "filter"]
    assert [old == new for (_, old), (_, new) in zip(before, inner_edit)] == [
        True,
        True,
        False,
        False,
    ]
    assert [old == new for (_, old), (_, new) in zip(before, outer_edit)] == [
        True,
        True,
        True,
        False,
    ]


def test_a_changed_closure_value_or_index_renames_the_vertex(tmp_path: Path) -> None:
    body = """
    LIMIT = 3


    def query(rows: st.ZSet[Row]):
        small = st.filter(rows, f=lambda r: r.a < LIMIT + bound())
        return st.first_n(small, index=st.Index.pick(Row, lambda r: r.a), n=2)


    def bound():
        return 0
    """
    write(tmp_path, "base", body)
    write(tmp_path, "other_index", body.replace("lambda r: r.a), n=2", "lambda r: r.b), n=2"))
    write(tmp_path, "other_n", body.replace("n=2", "n=3"))
    base = by_kind(compile_in_subprocess(tmp_path, "base"))
    other_index = by_kind(compile_in_subprocess(tmp_path, "other_index"))
    other_n = by_kind(compile_in_subprocess(tmp_path, "other_n"))
    assert base[:2] == other_index[:2] == other_n[:2]
    assert len({base[2], other_index[2], other_n[2]}) == 3


def test_a_named_function_is_named_by_its_source(tmp_path: Path) -> None:
    body = """
    def double(r):
        return r.a * 2


    def query(rows: st.ZSet[Row]):
        return st.map(rows, f=double)
    """
    write(tmp_path, "named", body)
    write(tmp_path, "named_edit", body.replace("r.a * 2", "r.a * 3"))
    write(tmp_path, "named_comment", body.replace("return r.a * 2", "return r.a * 2  # twice"))
    base = by_kind(compile_in_subprocess(tmp_path, "named"))
    assert by_kind(compile_in_subprocess(tmp_path, "named_edit"))[1] != base[1]
    assert by_kind(compile_in_subprocess(tmp_path, "named_comment")) == base


def test_the_seed_query_has_the_same_names_in_a_fresh_process() -> None:
    from tests.engine.seed_query import graph

    code = (
        "import json; from tests.engine.seed_query import graph; "
        "print(json.dumps([[v.name for v in graph.vertices], [s.name for s in graph.states]]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "99"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    vertices, states = json.loads(done.stdout)
    assert vertices == [v.name for v in graph.vertices]
    assert states == [s.name for s in graph.states]
    assert len(set(states)) == len(states) == len(st.compile(seed_query_fn()).states)


def seed_query_fn() -> Any:
    from tests.engine.seed_query import query

    return query


def test_changing_a_row_class_fields_renames_the_vertices_that_read_it(tmp_path: Path) -> None:
    """Rows are stored positionally: tables of the old layout must not be read as the new."""
    write(tmp_path, "version_a", QUERY)
    (tmp_path / "wider.py").write_text(
        (HEADER + textwrap.dedent(QUERY) + MAIN).replace(
            "    b: int\n", "    b: int\n    c: int = 0\n"
        )
    )
    (tmp_path / "retyped.py").write_text(
        (HEADER + textwrap.dedent(QUERY) + MAIN).replace("    b: int\n", "    b: float\n")
    )
    before = compile_in_subprocess(tmp_path, "version_a")
    for changed in ("wider", "retyped"):
        after = compile_in_subprocess(tmp_path, changed)
        assert all(old != new for (_, old), (_, new) in zip(by_kind(before), by_kind(after)))
        assert not set(before["states"]) & set(after["states"])


def test_a_bound_method_is_named_by_its_source(tmp_path: Path) -> None:
    body = """
    class Helper:
        def pick(self, r):
            return r.a


    def query(rows: st.ZSet[Row]):
        return st.map(rows, f=Helper().pick)
    """
    write(tmp_path, "method", body)
    write(tmp_path, "method_edit", body.replace("return r.a", "return r.b"))
    base = by_kind(compile_in_subprocess(tmp_path, "method"))
    assert by_kind(compile_in_subprocess(tmp_path, "method_edit"))[1] != base[1]
    assert compile_in_subprocess(tmp_path, "method") == compile_in_subprocess(
        tmp_path, "method", as_main=True
    )


def test_a_changed_global_constant_or_helper_used_by_a_lambda_renames_the_vertex(
    tmp_path: Path,
) -> None:
    body = """
    LIMIT = 3


    def bound():
        return 0


    def query(rows: st.ZSet[Row]):
        small = st.filter(rows, f=lambda r: r.a < LIMIT + bound())
        return st.map(rows, f=lambda r: r.b), small
    """
    write(tmp_path, "base", body)
    write(tmp_path, "other_limit", body.replace("LIMIT = 3", "LIMIT = 4"))
    write(tmp_path, "other_helper", body.replace("return 0", "return 1"))
    write(tmp_path, "unrelated", body.replace("LIMIT = 3", "LIMIT = 3\n    OTHER = 5"))
    base = by_kind(compile_in_subprocess(tmp_path, "base"))
    assert [k for k, _ in base] == ["input", "filter", "map"]
    for changed in ("other_limit", "other_helper"):
        after = by_kind(compile_in_subprocess(tmp_path, changed))
        assert [old == new for (_, old), (_, new) in zip(base, after)] == [True, False, True]
    assert by_kind(compile_in_subprocess(tmp_path, "unrelated")) == base


def test_a_function_that_calls_itself_can_be_named() -> None:
    def depth(n: int) -> int:
        return 0 if n <= 0 else 1 + depth(n - 1)

    def query(rows: st.ZSet[Item]) -> st.ZSet[int]:
        return st.map(rows, f=lambda r: depth(r.value))

    graph = st.compile(query)
    assert graph.outputs[0].kind == "map"
    assert query(st.ZSetPython({Item(key=0, value=3): 1})) == st.ZSetPython({3: 1})


def test_a_callable_object_is_named_by_its_call_source(tmp_path: Path) -> None:
    body = """
    class Pick:
        def __call__(self, r):
            return r.a


    def query(rows: st.ZSet[Row]):
        return st.map(rows, f=Pick())
    """
    write(tmp_path, "callable", body)
    write(tmp_path, "callable_edit", body.replace("return r.a", "return r.b"))
    base = by_kind(compile_in_subprocess(tmp_path, "callable"))
    assert by_kind(compile_in_subprocess(tmp_path, "callable_edit"))[1] != base[1]


def test_a_set_constant_used_by_a_lambda_gives_the_same_name_in_every_process(
    tmp_path: Path,
) -> None:
    """Set iteration order depends on the hash seed; names must not."""
    body = """
    WANTED = frozenset({"alpha", "beta", "gamma", "delta", "epsilon"})


    def query(rows: st.ZSet[Row]):
        return st.filter(rows, f=lambda r, wanted={"x", "y", "z"}: str(r.a) in WANTED | wanted)
    """
    write(tmp_path, "sets", body)
    seeds = [
        compile_in_subprocess(tmp_path, "sets"),
        compile_in_subprocess(tmp_path, "sets", as_main=True),
    ]
    assert seeds[0] == seeds[1]
