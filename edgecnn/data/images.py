"""Image datasets: class folders of photos, and ImageNet-labelled photos for pretrained classifiers.

Layouts: `ROOT/<class>/*.jpg`, or Kaggle's `ROOT/train/<class>` + `ROOT/validation/<class>`
(+ `ROOT/test/<class>`). Images are read with OpenCV and turned into samples by the code the
camera and `eval` use (edgecnn.runtime.preprocess), following the recipe's preprocess, so a model meets at
run time exactly the input it trained on. Runtime half: numpy and OpenCV only.

Samples are held in memory as float32: 270 KB per 150×150 image, 600 KB per 224×224 one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from edgecnn.data.photos import installed_sources, photo_set
from edgecnn.data.registry import register
from edgecnn.data.splits import Dataset, Split
from edgecnn.errors import EdgecnnError
from edgecnn.runtime.card import Preprocess
from edgecnn.runtime.preprocess import prepare

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")  # Keras' list, and webp
VALIDATION_FOLDERS = ("validation", "val")
LAYOUTS = "ROOT/<class>/*.jpg, or ROOT/train/<class> with ROOT/validation/<class>"


def imagenet_labels() -> list[str]:
    """The 1,000 ImageNet class names in index order, as the package ships them."""
    return resources.files("edgecnn.data").joinpath("imagenet_classes.txt").read_text().splitlines()


def read_image(path: Path) -> np.ndarray | None:
    """A BGR uint8 image as OpenCV reads it, or None when the file is not a readable image."""
    try:
        return cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error:
        return None


def folder_layout(root: Path) -> dict[str, Path]:
    """The split folders of an image folder: {"train": …} or Kaggle's train + validation (+ test)."""
    root = Path(root)
    if not root.is_dir():
        raise EdgecnnError(f"image folder {root} not found (accepted layouts: {LAYOUTS})")
    if not (root / "train").is_dir():
        return {"train": root}
    layout = {"train": root / "train"}
    val = next((root / name for name in VALIDATION_FOLDERS if (root / name).is_dir()), None)
    if val is not None:
        layout["val"] = val
    if (root / "test").is_dir():
        layout["test"] = root / "test"
    return layout


