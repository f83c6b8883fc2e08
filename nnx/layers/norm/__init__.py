"""Normalization layers, one family per file: ``batch`` (BatchNorm1d/2d/3d), ``instance``
(InstanceNorm1d/2d/3d), ``group`` (GroupNorm), ``layer`` (LayerNorm, RMSNorm over trailing
feature axes), ``local_response`` (LocalResponseNorm across channels) and ``sync``
(SyncBatchNorm: batch statistics over every rank of a data-parallel run)."""

from .batch import BatchNorm1d, BatchNorm2d, BatchNorm3d
from .group import GroupNorm
from .instance import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d
from .layer import LayerNorm, RMSNorm
from .local_response import LocalResponseNorm
from .sync import SyncBatchNorm

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "LocalResponseNorm",
    "RMSNorm",
    "SyncBatchNorm",
]
