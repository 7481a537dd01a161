"""Datasets as whole uint8 tensors, and batched augmentation that runs on the training device."""

from .augment import POLICIES, augment_batch, normalize
from .cifar10 import CIFAR10_CLASSES, DatasetNotFoundError, load_cifar10
from .classes import class_indices, select_classes
from .loader import TensorImageLoader
from .synthetic import make_synthetic

__all__ = [
    "CIFAR10_CLASSES",
    "POLICIES",
    "DatasetNotFoundError",
    "TensorImageLoader",
    "augment_batch",
    "class_indices",
    "load_cifar10",
    "make_synthetic",
    "normalize",
    "select_classes",
]
