"""Models assembled from YAML layer lists (no Python class per experiment)."""

from .builder import (
    LAYER_TYPES,
    ModelConfigError,
    Residual,
    ShapeRow,
    build_model,
    format_shape_table,
    model_layer_rows,
)
from .factory import (
    CONV_KINDS,
    CONV_OPTIONS,
    POOL_KINDS,
    POOL_OPTIONS,
    create_conv,
    create_conv_transpose,
    create_global_pool,
    create_pool,
)

__all__ = [
    "CONV_KINDS",
    "CONV_OPTIONS",
    "LAYER_TYPES",
    "POOL_KINDS",
    "POOL_OPTIONS",
    "ModelConfigError",
    "Residual",
    "ShapeRow",
    "build_model",
    "create_conv",
    "create_conv_transpose",
    "create_global_pool",
    "create_pool",
    "format_shape_table",
    "model_layer_rows",
]
