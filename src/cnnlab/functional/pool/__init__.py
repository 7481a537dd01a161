"""Pooling: one module per family of pools (:mod:`.max`, :mod:`.avg`, :mod:`.adaptive`,
:mod:`.fractional`, :mod:`.unpool`, :mod:`.weighted`, :mod:`.maxout`), each describing its
implementations for the one dispatch (:mod:`.dispatch`) that picks eager kernel, traceable form
(:mod:`.traceable`) or Triton (:mod:`.triton`). Built from strided views, reductions,
``gather``/``scatter`` and ``matmul``: never torch's pooling ops."""

from .adaptive import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_avg_pool3d,
    adaptive_max_pool1d,
    adaptive_max_pool1d_with_indices,
    adaptive_max_pool2d,
    adaptive_max_pool2d_with_indices,
    adaptive_max_pool3d,
    adaptive_max_pool3d_with_indices,
    global_avg_pool2d,
    global_max_pool2d,
)
from .avg import avg_pool1d, avg_pool2d, avg_pool3d, lp_pool1d, lp_pool2d, lp_pool3d
from .fractional import (
    fractional_max_pool2d,
    fractional_max_pool2d_with_indices,
    fractional_max_pool3d,
    fractional_max_pool3d_with_indices,
)
from .max import (
    max_pool1d,
    max_pool1d_with_indices,
    max_pool2d,
    max_pool2d_with_indices,
    max_pool3d,
    max_pool3d_with_indices,
)
from .maxout import channel_max_pool
from .unpool import max_unpool1d, max_unpool2d, max_unpool3d
from .weighted import binomial_filter, blur_pool2d, distance_weighted_pool2d, distance_weights, max_blur_pool2d

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d",
    "adaptive_max_pool3d_with_indices",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "binomial_filter",
    "blur_pool2d",
    "channel_max_pool",
    "distance_weighted_pool2d",
    "distance_weights",
    "fractional_max_pool2d",
    "fractional_max_pool2d_with_indices",
    "fractional_max_pool3d",
    "fractional_max_pool3d_with_indices",
    "global_avg_pool2d",
    "global_max_pool2d",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "max_blur_pool2d",
    "max_pool1d",
    "max_pool1d_with_indices",
    "max_pool2d",
    "max_pool2d_with_indices",
    "max_pool3d",
    "max_pool3d_with_indices",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
]
