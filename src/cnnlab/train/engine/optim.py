"""Optimisers beyond ``torch.optim``: Muon for convolution filters, as airbench94_muon trains them.

``torch.optim.Muon`` takes 2-D parameters only; :class:`Muon` here reads a filter
``(out, in/groups, *kernel)`` as the ``out × (in/groups·∏kernel)`` matrix it multiplies by in the
im2col view, and trains every other parameter (biases, normalisation shifts, the linear head) with
Nesterov SGD in the same optimiser, so one schedule and one checkpoint hold the whole update.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["Muon", "orthogonalize"]

# the quintic's coefficients: as steep as possible at 0 (Jordan et al., 2024)
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: Tensor, steps: int = 3, eps: float = 1e-7) -> Tensor:
    """About ``U·Vᵀ`` for ``matrix = U·S·Vᵀ`` (its nearest semi-orthogonal matrix), by the quintic
    Newton–Schulz iteration ``X ← a·X + (b·XXᵀ + c·(XXᵀ)²)·X`` from ``X₀ = matrix / ‖matrix‖_F``,
    ``(a, b, c) = (3.4445, −4.7750, 2.0315)``, in bfloat16. Its singular values end in about
    [0.5, 1.5] rather than at 1, which trains as well (airbench94_muon: 3 steps).

    Shape: ``matrix``: ``(m, n)``; returns ``(m, n)`` in bfloat16.
    """
    if matrix.dim() != 2:
        raise ValueError(f"orthogonalize: matrix must be 2-D, but has shape {tuple(matrix.shape)}")
    a, b, c = _NS_COEFFICIENTS
    x = matrix.to(torch.bfloat16)
    x = x / (x.norm() + eps)
    tall = x.size(0) > x.size(1)
    if tall:  # iterate on the smaller Gram matrix
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Muon (Jordan et al., 2024) on the filters, Nesterov SGD on the rest, as airbench94_muon.

    Parameters with 3 or more dimensions (convolution filters) take Muon's step: momentum
    ``b ← μ·b + g``, Nesterov ``u = g + μ·b``; the filter is rescaled to Frobenius norm
    ``√out_channels`` (the BatchNorm after it makes its scale irrelevant, so its step size stays
    fixed) and moves by ``w ← w − lr·orthogonalize(u as out × rest)``. 1-D parameters (biases,
    normalisation shifts) and 2-D ones (linear layers) take Nesterov SGD at ``vector_lr`` and
    ``matrix_lr`` with momentum ``sgd_momentum`` and coupled weight decay ``weight_decay / lr`` of
    their own rate (airbench's ``wd / lr``: every group decays by ``weight_decay·p`` per step at
    the peak rate, times the schedule's factor). Filters take no weight decay. The scale of the
    loss does not change the filters' steps; the SGD rates are for the mean loss.

    Args:
        params: the model's parameters (not groups: Muon sorts them by their number of dimensions).
        lr: the filters' step. Default: 0.02.
        momentum: the filters' momentum ``μ``. Default: 0.95.
        nesterov: Nesterov momentum for every group. Default: True.
        ns_steps: Newton–Schulz steps. Default: 3.
        vector_lr: the 1-D parameters' SGD rate. Default: 0.1.
        matrix_lr: the 2-D parameters' SGD rate. Default: 0.1.
        sgd_momentum: the SGD groups' momentum. Default: 0.9.
        weight_decay: the SGD groups' decay per step at the peak rate. Default: 0.

    Example:
        >>> from cnnlab.nn import Conv2d
        >>> model = torch.nn.Sequential(Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8, 2))
        >>> optimizer = Muon(model.parameters(), lr=0.24, momentum=0.6, vector_lr=0.1, matrix_lr=1.0)
        >>> [group["kind"] for group in optimizer.param_groups]
        ['filter', 'vector', 'matrix']
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 3,
        vector_lr: float = 0.1,
        matrix_lr: float = 0.1,
        sgd_momentum: float = 0.9,
        weight_decay: float = 0.0,
    ) -> None:
        for name, value in (("lr", lr), ("vector_lr", vector_lr), ("matrix_lr", matrix_lr)):
            if not value > 0:
                raise ValueError(f"Muon: {name} must be > 0, but got {name}={value}")
        for name, value in (("momentum", momentum), ("sgd_momentum", sgd_momentum)):
            if not 0 <= value < 1:
                raise ValueError(f"Muon: {name} must be in [0, 1), but got {name}={value}")
        if not (isinstance(ns_steps, int) and ns_steps >= 1):
            raise ValueError(f"Muon: ns_steps must be an int >= 1, but got ns_steps={ns_steps!r}")
        if weight_decay < 0:
            raise ValueError(f"Muon: weight_decay must be >= 0, but got weight_decay={weight_decay}")
        params = list(params)
        if any(isinstance(p, dict) for p in params):
            raise TypeError("Muon: give the parameters, not groups: it groups them by their number of dimensions")
        by_kind = {
            "filter": [p for p in params if p.dim() >= 3],
            "vector": [p for p in params if p.dim() <= 1],
            "matrix": [p for p in params if p.dim() == 2],
        }
        groups = [
            {"params": by_kind["filter"], "kind": "filter", "lr": lr, "momentum": momentum, "weight_decay": 0.0},
            {"params": by_kind["vector"], "kind": "vector", "lr": vector_lr, "weight_decay": weight_decay / vector_lr},
            {"params": by_kind["matrix"], "kind": "matrix", "lr": matrix_lr, "weight_decay": weight_decay / matrix_lr},
        ]
        defaults = dict(lr=lr, momentum=sgd_momentum, nesterov=nesterov, ns_steps=ns_steps, weight_decay=0.0)
        super().__init__([group for group in groups if group["params"]], defaults)

    @torch.no_grad()
    def step(self, closure=None):  # (torch.optim.Optimizer's signature)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, nesterov = group["lr"], group["momentum"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad)
                buffer = state["momentum_buffer"]
                buffer.mul_(momentum).add_(grad)
                update = grad.add(buffer, alpha=momentum) if nesterov else buffer
                if group["kind"] == "filter":
                    p.mul_(p.size(0) ** 0.5 / p.norm())
                    update = orthogonalize(update.reshape(p.size(0), -1), group["ns_steps"]).view(p.shape)
                p.add_(update.to(p.dtype), alpha=-lr)
        return loss
