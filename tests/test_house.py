"""The shape of the library: no import circle, no arrow from a lower floor to a higher one,
no oversized module, and benchmarks outside the package.

Imports are read from the source (module top and inside functions alike), so a hidden
dependency counts as much as a visible one.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nexara_lib"
# Lowest first. A module may import from its own floor and the floors below it.
FLOORS = ("ground", "transforms", "video", "audit", "features", "evaluation", "training", "deploy", "stages", "run")
MAX_LINES = 420


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _floor(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FLOORS:
        return parts[1]
    return "run" if parts[-1] == "__main__" else "ground"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """nexara_lib modules that ``path`` imports (a ``from pkg import mod`` counts as ``pkg.mod``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("nexara_lib"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nexara_lib"):
            assert node.level == 0, f"{path}: use absolute imports (from nexara_lib... import ...)"
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found - {"nexara_lib"}


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {}
    for path in paths:
        name = _module_name(path)
        graph[name] = {m for m in _imports(path, modules) if m != name}
        unknown = graph[name] - modules
        assert not unknown, f"{name} imports modules that do not exist: {sorted(unknown)}"
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_checker_sees_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    cycle = _cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_imports_only_go_down_the_floors():
    upward = [
        f"{module} ({_floor(module)}) -> {target} ({_floor(target)})"
        for module, targets in _graph().items()
        for target in targets
        if FLOORS.index(_floor(target)) > FLOORS.index(_floor(module))
    ]
    assert not upward, "imports from a higher floor:\n" + "\n".join(upward)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module_name(p))
def test_module_is_small(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it along its sections"


def test_every_package_says_what_it_owns():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 40, f"{init} needs a docstring saying what the package owns"


def test_benchmarks_live_outside_the_package():
    assert not list(PACKAGE.rglob("bench_*.py"))
