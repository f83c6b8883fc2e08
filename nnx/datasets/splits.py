"""The value every data set loader returns: train and test arrays with what the task needs."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class DatasetSplits:
    """A data set ready for training: host arrays ``train = (x, y)`` and ``test = (x, y)``.

    ``task`` is ``"classification"`` (int64 labels, ``num_classes`` classes) or ``"regression"``
    (float32 targets of shape ``(n, num_outputs)``).
    """

    name: str
    task: str
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    num_classes: int | None = None
    image_shape: tuple[int, ...] | None = None
    # a .csv file's: the label names behind class indices 0..K-1 (None for integer labels),
    # the feature columns in order and the label column, kept so that predictions read the
    # same columns and report the original names (nnx-predict)
    class_names: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    label_name: str | None = None
    # a streamed file (memory maps) without a test split: train and test are the same arrays,
    # and these are the rows of each (the training rows in the order an in-memory load has)
    rows: tuple[np.ndarray, np.ndarray] | None = None

    def images(self) -> DatasetSplits:
        """The same data with each sample as an image ``image_shape`` (``(C, H, W)``) instead of
        a flat feature vector, for convolutional models; the split itself when it has no image
        shape or already has it.

        >>> from nnx.datasets import load_dataset
        >>> data = load_dataset("digits")
        >>> data.train[0].shape, data.images().train[0].shape
        ((1438, 64), (1438, 1, 8, 8))
        """
        shape = self.image_shape
        if shape is None or tuple(self.train[0].shape[1:]) == shape:
            return self

        def reshaped(split: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            return split[0].reshape(len(split[0]), *shape), split[1]

        return replace(self, train=reshaped(self.train), test=reshaped(self.test))

    @property
    def num_features(self) -> int:
        return int(self.train[0].shape[1])

    @property
    def num_outputs(self) -> int:
        """Units of the model's last layer: the class count, or the regression target width."""
        return self.num_classes if self.num_classes is not None else int(self.train[1].shape[1])
