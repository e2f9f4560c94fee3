"""Dataset loaders as numpy arrays, splits and calibration samples; numpy (and OpenCV for images) only.

Importing the package registers every dataset, so `load_dataset(name)` knows them all.
"""

from edgecnn.data import datasets, images  # noqa: F401  (each registers its loaders)
from edgecnn.data.registry import load_dataset
from edgecnn.data.samples import keep_test_split, load_run_dataset, resolve_split, resolve_splits
from edgecnn.data.splits import SPLITS, Dataset, Split, calibration_samples, load_npz

__all__ = ["SPLITS", "Dataset", "Split", "calibration_samples", "keep_test_split", "load_dataset", "load_npz", "load_run_dataset", "resolve_split", "resolve_splits"]
