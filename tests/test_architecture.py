"""The package's imports run one way (docs/design.md, "Layout and the import rule").

Every ``llmtraces`` import in the package is read with ``ast`` (function-level ones too): the
graph has no cycle, no module imports from a layer above its own, a function-level import
exists only to keep start-up fast and says so (``# lazy:``), and no module exceeds 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llmtraces"
MAX_LINES = 500

#: Layer of each top-level module or package; a module may import its own layer or below.
LAYERS: dict[str, int] = {
    "_plugins": 0, "_version": 0, "atomic": 0, "errors": 0,
    "paths": 1, "report": 1, "schema": 1, "timing": 1, "ranges": 1,
    "registry": 2, "licensing": 2,
    "fetching": 3, "text": 3,
    "tokenize": 4,
    "formats": 5,
    "pipeline": 6,
    "api": 7, "request": 7, "testing": 8,
    "transforms": 8, "replay": 9, "serve": 9, "bench": 9, "release": 9, "stats": 9,
    "characterize": 9, "forecasting": 9,
    "_generate": 10, "_scaffold": 10, "cli": 10,
    "": 11,  # llmtraces/__init__.py: the public names, imported lazily
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    assert top in LAYERS, f"{module}: no layer for {top!r}; add it to LAYERS and docs/design.md"
    return LAYERS[top]


def under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported llmtraces module, line, at module level) for each import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if under_type_checking(node, parents):
            continue
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # ``from . import module`` imports that module
                sub = f"{target}.{alias.name}"
                targets.append(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        top = parents.get(node) is tree
        found += [(t, node.lineno, top) for t in targets if t in MODULES and t != module]
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for target, _, _ in GRAPH[m]:
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_imports_run_downhill() -> None:
    upward = [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line}: {m} (layer {layer(m)}) "
              f"imports {t} (layer {layer(t)})"
              for m, edges in GRAPH.items() for t, line, _ in edges if layer(t) > layer(m)]
    assert not upward, "\n".join(upward)


def test_function_level_imports_say_why() -> None:
    bad = []
    for m, edges in GRAPH.items():
        lines = MODULES[m].read_text(encoding="utf-8").splitlines()
        for _, line, top in edges:
            if not top and "# lazy:" not in lines[line - 1] + lines[line - 2]:
                where = MODULES[m].relative_to(PACKAGE.parent)
                bad.append(f"{where}:{line}: {lines[line - 1].strip()}")
    assert not bad, "function-level imports without a '# lazy: <why>' comment:\n" + "\n".join(bad)


def test_no_module_over_500_lines() -> None:
    big = {str(p.relative_to(PACKAGE.parent)): n for p in MODULES.values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, big


def test_the_graph_sees_the_imports() -> None:
    """The walker is not vacuous: known edges, top-level and function-level, are found."""
    assert ("llmtraces.timing", True) in {(t, top) for t, _, top in GRAPH["llmtraces.registry"]}
    assert any(t.startswith("llmtraces.text") for t, _, _ in GRAPH["llmtraces.formats.azure"])
