"""Image folders (edgecnn/data/images.py): layouts, OpenCV reading per the recipe's preprocess, splits, errors."""

from __future__ import annotations

import numpy as np
import pytest
from image_folders import write_image_folder

from edgecnn.data import load_dataset
from edgecnn.data.images import imagenet_labels, load_image_folder
from edgecnn.errors import EdgecnnError

PRE = {"layout": "NCHW", "color": "rgb", "size": [30, 40], "resize": "stretch", "scale": 1 / 255, "mean": [0.0], "std": [1.0]}


def test_flat_folder_reads_classes_in_name_order_and_skips_corrupt_files(tmp_path):
    root = write_image_folder(tmp_path / "pets", {"dogs": 5, "cats": 5}, corrupt={"cats": 2})
    data = load_dataset("image_folder", data_dir=str(root), preprocess=PRE)
    assert data.labels == ["cats", "dogs"]
    assert data.train.x.shape[1:] == (3, 30, 40) and data.train.x.dtype == np.float32
    assert 0.0 <= data.train.x.min() and data.train.x.max() <= 1.0  # scale 1/255
    assert len(data.train) + len(data.val) == 10  # the two broken files and notes.txt are not samples
    assert sorted(np.bincount(data.val.y)) == [1, 1]  # 20% of each class, at least one
    assert data.test is data.val
    assert "2 unreadable image(s) skipped" in data.source and "broken0.jpg" in data.source
    assert "test = the validation images" in data.source


def test_colors_arrive_as_rgb(tmp_path):
    root = write_image_folder(tmp_path / "pets", {"cats": 2, "dogs": 2})  # cats red, dogs blue (BGR on disk)
    data = load_image_folder(str(root), PRE)
    x = np.concatenate([data.train.x, data.val.x])
    y = np.concatenate([data.train.y, data.val.y])
    red, blue = x[:, 0].max(axis=(1, 2)), x[:, 2].max(axis=(1, 2))
    assert (red[y == 0] > 0.8).all() and (blue[y == 0] < 0.5).all()
    assert (blue[y == 1] > 0.8).all() and (red[y == 1] < 0.5).all()


def test_carved_validation_is_deterministic_and_follows_the_seed(tmp_path):
    root = write_image_folder(tmp_path / "pets", {"cats": 10, "dogs": 10})
    a = load_image_folder(str(root), PRE, seed=0)
    b = load_image_folder(str(root), PRE, seed=0)
    c = load_image_folder(str(root), PRE, seed=1)
    assert np.array_equal(a.val.x, b.val.x) and np.array_equal(a.val.y, b.val.y)
    assert not np.array_equal(a.val.x, c.val.x)
    assert len(a.val) == 4 and "20% of each training class (seed 0)" in a.source


def test_kaggle_layout_uses_the_validation_and_test_folders(tmp_path):
    write_image_folder(tmp_path / "k" / "train", {"cats": 4, "dogs": 4})
    write_image_folder(tmp_path / "k" / "validation", {"cats": 2, "dogs": 2})
    data = load_image_folder(str(tmp_path / "k"), PRE)
    assert (len(data.train), len(data.val), len(data.test)) == (8, 4, 4)
    assert "validation = validation/" in data.source
    write_image_folder(tmp_path / "k" / "test", {"cats": 1, "dogs": 1})
    data = load_image_folder(str(tmp_path / "k"), PRE)  # a changed folder is read again, not taken from the cache
    assert len(data.test) == 2 and "test = the validation" not in data.source


def test_classes_option_picks_folders_and_label_order(tmp_path):
    root = write_image_folder(tmp_path / "pets", {"cats": 3, "dogs": 3, "birds": 3})
    data = load_image_folder(str(root), PRE, classes=["dogs", "cats"])
    assert data.labels == ["dogs", "cats"] and len(data.train) + len(data.val) == 6
    with pytest.raises(EdgecnnError, match="lacks class folder.*horses"):
        load_image_folder(str(root), PRE, classes=["cats", "horses"])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: None, "image folder .* not found"),
        (lambda root: root.mkdir(), "has no class folders"),
        (lambda root: (write_image_folder(root, {"cats": 2}), (root / "dogs").mkdir()), r"dogs holds no readable images \(accepted: .jpg"),
        (lambda root: write_image_folder(root, {"cats": 2, "dogs": 0}, corrupt={"dogs": 1}), r"dogs holds no readable images \(1 unreadable\)"),
    ],
)
def test_bad_folders_are_one_clear_error(tmp_path, make, message):
    root = tmp_path / "pets"
    make(root)
    with pytest.raises(EdgecnnError, match=message):
        load_image_folder(str(root), PRE)


def test_missing_data_dir_names_the_flag_and_validation_must_match_train(tmp_path):
    with pytest.raises(EdgecnnError, match="--data-dir"):
        load_dataset("image_folder", preprocess=PRE)
    write_image_folder(tmp_path / "k" / "train", {"cats": 2, "dogs": 2})
    write_image_folder(tmp_path / "k" / "validation", {"cats": 2})
    with pytest.raises(EdgecnnError, match="validation lacks class folder.*dogs"):
        load_image_folder(str(tmp_path / "k"), PRE)


def test_imagenet_sample_photos_are_labelled_palace_and_daisy():
    pre = {**PRE, "size": [64, 64], "resize": "center_crop", "crop_pct": 0.875}
    data = load_dataset("imagenet", preprocess=pre)
    labels = imagenet_labels()
    assert len(labels) == 1000 and data.labels == labels
    assert [labels[i] for i in data.test.y] == ["palace", "daisy"]
    assert data.train.x.shape == (16, 3, 64, 64) and set(data.train.y) == set(data.test.y)


def test_imagenet_folder_maps_class_names_to_imagenet_indices(tmp_path):
    import cv2
    from image_folders import photo

    for name in ("daisy", "palace"):
        (tmp_path / "inet" / name).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "inet" / name / "a.png"), photo("cats", 0))
        cv2.imwrite(str(tmp_path / "inet" / name / "b.png"), photo("cats", 1))
    data = load_dataset("imagenet", data_dir=str(tmp_path / "inet"), preprocess=PRE)
    assert sorted(set(data.test.y.tolist())) == [imagenet_labels().index("palace"), imagenet_labels().index("daisy")]
    assert len(data.test) == 4
    (tmp_path / "inet" / "kitten").mkdir()
    cv2.imwrite(str(tmp_path / "inet" / "kitten" / "a.png"), photo("cats", 0))
    with pytest.raises(EdgecnnError, match="kitten .* no ImageNet class names"):
        load_dataset("imagenet", data_dir=str(tmp_path / "inet"), preprocess=PRE)


def test_image_datasets_need_neither_torch_nor_sklearn(tmp_path):
    """eval on a Pi reloads a run's image folder: the runtime half reads it alone."""
    import subprocess
    import sys

    root = write_image_folder(tmp_path / "pets", {"cats": 2, "dogs": 2})
    code = f"""
import sys
for name in ("torch", "matplotlib"):
    sys.modules[name] = None  # importing either now raises ImportError
from edgecnn.data import load_dataset
pre = {PRE!r}
print(len(load_dataset("image_folder", data_dir={str(root)!r}, preprocess=pre).train))
print(len(load_dataset("imagenet", preprocess={{**pre, "resize": "center_crop"}}).train))
print("sklearn" in sys.modules)  # the sample photos are read from its folder, without importing it
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["2", "16", "False"]
