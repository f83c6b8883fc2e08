"""Data pipeline: arrays on the device, a seeded loader, splitting and standardization."""

from .dataset import ArrayDataset
from .loader import DataLoader
from .preprocessing import Standardizer, train_val_split

__all__ = ["ArrayDataset", "DataLoader", "Standardizer", "train_val_split"]
