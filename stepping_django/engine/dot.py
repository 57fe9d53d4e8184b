"""Pictures of a graph: an indented text listing and Graphviz DOT.

DOT is written here as text (no Graphviz library needed); `render` calls the `dot`
program only when it is installed, so a picture is one command away but never required.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from stepping_django.engine.graph import Graph, Vertex


def _fn_name(f: Any) -> str:
    inner = getattr(f, "f", None)
    if inner is not None and callable(inner) and not hasattr(f, "__name__"):
        f = inner
    return str(getattr(f, "__name__", type(f).__name__))


def _label(v: Vertex) -> str:
    """The kind plus what distinguishes this vertex: keys, functions, n."""
    parts = [v.kind]
    on_left, on_right = getattr(v, "on_left", None), getattr(v, "on_right", None)
    if on_left is not None and on_right is not None:
        parts.append(f"on {on_left.name} = {on_right.name}")
    by = getattr(v, "by", None)
    if by is not None:
        parts.append(f"by {by.name}")
    for attr in ("f", "pick_value"):
        f = getattr(v, attr, None)
        if f is not None:
            parts.append(f"{attr}={_fn_name(f)}")
    n = getattr(v, "n", None)
    if isinstance(n, int):
        parts.append(f"n={n}")
    return " ".join(parts)


def _type_name(t: Any) -> str:
    return getattr(t, "__qualname__", None) or repr(t).replace("stepping_django.engine.data.", "")


def to_text(graph: Graph) -> str:
    """One line per vertex: name, kind, inputs and the tables it keeps."""
    outputs = {v.name for v in graph.outputs}
    caches = {v.name for v in graph.run_no_output}
    lines = [f"graph {graph.name or '(anonymous)'}  version {graph.identifier}"]
    for v in graph.vertices:
        role = []
        if v in graph.inputs:
            role.append(f"input {graph.inputs.index(v)}: {_type_name(v.row_type)}")
        if v.name in outputs:
            role.append("output")
        if v.name in caches:
            role.append("cache")
        ins = ", ".join(i.name for i in v.inputs) or "-"
        tail = f"  [{'; '.join(role)}]" if role else ""
        lines.append(f"{v.name}  {_label(v)}  <- {ins}{tail}")
        for s in v.states:
            ix = ", ".join(i.name for i in s.all_indexes) or "identity"
            lines.append(f"    table {s.name}  (indexed by {ix})")
    return "\n".join(lines)


def _quote(text: str) -> str:
    """A DOT string: backslashes and quotes escaped, newlines as DOT's line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(graph: Graph) -> str:
    """The graph in Graphviz DOT: inputs as boxes, stateful vertices with their tables."""
    outputs = {v.name for v in graph.outputs}
    lines = [
        f"digraph {_quote(graph.name or 'query')} {{",
        "  rankdir=TB;",
        "  node [fontsize=10];",
    ]
    for v in graph.vertices:
        if v in graph.inputs:
            shape, label = "box", f"input {graph.inputs.index(v)}\n{_type_name(v.row_type)}"
        else:
            shape, label = ("box3d" if v.states else "ellipse"), _label(v)
        if v.states:
            label += "\n" + "\n".join(s.name for s in v.states)
        style = ", style=bold" if v.name in outputs else ""
        lines.append(f"  {_quote(v.name)} [shape={shape}, label={_quote(label)}{style}];")
    for v in graph.vertices:
        for i in v.inputs:
            lines.append(f"  {_quote(i.name)} -> {_quote(v.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(graph: Graph, path: Path, fmt: str = "png") -> Path:
    """Write the picture with Graphviz's `dot`; a clear error when it is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            "Graphviz's `dot` program is not installed (apt-get install graphviz); "
            "use the DOT text instead"
        )
    subprocess.run([dot, f"-T{fmt}", "-o", str(path)], input=to_dot(graph), text=True, check=True)
    return path


def write_png(graph: Graph, path: str | Path, simplify_labels: bool = True, level: int = 2) -> None:
    """stepping's spelling of `render(graph, path, "png")`."""
    render(graph, Path(path), "png")
