"""Normalization layers, one family per file: ``batch`` (BatchNorm1d, BatchNorm2d), ``group``
(GroupNorm), ``layer`` (LayerNorm, RMSNorm over trailing feature axes) and ``sync``
(SyncBatchNorm: batch statistics over every rank of a data-parallel run)."""

from .batch import BatchNorm1d, BatchNorm2d
from .group import GroupNorm
from .layer import LayerNorm, RMSNorm
from .sync import SyncBatchNorm

__all__ = ["BatchNorm1d", "BatchNorm2d", "GroupNorm", "LayerNorm", "RMSNorm", "SyncBatchNorm"]
