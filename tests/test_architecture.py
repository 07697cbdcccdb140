"""The package's layering (docs/architecture.md): every import points down, and nothing is circular.

Every `import` and `from ... import` in plugin/vnncert is read with `ast` (imports inside functions
included: a lazy import is still an arrow). A module may import modules of its own package (its
top-level folder under vnncert/, or itself for single-file modules) and modules of lower layers;
never a higher layer, never a sibling package of its own layer. The foundation modules of the lowest
layer may import each other. Separately, no module-level import cycle may exist anywhere.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set

from conftest import ROOT

PKG = ROOT / "plugin" / "vnncert"

# top-level unit (a subpackage or a single-file module of vnncert/) -> layer; 0 is the top
LAYERS: Dict[str, int] = {
    "cli": 1, "demo": 1,
    "": 2,  # the package facade: vnncert.verify / load_spec / load_network
    "api": 3, "bench": 3,
    "supervise": 4,
    "router": 5,
    "engines": 6,
    "search": 7, "milp": 7, "smoothing": 7,
    "bounds": 8,
    "network": 9, "spec": 9,
    "results": 10, "options": 10, "deadline": 10, "errors": 10, "files": 10, "outputs": 10, "cpu": 10, "signature": 10,
}
FOUNDATION = 10  # these may import each other (a cycle among them still fails)


def _modules() -> Dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(mod: str, path: Path, mods: Dict[str, Path]) -> Set[str]:
    tree = ast.parse(path.read_text())
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    deps: Set[str] = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                targets.append(sub if sub in mods else target)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for t in targets:
            while t and t not in mods and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in mods and t != mod:
                deps.add(t)
    return deps


def _unit(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph():
    mods = _modules()
    return mods, {m: _imports(m, p, mods) for m, p in mods.items()}


def test_every_unit_has_a_layer():
    mods, _ = _graph()
    missing = sorted({_unit(m) for m in mods} - set(LAYERS))
    assert not missing, f"modules without a layer in docs/architecture.md / this test: {missing}"


def test_imports_point_down():
    mods, edges = _graph()
    bad = []
    for m, deps in edges.items():
        um = _unit(m)
        for d in deps:
            ud = _unit(d)
            if ud == um or um not in LAYERS or ud not in LAYERS:  # unknown units: test_every_unit_has_a_layer
                continue
            lm, ld = LAYERS[um], LAYERS[ud]
            if ld > lm or (ld == lm == FOUNDATION):
                continue
            bad.append(f"{m} (layer {lm}) imports {d} (layer {ld})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    _, edges = _graph()
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack, on, cycles = [], set(), []
    counter = [0]

    def visit(v):  # Tarjan's strongly connected components, iterative enough for this size
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(", ".join(c) for c in cycles)
