"""The package's structure holds: its import graph gains no cycles and engines ask rules.

Both checks read the source with :mod:`ast`, so they also see imports deferred into function
bodies (a cycle hidden that way still couples the two modules).
"""

from __future__ import annotations

import ast
from pathlib import Path

import maxaffine

PACKAGE = Path(maxaffine.__file__).resolve().parent


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        mods[".".join(parts)] = (path, is_package)
    return mods


def import_graph() -> dict[str, set[str]]:
    """``module -> modules of maxaffine it imports`` (anywhere in its source)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in mods.items():
        package = name if is_package else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in mods)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                deps.update(subs)
                if len(subs) < len(node.names) and target in mods:
                    deps.add(target)
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# Cycles that exist through imports deferred into function bodies: result classes whose
# methods delegate to the modules that draw or export them, and the rule contract's two
# halves. They may shrink, never grow; remove an entry when its cycle is gone.
KNOWN_CYCLES = [
    {"maxaffine.layers.base", "maxaffine.layers.switching"},
    {"maxaffine.partition", "maxaffine.partition._boundary", "maxaffine.partition._engine",
     "maxaffine.partition.export", "maxaffine.partition.partition", "maxaffine.partition.path",
     "maxaffine.plot", "maxaffine.view"},
]


def test_import_graph_gains_no_cycles():
    graph = import_graph()
    assert "maxaffine.affine" in graph and graph["maxaffine.affine"]
    new = [c for c in cycles(graph) if not any(set(c) <= known for known in KNOWN_CYCLES)]
    assert new == [], "a new import cycle: move the shared code into a module below both"


def test_engines_do_not_dispatch_on_rule_classes():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "layers":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "isinstance" and len(node.args) == 2):
                names = [n.id if isinstance(n, ast.Name) else getattr(n, "attr", "")
                         for n in ast.walk(node.args[1]) if isinstance(n, (ast.Name, ast.Attribute))]
                if any(name.endswith("Rule") for name in names):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == [], "ask the rule (a declared property or method) instead"
