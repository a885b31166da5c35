"""Data: bundled and file data sets (:mod:`~pyrovae.data.datasets`) and the one
interface through which training and evaluation read them, in-memory or streamed
(:mod:`~pyrovae.data.source`)."""

from pyrovae.data.datasets import (
    TRANSFORMS,
    Dataset,
    as_array,
    as_tensor,
    binarize_fixed,
    dataset_names,
    load_dataset,
    read_idx,
    register_dataset,
    train_test_split,
)
from pyrovae.data.labels import UNLABELLED, check_class_labels, mask_labels
from pyrovae.data.mnist import ArrayUnpickler, read_mnist_pickle
from pyrovae.data.source import (
    ArrayDataset,
    Batch,
    DataSource,
    LoaderSource,
    TensorSource,
    as_source,
)

__all__ = [
    "TRANSFORMS",
    "UNLABELLED",
    "ArrayDataset",
    "ArrayUnpickler",
    "Batch",
    "DataSource",
    "Dataset",
    "LoaderSource",
    "TensorSource",
    "as_array",
    "as_source",
    "as_tensor",
    "binarize_fixed",
    "check_class_labels",
    "dataset_names",
    "load_dataset",
    "mask_labels",
    "read_idx",
    "read_mnist_pickle",
    "register_dataset",
    "train_test_split",
]
