"""docs/architecture.md stays true: every package, module, file and symbol it names exists; what it calls
coming does not exist yet (when it lands, move it out of the "Coming" paragraph)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PATH = re.compile(r"(?<![\w/.])((?:nas|tests)/[\w/.*-]*)")
DOTTED = re.compile(r"`(nas(?:\.\w+)+)`")
SYMBOL_IN = re.compile(r"`(\w+)`(?: and `\w+`)?(?: of| in) `((?:nas|tests)/[\w/]+\.py)`")


def _text() -> str:
    return DOC.read_text()


def _coming(text: str) -> str:
    """The "Coming:" paragraph, or "" when nothing is announced."""
    return next((p for p in text.split("\n\n") if p.startswith("Coming:")), "")


def _exists(name: str) -> bool:
    name = name.rstrip(".,;:)")
    if "*" in name:
        return any(ROOT.glob(name))
    if "NAME" in name:
        return (ROOT / name.split("NAME")[0]).is_dir()
    return (ROOT / name).exists()


def _module_exists(dotted: str) -> bool:
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:k])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


def test_every_named_path_exists():
    text = _text()
    coming = _coming(text)
    rest = text.replace(coming, "") if coming else text
    missing = sorted({p for p in PATH.findall(rest) if not _exists(p)})
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"
    for dotted in DOTTED.findall(rest):
        assert _module_exists(dotted), f"docs/architecture.md names {dotted}, which does not exist"


def test_every_named_symbol_is_defined_where_the_doc_says():
    pairs = SYMBOL_IN.findall(_text())
    assert len(pairs) >= 8
    for symbol, path in pairs:
        tree = ast.parse((ROOT / path).read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        names |= {
            t.id
            for n in ast.walk(tree)
            if isinstance(n, (ast.Assign, ast.AnnAssign))
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Name)
        }
        assert symbol in names, f"docs/architecture.md: `{symbol}` is not defined in {path}"


def test_what_is_coming_has_not_landed_yet():
    for path in PATH.findall(_coming(_text())):
        if path.startswith("nas/") and path.endswith("/"):
            assert not (ROOT / path).exists(), (
                f"{path} exists now: describe it in docs/architecture.md's house and arrows, not under 'Coming'"
            )


def test_every_floor_of_the_package_is_in_the_doc():
    text = _text()
    floors = sorted(p.name for p in (ROOT / "nas").iterdir() if (p / "__init__.py").is_file())
    assert [f for f in floors if f"nas/{f}/" not in text] == []
