"""Videos of printed digits on paper for the camera tests and benchmarks/camera_fps.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# OpenCV 5 draws text with its own faces; uni, the most handwriting-like (a plain 0, a 1 without a
# foot), comes twice: the sans and italic 1 and 9 are printed shapes the handwritten set lacks
FONTS = (("uni", 400), ("sans", 300), ("uni", 400), ("italic", 600))


def digit_frame(digit: int, size: tuple[int, int], font: tuple[str, int], height: int, rng: np.random.Generator) -> np.ndarray:
    """A BGR frame (width, height = size) of off-white paper with one dark digit at a random place."""
    w, h = size
    frame = np.full((h, w, 3), 235, np.uint8)
    frame += rng.integers(0, 12, frame.shape, dtype=np.uint8)  # paper grain and sensor noise
    x = int(rng.integers(5, max(6, w - int(height * 0.7) - 5)))
    y = int(rng.integers(height + 5, h - 5))
    ink = int(rng.integers(10, 60))
    cv2.putText(frame, str(digit), (x, y), (ink, ink, ink), cv2.FontFace(font[0]), height, font[1])
    return frame


def write_digit_video(path: Path, frames: int, size: tuple[int, int] = (320, 240), fps: float = 30.0, seed: int = 0) -> list[int]:
    """Write an mp4 of `frames` digits cycling through 0-9, FONTS and three heights; returns the digits."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    digits = []
    heights = (size[1] // 4, size[1] // 2, size[1] * 3 // 4)
    for i in range(frames):
        digit = i % 10
        font = FONTS[(i // 10) % len(FONTS)]
        writer.write(digit_frame(digit, size, font, heights[(i // 30) % len(heights)], rng))
        digits.append(digit)
    writer.release()
    return digits
