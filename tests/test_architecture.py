"""The package map holds: layers import downward only, no import cycle, every subpackage says
what it holds and what it may import (``isoclip/*/__init__.py``)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

import isoclip

ROOT = Path(isoclip.__file__).parent.parent


def test_import_linter_contracts_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # the contracts live in pyproject.toml ([tool.importlinter]); 0 = every contract kept
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_strongly_connected_finds_a_planted_cycle() -> None:
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    # every import statement counts, also those inside functions
    graph = grimp.build_graph("isoclip")
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _strongly_connected(edges) == []


def test_every_subpackage_states_its_role_and_imports() -> None:
    missing = []
    for info in pkgutil.walk_packages(isoclip.__path__, "isoclip."):
        if info.ispkg:
            doc = importlib.import_module(info.name).__doc__ or ""
            if "May import" not in doc or len(doc.split()) < 15:
                missing.append(info.name)
    assert missing == []
