"""The API reference: every public function of ``cnnlab.functional`` and class of ``cnnlab.nn`` has a
complete docstring (arguments, shapes, an example that runs and prints what it says), and the
mkdocs site built from them has no warnings."""

from __future__ import annotations

import doctest
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab import functional, nn

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = [(f"cnnlab.functional.{name}", getattr(functional, name)) for name in functional.__all__] + [
    (f"cnnlab.nn.{name}", getattr(nn, name)) for name in nn.__all__
]
SECTIONS = ("Args", "Shape", "Example")


def _doc(obj) -> str:
    return inspect.getdoc(obj) or ""


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_api_has_a_complete_docstring(name, obj):
    doc = _doc(obj)
    missing = [section for section in SECTIONS if f"\n{section}" not in f"\n{doc}" and f"{section}:" not in doc]
    assert missing == [], f"{name}: its docstring lacks {missing}"
    assert ">>>" in doc, f"{name}: no example"
    assert "See :class:" not in doc.splitlines()[0], f"{name}: its summary only points elsewhere"


@pytest.mark.parametrize(
    ("name", "obj"), [*PUBLIC, ("cnnlab.convert", cnnlab.convert)], ids=[n for n, _ in PUBLIC] + ["cnnlab.convert"]
)
def test_docstring_examples_run_and_print_what_they_say(name, obj):
    globs = {**vars(sys.modules[obj.__module__]), "torch": torch, "cnnlab": cnnlab}
    globs.update({n: getattr(functional, n) for n in functional.__all__})
    globs.update({n: getattr(nn, n) for n in nn.__all__})
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs=globs)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    torch.manual_seed(0)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_onnx_module_example_runs():
    pytest.importorskip("onnxscript")
    import cnnlab.onnx

    result = doctest.testmod(cnnlab.onnx, extraglobs={"torch": torch, "cnnlab": cnnlab})
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
def test_api_reference_builds_without_warnings(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (the docs extra)")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "-f", str(ROOT / "docs" / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "WARNING" not in result.stderr, result.stderr[-4000:]
    page = (tmp_path / "site" / "functional" / "index.html").read_text()
    assert "conv2d" in page and "Shape" in page
