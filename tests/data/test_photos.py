"""The photo set (edgecnn/data/photos.py): installed photos, views, the split by photo, errors.

Fast tests use the photos PyPI packages ship (edgecnn[photos], part of edgecnn[train]); the full
set needs Debian's too (make photos) and is tested in the slow tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.data import load_dataset
from edgecnn.data import photos as photos_module
from edgecnn.data.photos import SOURCES, VIEWS, PhotoSource, View, find_photos, split_photos, view_frame
from edgecnn.errors import EdgecnnError

PIP = ["scikit-learn", "scikit-image", "matplotlib"]  # 10 photos
PRE = {"layout": "NCHW", "color": "rgb", "size": [32, 48], "resize": "center_crop", "crop_pct": 0.875,
       "scale": 1.0, "mean": [127.0], "std": [128.0]}
DEBIAN = [s for s in SOURCES if s.folder is not None]
HAS_DEBIAN = all(not s.missing() for s in DEBIAN)


def _keys(data, split: str) -> set[str]:
    return {data.labels[i] for i in data.split(split).y.tolist()}


def test_pip_photos_split_by_photo_into_disjoint_views():
    data = load_dataset("photos", preprocess=PRE, sources=PIP)
    calibration, check = _keys(data, "train"), _keys(data, "test")
    assert calibration.isdisjoint(check) and len(calibration | check) == 10 == len(data.labels)
    assert data.val is data.test
    for source in ("scikit-learn", "scikit-image"):  # a source of two photos or more gives to both sides
        assert any(k.startswith(source + "/") for k in calibration) and any(k.startswith(source + "/") for k in check)
    assert "matplotlib/grace_hopper.jpg" in calibration  # a source's single photo calibrates
    assert len(data.train) == len(VIEWS) * len(calibration) and len(data.test) == len(VIEWS) * len(check)
    assert np.all(np.bincount(data.train.y, minlength=10)[sorted(data.labels.index(k) for k in calibration)] == len(VIEWS))
    assert data.train.x.shape[1:] == (3, 32, 48) and data.train.x.dtype == np.float32
    assert -1.0 <= data.train.x.min() and data.train.x.max() <= 1.0  # (x − 127) / 128
    assert f"{len(data.train)} views of {len(calibration)} calibration photos" in data.source


def test_split_is_deterministic_and_keeps_a_photo_on_its_side():
    photos = find_photos(PIP)
    keys = [{p.key for p in side} for side in split_photos(photos)]
    assert [{p.key for p in side} for side in split_photos(photos[::-1])] == keys  # the order found does not matter
    photos_module._photo_set.cache_clear()
    a = load_dataset("photos", preprocess=PRE, sources=PIP)
    photos_module._photo_set.cache_clear()
    b = load_dataset("photos", preprocess=PRE, sources=PIP)
    assert a.labels == b.labels and np.array_equal(a.train.x, b.train.x) and np.array_equal(a.test.y, b.test.y)
    fewer = load_dataset("photos", preprocess=PRE, sources=["scikit-image"])  # a source's photos keep their side
    assert _keys(fewer, "train") <= _keys(a, "train") and _keys(fewer, "test") <= _keys(a, "test")


def test_views_are_frames_of_the_photo_kept_inside_it():
    image = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    image[:, :, 0] = np.arange(200)[None, :]  # blue channel: the column
    assert np.array_equal(view_frame(image, View(1.0)), image)
    assert np.array_equal(view_frame(image, View(1.0, mirror=True)), image[:, ::-1])
    crop = view_frame(image, View(0.5, 0.0, 1.0))  # asked for beyond the corner: moved inside
    assert crop.shape == (50, 100, 3) and crop[0, 0, 0] == 0 and np.array_equal(crop, image[50:, :100])
    centre = view_frame(image, View(0.6))
    assert centre.shape == (60, 120, 3) and centre[0, 0, 0] == 40


def test_views_follow_the_preprocess_layout_and_color():
    gray = {**PRE, "layout": "NHWC", "color": "gray", "size": [24, 24], "mean": [0.0], "std": [1.0], "scale": 1 / 255}
    data = load_dataset("photos", preprocess=gray, sources=["scikit-learn"])
    assert data.train.x.shape == (len(VIEWS), 24, 24, 1) and data.test.x.shape == (len(VIEWS), 24, 24, 1)
    stretch = {**PRE, "resize": "stretch"}
    assert load_dataset("photos", preprocess=stretch, sources=["scikit-learn"]).train.x.shape == (len(VIEWS), 3, 32, 48)


def test_a_missing_source_is_one_line_naming_its_install(monkeypatch, tmp_path):
    absent = PhotoSource("dataset-nowhere", ("a.jpg",), "make photos (apt-get install dataset-nowhere)", "CC0", folder=tmp_path / "none")
    monkeypatch.setattr(photos_module, "SOURCES", (*SOURCES, absent))
    with pytest.raises(EdgecnnError) as info:
        find_photos(["scikit-learn", "dataset-nowhere"])
    assert "\n" not in str(info.value) and "dataset-nowhere: make photos (apt-get install dataset-nowhere)" in str(info.value)
    with pytest.raises(EdgecnnError, match=r"unknown photo source\(s\) 'kodak' \(accepted: scikit-learn, "):
        load_dataset("photos", preprocess=PRE, sources=["kodak"])
    with pytest.raises(EdgecnnError, match="needs a preprocess"):
        load_dataset("photos")


def test_a_folder_of_own_photos_is_a_photo_set(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "mine").mkdir()
    for i in range(5):
        cv2.imwrite(str(tmp_path / "mine" / f"{i}.png"), rng.integers(0, 256, (40 + i, 60, 3), dtype=np.uint8))
    data = load_dataset("photos", preprocess=PRE, data_dir=str(tmp_path / "mine"))
    assert sorted(data.labels) == [f"mine/{i}.png" for i in range(5)]
    assert len(data.train) == 3 * len(VIEWS) and len(data.test) == 2 * len(VIEWS)
    assert _keys(data, "train").isdisjoint(_keys(data, "test"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgecnnError, match="holds no images"):
        load_dataset("photos", preprocess=PRE, data_dir=str(tmp_path / "empty"))


def _write_pzl(path: Path, photo: np.ndarray) -> None:
    """A jigzo puzzle as the game's files are laid out: header lines, then name, size and bytes of each part."""
    texture = np.zeros((128, 128, 3), np.uint8)
    h, w = photo.shape[:2]
    texture[: h + 2, : w + 2] = 255  # the one-pixel frame around the photo
    texture[1 : h + 1, 1 : w + 1] = photo
    parts = {"p.map": f"#texture map data\ncrop000 0 0 10 10 5 5 0 0 0 0\nimage 0 0 {w + 2} {h + 2} 1 1\n".encode(),
             "p-t.jpg": cv2.imencode(".jpg", photo[::2, ::2])[1].tobytes(),
             "p.png": cv2.imencode(".png", texture[:, :, 0])[1].tobytes(),
             "p.jpg": cv2.imencode(".png", texture)[1].tobytes()}  # lossless here, so the test can compare pixels
    body = b"PzlF\n0.1\np\nhttp://example/\n" + b"".join(f"{n}\n{len(d)}\n".encode() + d for n, d in parts.items())
    path.write_bytes(body)


