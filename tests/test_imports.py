"""The house's import rules, checked on the source with `ast`: arrows point one way.

- no cycle between modules of `nas` (module-level imports; `if TYPE_CHECKING:` blocks do not run);
- no cycle between its subpackages (`nas.engine`, `nas.proxy`, ...; top-level modules count as their own);
- a function-local import is for a heavy optional dependency only, never for one of the package's own modules;
- the arrow list of docs/architecture.md is the floors' imports as the code has them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nas"

# Function-local imports of nas's own modules allowed, with the reason. Only start-up time: `nas help` and
# `import nas` must not pull in torch (the CLI dispatches to the heavy engine only once a mode is chosen).
LAZY_FOR_START_UP = {"nas/__init__.py", "nas/cli.py"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, here: str, is_pkg: bool, modules: dict[str, Path]) -> set[str]:
    """The nas modules an import statement loads (a `from pkg import sub` names the submodule)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = here.split(".") if is_pkg else here.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = set()
    for name in names:
        while name and name not in modules:  # `import nas.models.blocks.x` style: the longest known prefix
            name = name.rpartition(".")[0]
        if name.startswith("nas"):
            out.add(name)
    return out


def _walk_module_level(body: list[ast.stmt]):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            yield from _walk_module_level(node.body)
            yield from _walk_module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _walk_module_level(part)


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    local: list[str] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_pkg = path.name == "__init__.py"
        graph[name] = set()
        for node in _walk_module_level(tree.body):
            graph[name] |= _targets(node, name, is_pkg, modules) - {name}
        rel = str(path.relative_to(ROOT))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and rel not in LAZY_FOR_START_UP:
                    for target in sorted(_targets(node, name, is_pkg, modules)):
                        local.append(f"{rel}:{node.lineno} imports {target} inside {fn.name}()")
    return graph, local


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _floor(module: str) -> str:
    """The subpackage a module belongs to (`nas.engine.val` -> `nas.engine`); top-level modules stand alone, and
    so do entry points (`python -m nas.models` sits on top of the house, not on the models floor)."""
    if module.endswith(".__main__"):
        return module
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_module_cycle():
    graph, _ = _graph()
    assert _cycles(graph) == []


def _floors() -> dict[str, set[str]]:
    """Each floor's imports of other floors (module-level imports)."""
    graph, _ = _graph()
    floors: dict[str, set[str]] = {}
    for a, targets in graph.items():
        if a == "nas":  # the package root re-exports the public surface; it is the top, not a floor
            continue
        floors.setdefault(_floor(a), set()).update(_floor(b) for b in targets if _floor(b) != _floor(a))
    return floors


def test_no_subpackage_cycle():
    assert _cycles(_floors()) == []


DOC = ROOT / "docs" / "architecture.md"
_ARROW = re.compile(r"^`(nas[\w.]*)` -> (.*)$", re.S)


def _doc_arrows(text: str) -> dict[str, set[str]]:
    """The arrow list of docs/architecture.md: `- `nas.a` -> `nas.b` (why), `nas.c`;` items, several per line
    allowed (`;`), continued on indented lines; what is in parentheses is commentary."""
    start = text.index("\n- `", text.index("Arrows point down only"))
    block = text[start + 1 : text.index("\n\n", start)]
    out: dict[str, set[str]] = {}
    for item in re.split(r";\s*(?:- )?|\n- ", " ".join(line.strip() for line in block.splitlines()).lstrip("- ")):
        item = item.strip().rstrip(".;")
        if not item:
            continue
        m = _ARROW.match(item)
        assert m, f"docs/architecture.md: cannot read the arrow item {item!r} (expected `nas.a` -> `nas.b`, ...)"
        src, rest = m.groups()
        assert src not in out, f"docs/architecture.md lists the arrows of {src} twice"
        out[src] = set(re.findall(r"`(nas[\w.]*)`", re.sub(r"\([^)]*\)", "", rest)))
    return out


def _code_arrows() -> dict[str, set[str]]:
    """The floors' imports as the doc lists them: without arrows to nas.errors and without entry points."""
    return {
        a: {b for b in targets if b != "nas.errors"}
        for a, targets in _floors().items()
        if a != "nas.errors" and not a.endswith(".__main__")
    }


def _format(arrows: dict[str, set[str]]) -> str:
    return "\n".join(
        f"- `{a}` -> {', '.join(f'`{b}`' for b in sorted(t)) or 'nothing'};" for a, t in sorted(arrows.items())
    )


def test_architecture_doc_lists_the_arrows_of_the_code():
    doc, code = _doc_arrows(DOC.read_text()), _code_arrows()
    wrong = {
        a: {
            "missing": sorted(code.get(a, set()) - doc.get(a, set())),
            "absent": sorted(doc.get(a, set()) - code.get(a, set())),
        }
        for a in sorted(set(doc) | set(code))
        if doc.get(a) != code.get(a)
    }
    assert not wrong, (
        f"docs/architecture.md's arrows differ from the code ({wrong}; 'missing': imported but not listed, "
        f"'absent': listed but not imported). The code has:\n{_format(code)}"
    )


def test_the_doc_reader_sees_every_arrow():
    """A wrong arrow in the doc reaches the comparison: an added, a dropped and a commented one."""
    text = DOC.read_text()
    doc = _doc_arrows(text)
    assert len(doc) >= 15 and doc["nas.metrics"] == set() and "nas.ort_session" in doc
    added = _doc_arrows(text.replace("- `nas.data` -> `nas.options`;", "- `nas.data` -> `nas.options`, `nas.io`;"))
    assert added["nas.data"] == doc["nas.data"] | {"nas.io"}
    dropped = _doc_arrows(text.replace("`nas.quant` (int8_drop), ", ""))
    assert dropped["nas.search"] == doc["nas.search"] - {"nas.quant"}
    commented = _doc_arrows(
        text.replace("- `nas.metrics` -> nothing;", "- `nas.metrics` -> nothing (not `nas.space`);")
    )
    assert commented == doc
    with pytest.raises(AssertionError, match="cannot read the arrow item"):
        _doc_arrows(text.replace("- `nas.metrics` -> nothing;", "- nas.metrics -> nothing;"))


def test_no_function_local_import_of_own_modules():
    _, local = _graph()
    assert local == [], "move the import to the top of the module (or the shared piece down a floor):\n" + "\n".join(
        local
    )


def test_checker_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", ["nas.engine.val", "nas.proxy.train", "nas.space.schema"])
def test_graph_knows_the_modules(module):
    graph, _ = _graph()
    assert module in graph
