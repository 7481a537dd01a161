"""Shared fixtures: tolerances, devices, and helpers that build a torch layer and its cnnlab twin."""

from __future__ import annotations

import os

import pytest
import torch

from cnnlab.convert import TorchConvPoolOps

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # two xdist workers on two cores: one thread each, no oversubscription

# Tolerances for comparing against torch, per dtype: (rtol, atol). float32 differences come from
# summation order (im2col GEMM vs oneDNN); bfloat16 from its 8-bit mantissa.
TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-4, 1e-5),
    torch.bfloat16: (2e-2, 2e-2),
}

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None, scale: float = 1.0):
    """``torch.testing.assert_close`` with the table above (``scale`` widens it for long sums)."""
    rtol, atol = TOLERANCES[dtype or expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol * scale, atol=atol * scale)


def twin(torch_cls, cnnlab_cls, *args, **kwargs):
    """A torch layer and a cnnlab layer with the same arguments and the torch layer's weights."""
    reference = torch_cls(*args, **kwargs)
    ours = cnnlab_cls(*args, **kwargs)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def compare_forward_backward(reference, ours, x, dtype=None, scale: float = 1.0, **forward_kwargs):
    """Outputs, input gradient and every parameter gradient of two layers agree."""
    x_ref = x.detach().clone().requires_grad_(True)
    x_our = x.detach().clone().requires_grad_(True)
    out_ref = reference(x_ref, **forward_kwargs)
    out_our = ours(x_our, **forward_kwargs)
    assert out_our.shape == out_ref.shape
    assert_close(out_our, out_ref, dtype, scale)
    grad = torch.randn_like(out_ref)
    out_ref.backward(grad)
    out_our.backward(grad)
    assert_close(x_our.grad, x_ref.grad, dtype, scale)
    for (name, p_ref), (_, p_our) in zip(reference.named_parameters(), ours.named_parameters()):
        assert p_our.grad is not None, name
        assert_close(p_our.grad, p_ref.grad, dtype, scale * 4)
    return out_our


# Records every aten op dispatched inside the block; ``forbidden`` lists the convolution and pooling
# ones (aten.convolution, aten.mkldnn_convolution, aten.max_pool2d_with_indices, ...): the recorder
# behind convert(strict=True)
ForbiddenOpGuard = TorchConvPoolOps


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
