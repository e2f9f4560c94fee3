"""Dataset loaders as numpy arrays (NCHW float32 samples, int64 labels), splits and calibration.

numpy only at import time, so `eval` can read a run's data without torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int) -> "Split":
        return Split(self.x[:n], self.y[:n])


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits with class names and where the data came from."""

    train: Split
    val: Split
    test: Split
    labels: list[str]
    source: str

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise EdgecnnError(f"unknown split {name!r} (accepted: {', '.join(SPLITS)})")
        return getattr(self, name)


LOADERS: dict[str, Callable[..., Dataset]] = {}


def register(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
    name = fn.__name__.removeprefix("load_")
    if name in LOADERS:
        raise ValueError(f"dataset {name!r} is registered twice")
    LOADERS[name] = fn
    return fn


def load_dataset(name: str, **options) -> Dataset:
    """Load a registered dataset by name."""
    if name not in LOADERS:
        raise EdgecnnError(f"unknown dataset {name!r} (accepted: {', '.join(sorted(LOADERS))})")
    return LOADERS[name](**options)


def holdout_tail(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[Split, Split]:
    """Split off the last `fraction` as validation, as Keras' validation_split does."""
    n_val = int(round(len(y) * fraction))
    return Split(x[:-n_val], y[:-n_val]), Split(x[-n_val:], y[-n_val:])


@register
def load_digits(val_fraction: float = 0.1) -> Dataset:
    """scikit-learn's 1797 8×8 digits: first 1500 train (last 10% of them validation), 297 test."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise EdgecnnError("the digits dataset needs scikit-learn: pip install 'edgecnn[train]'") from None
    bunch = sk_load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # pixel values 0..16, as in the seed
    y = bunch.target.astype(np.int64)
    train, val = holdout_tail(x[:1500], y[:1500], val_fraction)
    return Dataset(train, val, Split(x[1500:], y[1500:]), [str(i) for i in range(10)], "sklearn load_digits")


def load_npz(path: Path) -> Split:
    """Samples and labels from an .npz file with arrays `x` and `y`."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"data file {path} not found")
    try:
        with np.load(path) as npz:
            missing = {"x", "y"} - set(npz.files)
            if missing:
                raise EdgecnnError(f"{path} lacks arrays {sorted(missing)}; an .npz needs 'x' (samples) and 'y' (labels)")
            x, y = npz["x"], npz["y"]
    except (ValueError, OSError) as exc:
        raise EdgecnnError(f"{path} is not a readable .npz file ({exc})") from None
    if len(x) != len(y):
        raise EdgecnnError(f"{path}: x has {len(x)} samples but y has {len(y)} labels")
    return Split(x.astype(np.float32), y.astype(np.int64))


def calibration_samples(split: Split, n: int, seed: int = 0) -> np.ndarray:
    """`n` samples drawn without replacement (all of them when the split is smaller)."""
    if n <= 0:
        raise EdgecnnError(f"calibration sample count must be positive, got {n}")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(split), size=min(n, len(split)), replace=False)
    return split.x[np.sort(idx)]


def load_run_dataset(run: Path) -> Dataset:
    """The dataset a run folder's recipe.json names, with its options."""
    recipe = Path(run) / "recipe.json"
    if not recipe.is_file():
        raise EdgecnnError(f"{run} is not a run folder (no recipe.json); give a run folder or an .npz with x and y")
    try:
        spec = json.loads(recipe.read_text())
        return load_dataset(spec["dataset"], **spec.get("dataset_options", {}))
    except (json.JSONDecodeError, KeyError):
        raise EdgecnnError(f"{recipe} is not a recipe written by edgecnn train") from None


def resolve_split(data: Path | None, model: Path, split: str) -> tuple[Split, str]:
    """Samples for a model: an .npz file, a run folder's split, or the split of the model's own run."""
    if data is None:
        data = Path(model).parent
        if not (data / "recipe.json").is_file():
            raise EdgecnnError(f"{model} is not inside a run folder; pass --data RUN or --data file.npz")
    data = Path(data)
    if data.suffix == ".npz":
        return load_npz(data), str(data)
    if not data.exists():
        raise EdgecnnError(f"data {data} not found; give a run folder or an .npz with x and y")
    dataset = load_run_dataset(data)
    return dataset.split(split), f"{dataset.source} ({split} split)"
