"""The layers are a library that needs torch alone: ``pip install cnnlab`` depends on torch (a lower
bound only), the experiment stack is the ``train`` extra, and ``cnnlab``, ``cnnlab.nn``,
``cnnlab.functional`` and ``cnnlab.convert`` import and compute where none of it is installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TRAINING_STACK = ("torchvision", "hydra", "omegaconf", "tensorboard", "matplotlib", "tqdm", "dotenv")

# The layers at work, in an interpreter that can import none of the stack.
SCRIPT = f"""
import sys
import torch
import cnnlab
from cnnlab import functional, nn

model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.AdaptiveAvgPool2d(1))
ours = cnnlab.convert(model, strict=True, example_inputs=(torch.randn(2, 3, 16, 16),))
x = torch.randn(2, 3, 16, 16, requires_grad=True)
ours(x).sum().backward()
torch.testing.assert_close(ours(x), model(x), rtol=1e-4, atol=1e-5)
y = functional.conv2d(x, torch.randn(4, 3, 3, 3), padding="same") + nn.BlurPool2d(3, stride=1)(x).sum()
for name in {TRAINING_STACK!r}:
    try:
        __import__(name)
    except ImportError:
        continue
    raise AssertionError(f"{{name}} is importable here: the test's environment is wrong")
print("layers ok")
"""


def test_the_layers_import_and_compute_without_the_training_stack(tmp_path):
    """A site-packages of links to everything installed but the stack, and the source tree, on an
    interpreter started without its own site-packages (``-S``)."""
    site = Path(torch.__file__).resolve().parents[1]
    for entry in site.iterdir():
        if re.split(r"[-.]", entry.name)[0].lower() not in TRAINING_STACK:
            (tmp_path / entry.name).symlink_to(entry)
    environment = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT / 'src'}", "PATH": os.environ.get("PATH", "")}
    result = subprocess.run(
        [sys.executable, "-S", "-c", SCRIPT], capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "layers ok" in result.stdout


def test_pyproject_requires_torch_alone_with_a_lower_bound_and_puts_the_stack_in_the_train_extra():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == ["torch>=2.4"]
    extra = {re.split(r"[<>=!~\[]", requirement)[0] for requirement in project["optional-dependencies"]["train"]}
    assert {"torchvision", "hydra-core", "omegaconf", "tensorboard", "matplotlib", "tqdm", "python-dotenv"} <= extra
    assert "'.[train," in (ROOT / "Makefile").read_text()  # make installs the stack


def test_importing_cnnlab_leaves_torch_dynamo_and_torchvision_unloaded():
    """A program that neither compiles nor converts torchvision's layers does not pay for them:
    about 1.4 s of ``import cnnlab`` (3.4 s → 2.0 s here, ``import torch`` alone 1.7 s)."""
    script = "import sys, cnnlab, cnnlab.nn; print([m for m in ('torch._dynamo', 'torchvision') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"
