"""cnnlab.train.engine.optim.Muon against its definition (airbench94_muon.py): Newton–Schulz maps every
singular value through the same quintic, filters take the normalise-then-orthogonalised step,
the other parameters the steps of torch.optim.SGD; and the CPU allocator setting that keeps freed
memory for the next step."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

from cnnlab.train.engine.optim import Muon, orthogonalize


@pytest.mark.parametrize("shape", [(6, 20), (20, 6), (8, 8)])
def test_orthogonalize_maps_each_singular_value_through_the_quintic(shape):
    """``X = U·diag(s)·Vᵀ`` → ``U·diag(p(p(p(s/‖s‖))))·Vᵀ`` with ``p(σ) = aσ + bσ³ + cσ⁵``."""
    torch.manual_seed(0)
    m, n = shape
    u, _ = torch.linalg.qr(torch.randn(m, m, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    k = min(m, n)
    s = torch.linspace(0.05, 3.0, k, dtype=torch.float64)
    matrix = u[:, :k] @ torch.diag(s) @ v[:, :k].T
    sigma = s / s.norm()
    for _ in range(3):
        sigma = 3.4445 * sigma - 4.7750 * sigma**3 + 2.0315 * sigma**5
    expected = u[:, :k] @ torch.diag(sigma) @ v[:, :k].T
    got = orthogonalize(matrix.float(), steps=3)
    assert got.dtype == torch.bfloat16 and got.shape == shape
    torch.testing.assert_close(got.double(), expected, atol=0.03, rtol=0.0)  # bfloat16 arithmetic
    assert sigma.min() > 0.3 and sigma.max() < 1.3  # every direction kept at about unit size


def test_orthogonalize_refuses_a_filter():
    with pytest.raises(ValueError, match="2-D"):
        orthogonalize(torch.ones(2, 2, 3, 3))


def test_muon_filter_step_normalises_then_takes_the_orthogonalised_nesterov_step():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, bias=False)
    optimizer = Muon(conv.parameters(), lr=0.24, momentum=0.6)
    w0 = conv.weight.detach().clone()
    grads = [torch.randn_like(w0) for _ in range(2)]
    expected, buffer = w0.clone(), torch.zeros_like(w0)
    for grad in grads:
        conv.weight.grad = grad.clone()
        optimizer.step()
        buffer = 0.6 * buffer + grad
        update = grad + 0.6 * buffer
        expected = expected * (6**0.5 / expected.norm())
        expected = expected - 0.24 * orthogonalize(update.reshape(6, -1)).float().view_as(w0)
    torch.testing.assert_close(conv.weight.detach(), expected)
    # the BatchNorm after a filter ignores its scale, Muon keeps it fixed: ‖w‖ ≈ √out after a step
    assert conv.weight.norm().item() == pytest.approx(6**0.5, rel=0.35)


def test_muon_trains_vectors_and_matrices_as_torch_sgd_with_wd_over_lr():
    """airbench's SGD groups: ``SGD(lr=lr_g, momentum=0.85, nesterov=True, weight_decay=wd/lr_g)``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), nn.Linear(3, 2, bias=False))
    twin = nn.Sequential(nn.Linear(5, 3), nn.Linear(3, 2, bias=False))
    twin.load_state_dict(model.state_dict())
    muon = Muon(model.parameters(), vector_lr=0.5, matrix_lr=0.2, sgd_momentum=0.85, weight_decay=0.01)
    vectors, matrices = [twin[0].bias], [twin[0].weight, twin[1].weight]
    sgd = torch.optim.SGD([{"params": matrices, "lr": 0.2, "weight_decay": 0.01 / 0.2},
                           {"params": vectors, "lr": 0.5, "weight_decay": 0.01 / 0.5}],
                          momentum=0.85, nesterov=True)  # fmt: skip
    assert [g["kind"] for g in muon.param_groups] == ["vector", "matrix"]
    for _ in range(3):
        x = torch.randn(4, 5)
        for net, optimizer in ((model, muon), (twin, sgd)):
            optimizer.zero_grad()
            net(x).square().sum().backward()
            optimizer.step()
    for ours, theirs in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(ours, theirs)


