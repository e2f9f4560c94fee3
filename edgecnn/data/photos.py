"""Real photographs that install offline, and views of them to calibrate int8 models and check them.

The photos come with packages (scikit-learn, scikit-image and matplotlib from PyPI; Debian's
jigzo-data, mate-backgrounds and lomiri-wallpapers-16.04, installed by `make photos`): 46 photos,
no drawings or renders. Each photo gives VIEWS, frames a camera could have taken of it (the whole
photo, zoomed, off centre, mirrored), prepared by the model's own preprocess as `eval` and the
camera prepare a frame. The photos are split into calibration and check photos, never sharing one:
an int8 model calibrated on the first is checked on the second.

Runtime half: numpy and OpenCV only; packages' photos are found without importing the packages.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecnn.data.registry import register
from edgecnn.data.splits import Dataset, Split
from edgecnn.errors import EdgecnnError
from edgecnn.runtime.card import Preprocess
from edgecnn.runtime.preprocess import prepare

MAX_SIDE = 1024  # larger photos are shrunk first: a 0.5 zoom still keeps 512 px, twice ImageNet's 256 resize


@dataclass(frozen=True)
class View:
    """One frame of a photo: `zoom` of each side kept, centred at (x, y) as fractions of the photo, maybe mirrored."""

    zoom: float
    x: float = 0.5
    y: float = 0.5
    mirror: bool = False


VIEWS = (
    View(1.0),  # the whole photo
    View(1.0, mirror=True),
    View(0.7),  # closer to the middle
    View(0.5, mirror=True),  # closer still
    View(0.6, 0.3, 0.3),  # off centre: the four corners' sides
    View(0.6, 0.7, 0.3, mirror=True),
    View(0.6, 0.3, 0.7, mirror=True),
    View(0.6, 0.7, 0.7),
)


@dataclass(frozen=True)
class PhotoSource:
    """Photos one installed package ships: where, which files, how to install it, under which license."""

    name: str
    files: tuple[str, ...]
    install: str
    license: str
    folder: Path | None = None  # a fixed folder (Debian), or …
    package: str | None = None  # … a Python package's folder: package/subfolder
    subfolder: str = ""
    reader: str = "image"  # a key of READERS

    def root(self) -> Path | None:
        """The folder holding the photos, or None when the package is not installed."""
        if self.folder is not None:
            return self.folder
        spec = importlib.util.find_spec(self.package)  # finds a top-level package without importing it
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(spec.submodule_search_locations[0]) / self.subfolder

    def missing(self) -> list[str]:
        root = self.root()
        return list(self.files) if root is None else [f for f in self.files if not (root / f).is_file()]


@dataclass(frozen=True)
class Photo:
    source: str
    name: str
    path: Path
    reader: str = "image"

    @property
    def key(self) -> str:
        return f"{self.source}/{self.name}"

    def read(self) -> np.ndarray:
        """The photo as a BGR uint8 image, its longer side at most MAX_SIDE."""
        image = READERS[self.reader](self.path)
        if image is None or image.size == 0:
            raise EdgecnnError(f"photo {self.path} is not a readable image")
        scale = MAX_SIDE / max(image.shape[:2])
        if scale < 1:
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return image


def _read_image(path: Path) -> np.ndarray | None:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


def _read_jigzo(path: Path) -> np.ndarray | None:
    """The photo inside a jigzo puzzle (.pzl): its texture JPEG holds the whole photo at the map's `image` box.

    A .pzl is text lines, each embedded file as a name line, a size line and that many bytes.
    """
    data = path.read_bytes()
    files, at = {}, 0
    while at < len(data):
        end = data.find(b"\n", at)
        if end < 0:
            break
        line, at = data[at:end].decode("latin-1"), end + 1
        if re.fullmatch(r"[\w.-]+\.(jpg|png|map)", line):
            end = data.find(b"\n", at)
            size = int(data[at:end])
            files[line], at = data[end + 1 : end + 1 + size], end + 1 + size
    maps = [name for name in files if name.endswith(".map")]
    texture = files.get(maps[0].removesuffix(".map") + ".jpg") if maps else None
    box = re.search(rb"^image (\d+) (\d+) (\d+) (\d+)", files[maps[0]], re.M) if maps else None
    if texture is None or box is None:
        return None
    image = cv2.imdecode(np.frombuffer(texture, np.uint8), cv2.IMREAD_COLOR)
    x, y, w, h = map(int, box.groups())
    return None if image is None else image[y + 1 : y + h - 1, x + 1 : x + w - 1]  # less the one-pixel frame


READERS: dict[str, Callable[[Path], np.ndarray | None]] = {"image": _read_image, "jigzo": _read_jigzo}
APT = "make photos (apt-get install {})"
PIP_PHOTOS = "pip install 'edgecnn[photos]'"

SOURCES = (
    PhotoSource(
        "scikit-learn", ("china.jpg", "flower.jpg"), PIP_PHOTOS,
        "CC BY 2.0 (Flickr: danielbuechele, vultilion)",
        package="sklearn", subfolder="datasets/images",
    ),
    PhotoSource(
        "scikit-image",
        ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "motorcycle_left.png", "rocket.jpg"),
        PIP_PHOTOS,
        "public domain or CC0 (NASA, SpaceX, Varshney, van der Walt, Michetti, Brooklyn Museum); motorcycle: Middlebury 2014 stereo",
        package="skimage", subfolder="data",
    ),
    PhotoSource(
        "matplotlib", ("grace_hopper.jpg",), PIP_PHOTOS, "public domain (US Navy photo)",
        package="matplotlib", subfolder="mpl-data/sample_data",
    ),
    PhotoSource(
        "jigzo-data",
        tuple(f"{n}.pzl" for n in ("bike-3x4", "bird-2x3", "blackberry-3x3", "castle-6x3", "clouds-4x4", "gorilla2-3x3",
                                  "heli-4x3", "horse-4x3", "penguin-3x2", "tobogan-4x3", "train-2x2", "windmill-4x4")),
        APT.format("jigzo-data"),
        "GPL-2+ (Maarten de Boer); heli: GPL-2 (Joana Clotet); penguin: CC BY-NC-SA 1.0 (Jon Sullivan)",
        folder=Path("/usr/share/games/jigzo/puzzles/00_default"), reader="jigzo",
    ),
    PhotoSource(
        "mate-backgrounds",
        tuple(f"{n}.jpg" for n in ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
                                  "Storm", "TwoWings", "Wood", "YellowFlower")),
        APT.format("mate-backgrounds"),
        "GPL-2+ (MATE artwork, photographers in its copyright file)",
        folder=Path("/usr/share/backgrounds/mate/nature"),
    ),
    PhotoSource(
        "lomiri-wallpapers-16.04",  # the package's photographs; its drawings (umang) and patterns are left out
        tuple(f"{n}.jpg" for n in ("Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
                                  "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
                                  "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "life_by_Aitzol_Berasategi",
                                  "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
                                  "sunset_by_Aitzol_Berasategi")),
        APT.format("lomiri-wallpapers-16.04"),
        "CC BY 4.0, CC BY-SA 4.0 or CC0 1.0 per photo (Ubuntu 16.04 community wallpapers)",
        folder=Path("/usr/share/backgrounds"),
    ),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)


def find_photos(sources: list[str] | tuple[str, ...] | None = None) -> list[Photo]:
    """The photos of `sources` (default: all of SOURCES), or one line naming what is missing and how to install it."""
    by_name = {s.name: s for s in SOURCES}
    names = list(SOURCE_NAMES if sources is None else sources)
    unknown = [n for n in names if n not in by_name]
    if unknown or not names:
        raise EdgecnnError(f"unknown photo source(s) {', '.join(map(repr, unknown)) or '(none given)'} (accepted: {', '.join(by_name)})")
    photos, missing = [], []
    for source in (by_name[n] for n in names):
        absent = source.missing()
        if absent:
            count = "" if len(absent) == len(source.files) else f" ({len(absent)} of its {len(source.files)} photos)"
            missing.append(f"{source.name}{count}: {source.install}")
            continue
        photos += [Photo(source.name, f, source.root() / f, source.reader) for f in source.files]
    if missing:
        raise EdgecnnError(f"photo source(s) not installed: {'; '.join(missing)}")
    return photos


def folder_photos(folder: Path) -> list[Photo]:
    """Every image under `folder` as a photo of the source named after the folder."""
    from edgecnn.data.images import IMAGE_SUFFIXES  # (images imports this module)

    folder = Path(folder)
    if not folder.is_dir():
        raise EdgecnnError(f"photo folder {folder} not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise EdgecnnError(f"photo folder {folder} holds no images (accepted: {', '.join(IMAGE_SUFFIXES)})")
    return [Photo(folder.name, str(p.relative_to(folder)), p) for p in files]


def split_photos(photos: list[Photo]) -> tuple[list[Photo], list[Photo]]:
    """Calibration and check photos: within each source, photos sorted by a hash of their name alternate.

    Every source gives to both sides (a single photo goes to calibration), never one photo to both;
    the hash makes the order independent of file names' alphabetical order and of the machine.
    """
    calibration, check = [], []
    for source in dict.fromkeys(p.source for p in photos):
        ranked = sorted((p for p in photos if p.source == source), key=lambda p: hashlib.sha256(p.key.encode()).hexdigest())
        calibration += ranked[0::2]
        check += ranked[1::2]
    return calibration, check


def view_frame(image: np.ndarray, view: View) -> np.ndarray:
    """The frame `view` takes of a BGR image: a crop of the same shape, kept inside the photo."""
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * view.zoom)), max(1, round(w * view.zoom))
    top = min(max(round(view.y * h - ch / 2), 0), h - ch)
    left = min(max(round(view.x * w - cw / 2), 0), w - cw)
    frame = image[top : top + ch, left : left + cw]
    return np.ascontiguousarray(frame[:, ::-1] if view.mirror else frame)


def photo_views(photos: list[Photo], spec: Preprocess, views: tuple[View, ...] = VIEWS) -> tuple[np.ndarray, np.ndarray]:
    """Every view of every photo, prepared by `spec`, and for each the index of its photo in `photos`."""
    x = None
    for i, photo in enumerate(photos):
        image = photo.read()
        for j, view in enumerate(views):
            sample = prepare(view_frame(image, view), spec)[0]
            if x is None:  # filled in place: stacking a list would hold every sample twice
                x = np.empty((len(photos) * len(views), *sample.shape), np.float32)
            x[i * len(views) + j] = sample
    if x is None:
        raise EdgecnnError("no photos to make views of")
    return x, np.repeat(np.arange(len(photos), dtype=np.int64), len(views))


@dataclass(frozen=True)
class PhotoSet:
    """Views of calibration photos and of check photos (different photos), with the photos' keys."""

    calibration: Split  # y: the index of the view's photo in `photos`
    check: Split
    photos: list[str]  # "source/name", calibration photos first
    source: str


