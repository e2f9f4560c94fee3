"""Samples in memory: a split (x, y), a dataset's three splits, an .npz of samples, calibration draws."""

from __future__ import annotations

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


def holdout_tail(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[Split, Split]:
    """Split off the last `fraction` as validation, as Keras' validation_split does."""
    n_val = int(round(len(y) * fraction))
    return Split(x[:-n_val], y[:-n_val]), Split(x[-n_val:], y[-n_val:])


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


