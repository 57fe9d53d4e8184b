"""Graph pictures: the text listing and DOT name every vertex, edge and table."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from stepping_django import engine as st
from tests.engine.seed_query import graph


def test_text_lists_every_vertex_and_table() -> None:
    text = st.to_text(graph)
    for v in graph.vertices:
        assert v.name in text
    for s in graph.states:
        assert f"table {s.name}" in text
    assert "join on name = product_name" in text
    assert "[cache]" in text and "[output]" in text


def test_dot_declares_every_node_before_its_edges() -> None:
    dot = st.to_dot(graph)
    nodes = set(re.findall(r'^  "([^"]+)" \[', dot, flags=re.M))
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)";', dot, flags=re.M)
    assert nodes == {v.name for v in graph.vertices}
    assert {(a, b) for a, b in edges} == {
        (i.name, v.name) for v in graph.vertices for i in v.inputs
    }
    assert dot.startswith('digraph "query" {') and dot.rstrip().endswith("}")


def test_dot_escapes_quotes_in_labels() -> None:
    from stepping_django.engine.dot import _quote

    assert _quote('a "b"\nc\\d') == '"a \\"b\\"\\nc\\\\d"'


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_png_is_rendered_by_graphviz(tmp_path: Path) -> None:
    out = tmp_path / "g.png"
    st.write_png(graph, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
