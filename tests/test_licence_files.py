"""The licence files the README and the missing-weights error point to exist, and the citation file is current."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import nas
from nas.models import checkpoints

ROOT = Path(__file__).resolve().parents[1]


def test_the_code_licence_is_the_full_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    for section in range(1, 10):  # all nine sections of the terms, not a one-line notice
        assert re.search(rf"^\s+{section}\. [A-Z]", text, re.M), section
    assert "END OF TERMS AND CONDITIONS" in text


def test_every_licence_file_the_project_names_exists():
    sources = [ROOT / "README.md", ROOT / "docs" / "models.md", Path(checkpoints.__file__)]
    named = {m for p in sources for m in re.findall(r"\bLICENSE[A-Z.]*\.md\b|\bLICENSE\b", p.read_text())}
    assert "LICENSE.YOLONAS.md" in named
    for name in named:
        assert (ROOT / name).is_file(), f"{name} is named but missing"
    notice = (ROOT / "LICENSE.YOLONAS.md").read_text()
    assert "non-commercial" in notice
    assert "https://github.com/Deci-AI/super-gradients/blob/master/LICENSE.YOLONAS.md" in notice


def test_citation_file_names_this_version_and_super_gradients():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    assert str(cff["version"]) == nas.__version__
    (sg,) = [r for r in cff["references"] if r["title"] == "Super-Gradients"]
    assert sg["doi"] == "10.5281/ZENODO.7789328"
