"""The layers, checked on the source: who may import whom, and no import cycles.

`app → commands → services → core`, `commands → output`; the sandbox keeps its own copy of the
contract (docs/architecture.md, "Layers"). Every import counts — at module level, inside a
function (imported late for start-up speed, still a dependency), under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "cloudchat_cli"

# Known violations, each being removed on another branch: the lead empties this list when
# merging them. Nothing is added here to make a new violation pass.
ALLOWED = {
}

RULES = {  # layer → what it must not import (a package prefix or a third-party top name)
    "core": ("services", "commands", "output", "sandbox", "app", "entry", "typer", "rich"),
    "services": ("commands", "output", "sandbox", "app", "entry", "typer", "rich"),
    "sandbox": ("services", "commands", "app", "entry"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module ``name`` imports: ours by full name, others by their top-level name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import mod` imports the module pkg.mod
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    ours = {m for m in found if m.split(".")[0] == "cloudchat_cli"}
    return {m for m in ours if m != name} | {m.split(".")[0] for m in found - ours}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "cloudchat_cli" else None


def test_the_import_graph_is_read():
    """The walk sees function-level and TYPE_CHECKING imports, not just the top of a file."""
    edges = graph()
    assert "typer" in edges["cloudchat_cli.app"]
    assert "cloudchat_cli.app" in edges["cloudchat_cli.entry"]  # inside main()
    assert "cloudchat_cli.core.http" in edges[
        "cloudchat_cli.services.messages"]  # under TYPE_CHECKING only
    assert len(edges) > 80


@pytest.mark.parametrize("lower", sorted(RULES))
def test_a_layer_imports_nothing_above_it(lower):
    bad = []
    for module, targets in graph().items():
        if layer(module) != lower:
            continue
        for target in sorted(targets):
            top = target if "." not in target else layer(target)
            if top in RULES[lower] and (module, target) not in ALLOWED:
                bad.append(f"{module} imports {target}")
    assert bad == []


def test_no_import_cycles():
    edges = {m: {t for t in ts if (m, t) not in ALLOWED and t.startswith("cloudchat_cli.")}
             for m, ts in graph().items()}
    cycles = [sorted(c) for c in strongly_connected(edges) if len(c) > 1]
    assert cycles == []


def test_the_allowed_list_names_only_real_imports():
    """When a branch removes a violation, its entry here must go too (or the list rots)."""
    edges = graph()
    assert [pair for pair in sorted(ALLOWED) if pair[1] not in edges.get(pair[0], ())] == []


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the graph is small, but recursion depth is not ours)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    found.append(component)
    return found


def test_cycle_finder_finds_cycles():
    assert sorted(map(sorted, strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"},
                                                 "d": {"a"}}))) == [["a", "b", "c"], ["d"]]