@functools.lru_cache(maxsize=2)  # a benchmark, quantize and eval reload the same views
def _photo_set(key: str) -> PhotoSet:
    preprocess, sources, data_dir = json.loads(key)
    spec = Preprocess.from_dict(preprocess)
    photos = folder_photos(Path(data_dir)) if data_dir is not None else find_photos(sources)
    if len(photos) < 2:
        raise EdgecnnError(f"a photo set needs at least 2 photos (one to calibrate, one to check); found {len(photos)}")
    calibration, check = split_photos(photos)
    x_cal, y_cal = photo_views(calibration, spec)
    x_chk, y_chk = photo_views(check, spec)
    where = f"the photos in {data_dir}" if data_dir is not None else f"installed photos ({', '.join(dict.fromkeys(p.source for p in photos))})"
    source = (f"{where}: {len(x_cal)} views of {len(calibration)} calibration photos, "
              f"{len(x_chk)} views of {len(check)} other photos to check ({len(VIEWS)} views each)")
    return PhotoSet(Split(x_cal, y_cal), Split(x_chk, y_chk + len(calibration)), [p.key for p in calibration + check], source)


def photo_set(preprocess: dict[str, Any], sources: list[str] | None = None, data_dir: str | None = None) -> PhotoSet:
    """Calibration and check views of the installed photos of `sources` (default all), or of the images in `data_dir`."""
    if data_dir is not None:
        data_dir = str(Path(data_dir).resolve())
    return _photo_set(json.dumps([preprocess, None if sources is None else list(sources), data_dir], sort_keys=True))


def installed_sources() -> tuple[list[str], list[str]]:
    """The photo sources installed here, and how to install the others."""
    installed = [s.name for s in SOURCES if not s.missing()]
    return installed, [f"{s.name}: {s.install}" for s in SOURCES if s.name not in installed]


@register
def load_photos(
    preprocess: dict[str, Any] | None = None,
    sources: list[str] | None = None,
    data_dir: str | None = None,
) -> Dataset:
    """Natural photos without class labels, to calibrate int8 and measure its agreement with fp32.

    train = views of the calibration photos; val = test = views of the other photos. A label names
    the photo a view came from ("source/name"), not a class: accuracy means nothing here, top-1
    agreement and the softmax KL divergence between two models do. `sources` picks photo sources
    (accepted: those of SOURCES; default all); `data_dir` is a folder of your own photos instead.
    """
    if preprocess is None:
        raise EdgecnnError("the photos dataset needs a preprocess (size, resize, scale …): the model's")
    photos = photo_set(preprocess, sources, data_dir)
    return Dataset(photos.calibration, photos.check, photos.check, photos.photos, photos.source)