def test_jigzo_puzzles_give_the_photo_inside_them(tmp_path):
    photo = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    _write_pzl(tmp_path / "p.pzl", photo)
    read = photos_module.READERS["jigzo"](tmp_path / "p.pzl")
    assert read.shape == photo.shape and np.array_equal(read, photo)
    (tmp_path / "bad.pzl").write_bytes(b"PzlF\n0.1\nbad\n")
    assert photos_module.READERS["jigzo"](tmp_path / "bad.pzl") is None


def test_imagenet_refuses_an_unknown_calibration():
    with pytest.raises(EdgecnnError, match=r"imagenet calibration 'kodak' is not accepted \(accepted: own, photos\)"):
        load_dataset("imagenet", preprocess=PRE, calibration="kodak")


def test_photos_need_neither_torch_nor_the_packages_that_ship_them():
    """A Pi checking an int8 model reads the photos with numpy and OpenCV alone."""
    code = f"""
import sys
sys.modules["torch"] = None  # importing it now raises ImportError
from edgecnn.data import load_dataset
data = load_dataset("photos", preprocess={PRE!r}, sources={PIP!r})
print(len(data.train) + len(data.test))
print(any(name in sys.modules for name in ("sklearn", "skimage", "matplotlib")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(10 * len(VIEWS)), "False"]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DEBIAN, reason="needs Debian's photos (make photos)")
def test_installed_photo_set_has_200_views_of_different_photos():
    lite0 = {**PRE, "size": [224, 224]}
    data = load_dataset("photos", preprocess=lite0)
    calibration, check = _keys(data, "train"), _keys(data, "test")
    assert len(data.labels) == sum(len(s.files) for s in SOURCES) >= 40
    assert calibration.isdisjoint(check) and calibration | check == set(data.labels)
    assert len(data.train) + len(data.test) >= 200 and min(len(data.train), len(data.test)) >= 80
    assert {k.split("/")[0] for k in check} == {s.name for s in SOURCES if len(s.files) > 1}  # each is on both sides
    assert data.train.x.shape[1:] == (3, 224, 224)
    for source in DEBIAN:  # every Debian photo reads as a colour photo of some size
        for photo in (p for p in find_photos([source.name])):
            image = photo.read()
            assert image.ndim == 3 and min(image.shape[:2]) >= 300 and image.std() > 10, photo.key


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DEBIAN, reason="needs Debian's photos (make photos)")
def test_imagenet_can_calibrate_on_the_photo_set():
    from edgecnn.data.images import NO_LABEL, imagenet_labels

    pre = {**PRE, "size": [64, 64]}
    data = load_dataset("imagenet", preprocess=pre, calibration="photos")
    photos = load_dataset("photos", preprocess=pre)
    assert np.array_equal(data.train.x, photos.train.x) and set(data.train.y.tolist()) == {NO_LABEL}
    assert [imagenet_labels()[i] for i in data.test.y] == ["palace", "daisy"] and "unlabelled views" in data.source
