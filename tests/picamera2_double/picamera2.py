"""A stand-in for picamera2's API (no libcamera here): a camera that films printed digits.

Implements what edgecnn.device.camera calls: Picamera2(), create_video_configuration, configure, start,
capture_array, stop, close. Frame n shows digit n % 10, drawn when it is captured.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from digit_video import digit_frame  # noqa: E402

CAMERAS = [{"Model": "imx708", "Num": 0}]  # tests empty this list to unplug the camera


class Picamera2:
    def __init__(self, camera_num: int = 0):
        if camera_num >= len(CAMERAS):
            raise IndexError("list index out of range")  # what picamera2 raises with no camera attached
        self.size = (640, 480)
        self.started = False
        self.closed = False
        self.captured = 0
        self._rng = np.random.default_rng(0)

    def create_video_configuration(self, main: dict | None = None, **kwargs) -> dict:
        return {"main": {"size": (640, 480), "format": "XBGR8888", **(main or {})}}

    def configure(self, config: dict) -> None:
        assert config["main"]["format"] == "RGB888", "edgecnn asks for RGB888: BGR in memory, as OpenCV wants"
        self.size = tuple(config["main"]["size"])

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert self.started and not self.closed and name == "main"
        frame = digit_frame(self.captured % 10, self.size, ("uni", 400), self.size[1] // 2, self._rng)
        self.captured += 1
        return frame

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True
