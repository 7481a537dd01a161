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
    CONVS,
    POOLS,
    LayerKind,
    create_conv,
    create_conv_transpose,
    create_global_pool,
    create_pool,
)

__all__ = [
    "CONVS",
    "LAYER_TYPES",
    "POOLS",
    "LayerKind",
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