def test_muon_resumes_exactly_from_its_state_dict():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4, 1))
    inputs = [torch.randn(3, 2, 3, 3) for _ in range(4)]

    def train(model, optimizer, batches):
        for x in batches:
            optimizer.zero_grad()
            model(x).sum().backward()
            optimizer.step()

    resumed = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4, 1))
    optimizer = Muon(net.parameters(), lr=0.1, vector_lr=0.1, matrix_lr=0.1)
    train(net, optimizer, inputs[:2])
    resumed.load_state_dict(net.state_dict())
    other = Muon(resumed.parameters(), lr=0.1, vector_lr=0.1, matrix_lr=0.1)
    other.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # (a checkpoint's copy, not shared buffers)
    train(net, optimizer, inputs[2:])
    train(resumed, other, inputs[2:])
    for a, b in zip(net.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": 0.0}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"ns_steps": 0}, "ns_steps"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"matrix_lr": -2.0}, "matrix_lr"),
    ],
)
def test_muon_names_a_bad_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"Muon: {name} must"):
        Muon(nn.Linear(2, 2).parameters(), **kwargs)


def test_muon_refuses_parameter_groups():
    with pytest.raises(TypeError, match="groups"):
        Muon([{"params": nn.Linear(2, 2).parameters()}])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_keeps_a_freed_block_in_the_heap():
    """A 256 MiB tensor, allocated and freed, read off glibc's own books (``mallinfo2``): with the
    defaults it is mmap'ed (``hblkhd``) and handed back when freed, so the next one faults its pages
    in again; after :func:`keep_freed_memory` it comes from the heap and stays there, free
    (``fordblks``), for the next step. (Page-fault counts would say the same on a quiet machine,
    but the kernel also faults pages for its own reasons, e.g. NUMA balancing's 256 MiB scans.)"""
    probe = (
        "import ctypes, sys, torch\n"
        "from cnnlab.train.engine.setup import keep_freed_memory\n"
        "class Info(ctypes.Structure):\n"
        "    _fields_ = [(name, ctypes.c_size_t) for name in\n"
        "               'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost'.split()]\n"
        "libc = ctypes.CDLL('libc.so.6')\n"
        "if not hasattr(libc, 'mallinfo2'): sys.exit(3)\n"
        "libc.mallinfo2.restype = Info\n"
        "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
        "before = libc.mallinfo2()\n"
        "block = torch.empty(2**26).fill_(1.0)\n"
        "live = libc.mallinfo2()\n"
        "del block\n"
        "freed = libc.mallinfo2()\n"
        "print(live.hblkhd - before.hblkhd, freed.hblkhd - before.hblkhd, freed.fordblks)\n"
    )
    size = 2**28
    books = {}
    for mode in ("default", "keep"):
        run = subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True)
        if run.returncode == 3:
            pytest.skip("glibc older than 2.33 has no mallinfo2")
        assert run.returncode == 0, run.stderr
        books[mode] = dict(zip(("mapped_live", "mapped_freed", "free_in_heap"), map(int, run.stdout.split())))
    assert books["default"]["mapped_live"] >= size  # its own mapping ...
    assert books["default"]["mapped_freed"] == 0  # ... handed back on free
    assert books["default"]["free_in_heap"] < size
    assert books["keep"]["mapped_live"] == 0  # from the heap ...
    assert books["keep"]["free_in_heap"] >= size  # ... and kept there once freed


def test_norm_bias_lr_scale_with_muon_is_a_config_error():
    from cnnlab.train.config import ConfigValueError
    from cnnlab.train.engine.setup import build_optimizer
    from tests.configs import compose_cfg

    cfg = compose_cfg("optimizer=muon", "+optimizer.norm_bias_lr_scale=64")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ConfigValueError, match=r"optimizer\.norm_bias_lr_scale: got 64.*groups"):
        build_optimizer(cfg.optimizer, model)