def class_folders(folder: Path, classes: list[str] | None = None) -> list[str]:
    """The class subfolders of `folder`, sorted by name as Keras' flow_from_directory takes them, or `classes` in order."""
    found = sorted(p.name for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        if not found:
            raise EdgecnnError(f"{folder} has no class folders (accepted layouts: {LAYOUTS})")
        return found
    missing = [c for c in classes if c not in found]
    if missing:
        raise EdgecnnError(
            f"{folder} lacks class folder(s) {', '.join(missing)} (expected {', '.join(classes)}; found {', '.join(found) or 'none'})"
        )
    return list(classes)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_class_folders(folder: Path, classes: list[str], spec: Preprocess) -> tuple[Split, list[Path]]:
    """All images under folder/<class> as samples; returns the split and the unreadable files skipped."""
    files = [(path, label) for label, name in enumerate(classes) for path in _image_files(folder / name)]
    x, labels, unreadable = None, [], []
    per_class = np.zeros(len(classes), np.int64)
    with Progress(
        TextColumn(f"read {folder}"), BarColumn(), MofNCompleteColumn(), transient=True, console=Console(stderr=True)
    ) as progress:
        for path, label in progress.track(files):
            image = read_image(path)
            if image is None or image.size == 0:
                unreadable.append(path)
                continue
            sample = prepare(image, spec)[0]
            if x is None:  # filled in place: a list of samples stacked at the end would need twice the memory
                x = np.empty((len(files), *sample.shape), np.float32)
            x[len(labels)] = sample
            labels.append(label)
            per_class[label] += 1
    for name, count in zip(classes, per_class):
        if count == 0:
            bad = sum(1 for p in unreadable if p.is_relative_to(folder / name))
            raise EdgecnnError(
                f"class folder {folder / name} holds no readable images"
                + (f" ({bad} unreadable)" if bad else f" (accepted: {', '.join(IMAGE_SUFFIXES)})")
            )
    return Split(x[: len(labels)], np.asarray(labels, np.int64)), unreadable


def carve(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """A validation split of `fraction` of each class, drawn with a fixed seed; the rest stays training data."""
    if not 0.0 < fraction < 1.0:
        raise EdgecnnError(f"val_fraction must be between 0 and 1 (exclusive), got {fraction}")
    rng = np.random.default_rng(seed)
    val_idx = []
    for label in np.unique(split.y):
        idx = rng.permutation(np.flatnonzero(split.y == label))
        n_val = min(max(int(round(len(idx) * fraction)), 1), len(idx) - 1)
        val_idx.extend(idx[:n_val])
    is_val = np.zeros(len(split), bool)
    is_val[val_idx] = True
    return Split(split.x[~is_val], split.y[~is_val]), Split(split.x[is_val], split.y[is_val])


@register
def load_image_folder(
    data_dir: str | None = None,
    preprocess: dict[str, Any] | None = None,
    classes: list[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Class folders of images as a Dataset, each image made a sample by `preprocess` (the recipe's).

    Validation is the `validation` (or `val`) folder when there is one, else `val_fraction` of each
    training class drawn with `seed`; test is the `test` folder, else the validation images.
    `classes` picks class folders and their label order (default: all, sorted by name).
    Unreadable images are skipped and counted in the source.
    """
    if data_dir is None:
        raise EdgecnnError(f"an image-folder recipe needs --data-dir: a folder laid out as {LAYOUTS}")
    if preprocess is None:
        raise EdgecnnError("the image_folder dataset needs a preprocess (size, resize, scale …): the recipe's")
    root = Path(data_dir).resolve()
    key = json.dumps([str(root), preprocess, classes, val_fraction, seed], sort_keys=True)
    return _load_image_folder(key, _fingerprint(root))


def _fingerprint(root: Path) -> str:
    """Names, sizes and times of every file under `root`: a changed folder is read again."""
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*")) if root.is_dir() else ():
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=2)  # export, quantize and every eval reload the run's data in one pipeline
def _load_image_folder(key: str, fingerprint: str) -> Dataset:  # noqa: ARG001 (part of the cache key)
    data_dir, preprocess, classes, val_fraction, seed = json.loads(key)
    spec = Preprocess.from_dict(preprocess)
    layout = folder_layout(Path(data_dir))
    classes = class_folders(layout["train"], classes)
    splits, unreadable = {}, []
    for name, folder in layout.items():
        splits[name], bad = read_class_folders(folder, class_folders(folder, classes), spec)
        unreadable += bad
    notes = []
    if "val" in splits:
        notes.append(f"validation = {layout['val'].name}/")
    else:
        splits["train"], splits["val"] = carve(splits["train"], val_fraction, seed)
        notes.append(f"validation = {val_fraction:.0%} of each training class (seed {seed})")
    if "test" not in splits:
        splits["test"] = splits["val"]
        notes.append("test = the validation images (no test folder)")
    if unreadable:
        names = ", ".join(str(p.relative_to(data_dir)) for p in unreadable[:3]) + (", …" if len(unreadable) > 3 else "")
        notes.append(f"{len(unreadable)} unreadable image(s) skipped ({names})")
    counts = " / ".join(f"{len(splits[s]):,} {s}" for s in ("train", "val", "test"))
    source = f"image folder {data_dir} (classes {', '.join(classes)}): {counts}; " + "; ".join(notes)
    return Dataset(splits["train"], splits["val"], splits["test"], classes, source)


SAMPLE_PHOTOS = {"china.jpg": "palace", "flower.jpg": "daisy"}  # scikit-learn's two bundled photos
SAMPLE_VIEWS = (0.875, 0.75, 0.65, 1.0)  # crop shares of the shorter side for the calibration views


CALIBRATIONS = ("own", "photos")  # what the train split (int8 calibration) of the imagenet dataset holds
NO_LABEL = -1  # the label of a view that has no ImageNet class (the photo set's calibration views)


@register
def load_imagenet(
    data_dir: str | None = None,
    preprocess: dict[str, Any] | None = None,
    calibration: str = "own",
) -> Dataset:
    """ImageNet-labelled photos for a pretrained 1,000-class classifier.

    Default: the two photos scikit-learn ships (china.jpg: palace, flower.jpg: daisy); test and
    validation are the photos as the preprocess crops them, train (what int8 calibration reads) 16
    views of them (four crop sizes, each mirrored). `data_dir`: class folders named by ImageNet
    class (`daisy/`, `palace/` …), test = validation = all of them.
    `calibration="photos"`: train is instead the calibration views of the installed photo set
    (edgecnn.data.photos, `make photos`), labelled NO_LABEL: they have no ImageNet class. Test and
    validation stay the labelled photos; the photo set's check views are the `photos` dataset's test.
    """
    if preprocess is None:
        raise EdgecnnError("the imagenet dataset needs a preprocess (size, resize, scale …): the recipe's")
    if calibration not in CALIBRATIONS:
        raise EdgecnnError(f"imagenet calibration {calibration!r} is not accepted (accepted: {', '.join(CALIBRATIONS)})")
    labels = imagenet_labels()
    if data_dir is not None:
        folder = load_image_folder(data_dir, preprocess)
        unknown = [c for c in folder.labels if c not in labels]
        if unknown:
            raise EdgecnnError(f"class folder(s) {', '.join(unknown)} in {data_dir} are no ImageNet class names (see edgecnn/data/imagenet_classes.txt)")
        index = np.asarray([labels.index(c) for c in folder.labels])
        train, val = (Split(s.x, index[s.y]) for s in (folder.train, folder.val))
        every = Split(np.concatenate([train.x, val.x]), np.concatenate([train.y, val.y]))
        data = Dataset(every, every, every, labels, f"ImageNet-labelled {folder.source.removeprefix('image folder ')}; all of them in every split")
    else:
        data = _sample_photos(json.dumps(preprocess, sort_keys=True))
    if calibration == "photos":  # every photo source installed here; the source line says which are missing
        installed, missing = installed_sources()
        photos = photo_set(preprocess, installed)
        train = Split(photos.calibration.x, np.full(len(photos.calibration), NO_LABEL, np.int64))
        shown = f"{len(train):,} unlabelled views of {len(set(photos.calibration.y.tolist()))} installed calibration photos (edgecnn.data.photos)"
        if missing:
            shown += f"; more photos with {'; '.join(missing)}"
        data = dataclasses.replace(data, train=train, source=f"{data.source}; train replaced by {shown}")
    return data


def sample_photo(name: str) -> np.ndarray:
    """One of the JPEGs scikit-learn ships in sklearn/datasets/images, read by OpenCV (BGR) without importing sklearn."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "images" / name if spec else None
    image = read_image(path) if path is not None and path.is_file() else None
    if image is None:
        raise EdgecnnError("the imagenet sample photos come with scikit-learn: pip install 'edgecnn[train]', or pass --data-dir")
    return image


@functools.lru_cache(maxsize=2)
def _sample_photos(preprocess: str) -> Dataset:
    labels = imagenet_labels()
    spec = Preprocess.from_dict(json.loads(preprocess))
    views, photos, view_y, photo_y = [], [], [], []
    for name, label in SAMPLE_PHOTOS.items():
        bgr = sample_photo(name)
        photos.append(prepare(bgr, spec)[0])
        photo_y.append(labels.index(label))
        for crop in SAMPLE_VIEWS:
            view = dataclasses.replace(spec, crop_pct=crop) if spec.resize == "center_crop" else spec
            for frame in (bgr, bgr[:, ::-1]):
                views.append(prepare(np.ascontiguousarray(frame), view)[0])
                view_y.append(labels.index(label))
    test = Split(np.stack(photos), np.asarray(photo_y, np.int64))
    train = Split(np.stack(views), np.asarray(view_y, np.int64))
    source = "scikit-learn's sample photos china.jpg (palace) and flower.jpg (daisy): 16 views train / 2 val / 2 test (val = test)"
    return Dataset(train, test, test, labels, source)
