"""Training on some of a dataset's classes: ``data.classes=[cat, dog]`` (names or indices)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["class_indices", "select_classes"]


def class_indices(classes: Sequence[str | int], names: Sequence[str]) -> list[int]:
    """The dataset indices of ``classes``, given by name (``"cat"``) or index (``3``), in the order
    given; ``ValueError`` naming the first unknown or repeated one."""
    indices = []
    for item in classes:
        index = names.index(item) if item in names else item
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(names):
            raise ValueError(
                f"{item!r} is not one of the classes: give names {list(names)} or indices 0–{len(names) - 1}"
            )
        if index in indices:
            raise ValueError(f"{item!r} is given twice")
        indices.append(index)
    return indices


def select_classes(data: dict[str, torch.Tensor], indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """``data`` (``{split}_images``, ``{split}_labels``) with only the images of ``indices``, whose
    labels become their positions in ``indices`` (``[3, 5]``: cat → 0, dog → 1)."""
    wanted = torch.tensor(list(indices))
    relabel = torch.full((int(wanted.max()) + 1,), -1, dtype=torch.int64)
    relabel[wanted] = torch.arange(len(wanted))
    out = {}
    for split in ("train", "test"):
        labels = data[f"{split}_labels"]
        keep = torch.isin(labels, wanted)
        out[f"{split}_images"] = data[f"{split}_images"][keep]
        out[f"{split}_labels"] = relabel[labels[keep]]
    return out
