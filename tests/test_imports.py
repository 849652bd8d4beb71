"""The package's imports only go down: no import circle, counting imports inside functions too.

Read from the source with ``ast`` (nothing is imported): every ``import nplib.x``, ``from nplib import x``,
``from .x import y`` and ``from . import x``, at the top of a module or inside a function, is an arrow
from the importing module to the imported one. A circle would mean two modules that each need the other,
so neither can be read, tested or moved alone; a function-local import that hides a circle counts.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "nplib"


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The nplib modules that ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t != "nplib":
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imports_of(n, p, set(mods)) for n, p in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_reader_finds_relative_and_absolute_imports(tmp_path):
    pkg = tmp_path / "nplib"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("from .b import x\nimport nplib.sub.c\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "sub" / "c.py").write_text("from ..b import y\n")
    known = {"nplib.a", "nplib.b", "nplib.sub", "nplib.sub.c"}
    assert imports_of("nplib.a", pkg / "a.py", known) == {"nplib.b", "nplib.sub.c"}
    assert imports_of("nplib.b", pkg / "b.py", known) == {"nplib.a"}
    assert imports_of("nplib.sub.c", pkg / "sub" / "c.py", known) == {"nplib.b"}
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_nplib():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


CORE = {"nplib.devices", "nplib.schedules", "nplib.embeddings", "nplib.diffusion", "nplib.blocks", "nplib.models",
        "nplib.continuous", "nplib.builder", "nplib.data", "nplib.evaluation", "nplib.pretrained", "nplib.reference",
        "nplib.train"}
WINGS = ("nplib.speed", "nplib.timeseries", "nplib.lab", "nplib.course")
FACES = {"nplib.cli", "nplib.notebook", "nplib.__main__"}


def layer(name: str) -> str:
    if name in CORE:
        return "core"
    if name in FACES:
        return "face"
    for w in WINGS:
        if name == w or name.startswith(w + "."):
            return w
    return "package" if name == "nplib" else "unplaced"


def test_every_module_has_a_layer():
    assert [m for m in graph() if layer(m) == "unplaced"] == [], "add the module to CORE, a wing, or the faces"


def test_the_core_imports_no_wing_and_no_wing_imports_a_face():
    g = graph()
    up = [f"{a} -> {b}" for a, bs in g.items() for b in bs
          if (layer(a) == "core" and layer(b) != "core") or (layer(a) in WINGS and layer(b) == "face")]
    assert up == [], "imports that run up: " + ", ".join(sorted(up))
