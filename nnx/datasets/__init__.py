"""Datasets nnx generates itself from a seed (no download, no dependency)."""

from .synthetic import spiral

__all__ = ["spiral"]
