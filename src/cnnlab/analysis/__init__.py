"""Seeing the ideas behind CNNs, measured on any model: receptive fields (analytic and
empirical), sparse interactions and parameter sharing, translation equivariance, shift
invariance from pooling, and which input sizes a model accepts."""

from .equivariance import EquivarianceError, conv_equivariance, equivariance_error
from .invariance import classification_consistency, feature_change, layer_output, pooling_layer
from .receptive_field import ReceptiveField, empirical_receptive_field, receptive_fields
from .report import ModelReport, accepted_input_sizes, analyze, format_report, report_metrics
from .sparsity import LayerCost, layer_costs

__all__ = [
    "EquivarianceError",
    "LayerCost",
    "ModelReport",
    "ReceptiveField",
    "accepted_input_sizes",
    "analyze",
    "classification_consistency",
    "conv_equivariance",
    "empirical_receptive_field",
    "equivariance_error",
    "feature_change",
    "format_report",
    "layer_costs",
    "layer_output",
    "pooling_layer",
    "receptive_fields",
    "report_metrics",
]
