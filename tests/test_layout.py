"""The package's layout: every module imports on its own, and the imports between ccdf's modules
(module-level and function-local alike: a local import is a dependency too) form no cycle
(docs/architecture.md lists the layers)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ccdf

SRC = Path(ccdf.__file__).resolve().parent


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (packages by their __init__)."""
    out = {}
    for f in sorted(SRC.rglob("*.py")):
        parts = f.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(body):
    """Every import statement of a module (also inside functions), except those under
    ``if TYPE_CHECKING`` (annotations only)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _type_checking(node):
            yield from _imports(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                yield from _imports(getattr(node, field, None) or [])


def graph() -> dict[str, set[str]]:
    """Module -> the ccdf modules it imports."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, f in mods.items():
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(f.read_text(), str(f)).body):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from pkg import sub`` imports the submodule where one exists
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            for t in targets:
                while t and t not in mods:  # ``import ccdf.x.y`` -> the deepest known module
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges[name].add(t)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                c = visit(n)
                if c:
                    return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            c = visit(m)
            if c:
                return c
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_resolves_relative_imports():
    edges = graph()
    assert "ccdf.operators.base" in edges["ccdf.operators"]  # from .base import ...
    assert "ccdf.operators.base" in edges["ccdf.consistency"]  # from .operators.base import ...
    assert all(t.startswith("ccdf") for ts in edges.values() for t in ts)


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_imports_in_a_fresh_interpreter():
    """One fresh interpreter: ``import ccdf`` imports no torch (the CLI sets torch's threading
    first), then every module imports, and the API names resolve to what they name."""
    names = [m for m in sorted(modules()) if m != "ccdf.__main__"]  # that one runs the CLI
    code = ("import importlib, sys\n"
            "import ccdf\n"
            "assert 'torch' not in sys.modules, 'import ccdf imported torch'\n"
            "for n in sys.argv[1:]:\n"
            "    importlib.import_module(n)\n"
            "assert callable(ccdf.reconstruct) and callable(ccdf.load_model)\n")
    r = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]


def test_public_api():
    import ccdf as api

    for name in ("load_model", "make_operator", "reconstruct", "Task", "__version__"):
        assert hasattr(api, name), name
    assert set(api.__all__) >= {"load_model", "make_operator", "reconstruct", "Task"}
    assert api.__version__.count(".") >= 1
    assert callable(api.reconstruct) and api.Task("sr").task_key.startswith("sr")
