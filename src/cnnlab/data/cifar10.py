"""CIFAR-10 from torchvision's pickle layout, read by cnnlab itself.

The reader does not use torchvision's md5 check (the shared copy's batch files are rebuilt and
their md5s differ, see ``../shared/data/README.md``), and it unpickles with a restricted
unpickler that can build only what a CIFAR batch holds: dicts, lists, strings, bytes, ints and
numpy arrays. Any other global (``os.system``, ``builtins.eval``, ...) is refused.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

__all__ = ["CIFAR10_CLASSES", "DatasetNotFoundError", "load_cifar10", "resolve_root", "restricted_load"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ENV_VAR = "CNNLAB_DATA"

# The only globals a CIFAR-10 batch pickle needs (numpy array reconstruction).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The dataset is not where the config says; the message lists where cnnlab looked and how to fix it."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR-10 batch holds only dicts, lists, bytes, ints and numpy arrays"
        )


def restricted_load(data: bytes) -> object:
    """Unpickle ``data`` allowing only the objects a CIFAR batch contains."""
    return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``root`` if given, else ``$CNNLAB_DATA``, else ``./data``."""
    if root:
        return Path(root).expanduser().resolve()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().resolve()
    return Path("data").resolve()


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = restricted_load(path.read_bytes())
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 batch (expected a dict with 'data' and 'labels')")
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if len(data) != len(labels):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def _download(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    print(f"Downloading CIFAR-10 from {URL} to {archive} ...", flush=True)
    urllib.request.urlretrieve(URL, archive)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")


def load_cifar10(root: str | os.PathLike | None = None, download: bool = False) -> dict[str, torch.Tensor]:
    """Return ``{"train_images", "train_labels", "test_images", "test_labels"}``: images as
    ``(N, 3, 32, 32)`` uint8, labels int64. Raises :class:`DatasetNotFoundError` with the places
    looked at and the fixes when the files are missing."""
    base = resolve_root(root)
    folder = base / FOLDER
    missing = [name for name in TRAIN_FILES + TEST_FILES if not (folder / name).is_file()]
    if missing and download:
        _download(base)
        missing = [name for name in TRAIN_FILES + TEST_FILES if not (folder / name).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"CIFAR-10 not found: looked for {folder}/{{{','.join(missing)}}} (config data.root = paths.data_dir = "
            f"{root!r}; paths.data_dir is ${ENV_VAR} from the environment or .env, else <repo>/data; "
            f"${ENV_VAR}={os.environ.get(ENV_VAR)!r}). Fix: put CNNLAB_DATA=/path/containing/{FOLDER} in .env (see "
            f".env.example), or pass paths.data_dir=/path/containing/{FOLDER}, or data.download=true where there is "
            f"internet, or use data=synthetic."
        )
    out = {}
    for split, names in (("train", TRAIN_FILES), ("test", TEST_FILES)):
        parts = [_read_batch(folder / name) for name in names]
        out[f"{split}_images"] = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        out[f"{split}_labels"] = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return out
