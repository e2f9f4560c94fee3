"""Small generated image folders for the image-dataset tests (cv2.imwrite; no downloads)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

COLORS_BGR = {"cats": (0, 0, 230), "dogs": (230, 0, 0), "birds": (0, 200, 0)}  # a red, blue or green shape per class


def photo(label: str, index: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A BGR photo of noise with a filled disk (or square) in the class's color, placed by index."""
    rng = np.random.default_rng(index)
    h, w = size
    image = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    center = (w // 3 + index % 3 * 4, h // 2 - index % 2 * 4)
    cv2.circle(image, center, min(h, w) // 4, COLORS_BGR[label], -1)
    return image


def write_image_folder(
    root: Path, per_class: dict[str, int], corrupt: dict[str, int] | None = None, size: tuple[int, int] = (48, 64)
) -> Path:
    """ROOT/<class>/NN.jpg|png with `per_class` photos each, plus `corrupt` unreadable .jpg files per class."""
    for label, n in per_class.items():
        folder = Path(root) / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(folder / f"{i:02d}.{'png' if i % 2 else 'jpg'}"), photo(label, i, size))
        for i in range((corrupt or {}).get(label, 0)):
            (folder / f"broken{i}.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
        (folder / "notes.txt").write_text("not an image, not counted")
    return Path(root)
