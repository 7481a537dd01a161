"""The convolution and pooling families stand side by side: neither imports the other; what both
use (memory formats, which backends run, the depthwise compute, shape arithmetic) sits on the
floor of ``cnnlab.functional``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FUNCTIONAL = Path(__file__).resolve().parents[2] / "src" / "cnnlab" / "functional"


def _imported_modules(path: Path) -> set[str]:
    """The modules ``path`` imports, as dotted names relative to ``cnnlab.functional``
    (``..conv.base`` from ``pool/max_pool.py`` → ``conv.base``)."""
    package = path.parent.relative_to(FUNCTIONAL).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            found.add(".".join([*base, *(node.module.split(".") if node.module else [])]))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found |= {n.removeprefix("cnnlab.functional.") for n in names if n and n.startswith("cnnlab.functional.")}
    return found


@pytest.mark.parametrize(("family", "other"), [("conv", "pool"), ("pool", "conv")])
def test_neither_family_imports_the_other(family, other):
    offending = {
        f"{path.name} imports {module}"
        for path in sorted((FUNCTIONAL / family).glob("*.py"))
        for module in _imported_modules(path)
        if module == other or module.startswith(f"{other}.")
    }
    assert not offending


def test_the_floor_imports_neither_family():
    floor = [path for path in FUNCTIONAL.glob("*.py") if path.name != "__init__.py"]
    assert {"backends.py", "depthwise.py", "_utils.py", "_tracing.py", "native.py"} <= {p.name for p in floor}
    for path in floor:
        assert not {m for m in _imported_modules(path) if m.split(".")[0] in ("conv", "pool")}, path.name
