"""ebnn_core: the network description, its integer form, the reference inference and the cost models.

Light to import (no torch): ArchSpec, FoldedModel, the reference, memory and latency models.
Training lives in ebnn_core.nn / ebnn_core.training / ebnn_core.data (they import torch and Lightning).
"""
from .arch import ArchSpec, ArchSpecError, ConvBlock, DenseBlock, LayerShape
from .folded import FoldedLayer, FoldedModel
from .reference import predict as reference_predict
from .resources import (Device, DeviceError, MemoryReport, OpCounts, latency_ms, memory_plan, op_counts,
                        total_ops)

__all__ = [
    "ArchSpec", "ArchSpecError", "ConvBlock", "DenseBlock", "LayerShape", "FoldedLayer", "FoldedModel",
    "reference_predict", "Device", "DeviceError", "MemoryReport", "OpCounts", "latency_ms", "memory_plan",
    "op_counts", "total_ops",
]
