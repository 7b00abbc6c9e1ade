"""The code stays ruff- and mypy --strict-clean: part of every test run, so CI enforces it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy", "--strict"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_static_checks_pass(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def _import_graph() -> dict[str, set[str]]:
    """Module -> the sse_service modules it imports (``TYPE_CHECKING`` imports too), read with ast."""
    package = ROOT / "sse_service"
    paths = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# Known, and someone else's to untie (issue 24, item 4): the cluster's metrics collector reads
# the node it was made by, which the node's type import names. Remove it from here once gone.
KNOWN_CYCLES: list[set[str]] = []


def test_no_import_circle_in_the_package() -> None:
    graph = _import_graph()
    assert {"sse_service.ha.client", "sse_service.ha.connection"} <= set(graph), "the graph is read"
    assert sorted(map(sorted, _cycles(graph))) == sorted(map(sorted, KNOWN_CYCLES))


# What may import the Home Assistant adapter: the composition that wires it (service.py), the
# check, and the cluster node that runs a client while it leads. Routes take the Upstream protocol.
HA_USERS = {"sse_service.service", "sse_service.check", "sse_service.cluster.node"}


def test_the_core_imports_nothing_from_the_ha_adapter() -> None:
    users = {
        name
        for name, imported in _import_graph().items()
        if not (name == "sse_service.ha" or name.startswith("sse_service.ha."))
        and any(m.startswith("sse_service.ha.") for m in imported)
    }
    assert users <= HA_USERS, sorted(users - HA_USERS)
    for name in ("sse_service.hub", "sse_service.history", "sse_service.cluster.log"):
        assert "sse_service.ha.messages" not in _import_graph()[name]
