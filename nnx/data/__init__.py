"""Data pipeline: arrays on the device, memory maps, datasets and streams, a seeded loader with
prefetching, splitting and standardization (in memory or in one streaming pass)."""

from .dataset import ArrayDataset
from .loader import DataLoader
from .preprocessing import Standardizer, train_val_split
from .statistics import RunningStatistics, fit_standardize
from .stream import BatchStream
from .subset import Subset

__all__ = [
    "ArrayDataset",
    "BatchStream",
    "DataLoader",
    "RunningStatistics",
    "Standardizer",
    "Subset",
    "fit_standardize",
    "train_val_split",
]
