"""Shared fixtures: one small digits run, trained once per test session on real data."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A digits run folder with model.pt, model.fp32.onnx and model.int8.onnx (a few epochs)."""
    from edgecnn.quantize.model import quantize_model
    from edgecnn.train.export import export_run
    from edgecnn.train.fit import train

    run = tmp_path_factory.mktemp("runs") / "digits"
    train("digits", run, epochs=12, show_progress=False)
    export_run(run)
    quantize_model(run / "model.fp32.onnx", calib=run, samples=128)
    return run


def write_idx(path: Path, array, gz: bool = True) -> Path:
    """An IDX file of unsigned bytes, as MNIST ships them (magic 2051 for 3 dims, 2049 for 1)."""
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + array.astype("uint8").tobytes())
    return path


@pytest.fixture(scope="session")
def mnist_like_dir(tmp_path_factory) -> Path:
    """The four MNIST-format IDX .gz files: 200 train and 50 test 28×28 images, each class a bright bar."""
    import numpy as np

    folder = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("t10k", 50)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255  # class k: a bar at row 2 + 2k
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def idx_writer():
    """write_idx, for tests that build their own (often broken) IDX files."""
    return write_idx
