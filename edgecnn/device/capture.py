"""Frame sources for the camera: webcam, video file, image folder, stream or Pi Camera Module,
each read (and preprocessed) in its own thread; a live source keeps only the newest frame.

Runtime half: OpenCV and numpy, never torch.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecnn.errors import EdgecnnError

SOURCES_ACCEPTED = "a webcam index (0), a video file, an image folder, a stream URL or picamera"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
RECONNECTS = 3  # a live source that drops is reopened this many times before we give up
RECONNECT_WAIT_S = 0.5  # before the n-th attempt wait n times this: a restarting camera gets ~3 s
STREAM_TIMEOUT_MS = 5000  # a stream that sends nothing this long counts as dropped
# no frame for this long ends the run, never a hang; longer than the sources' own timeouts:
# (RECONNECTS + 1) attempts × (open + read timeout) + the waits between them
STALL_S = (RECONNECTS + 1) * 2 * STREAM_TIMEOUT_MS / 1000 + RECONNECTS * (RECONNECTS + 1) / 2 * RECONNECT_WAIT_S + 10
PICAMERA_HINT = (
    "--source picamera needs picamera2: sudo apt install python3-picamera2, "
    "in a venv created with --system-site-packages"
)


@dataclass(frozen=True)
class Frame:
    """A frame as read (BGR), its index in the source, and its model input with the time it took."""

    index: int
    image: np.ndarray
    input: Any
    prepare_ms: float


@dataclass
class Source:
    """Frames from one place; `read` returns a BGR frame, or None at the end of a file."""

    name: str
    live: bool  # live: frames arrive in real time and the newest wins; a file waits for the reader
    read: Callable[[], np.ndarray | None]
    close: Callable[[], None]
    fps: float | None = None
    files: tuple[str, ...] = ()  # an image folder: the file name of each frame, in reading order


def open_source(spec: str, resolution: tuple[int, int] | None = None) -> Source:
    """A webcam index, video file, image folder or single image, stream URL, or `picamera`."""
    # one line of ours, not OpenCV's or FFmpeg's warnings (FFmpeg reads its level when first used)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if spec == "picamera":
        return _picamera(resolution or (640, 480))
    if spec.isdigit():
        return _capture(spec, lambda: cv2.VideoCapture(int(spec)), live=True, resolution=resolution)
    if resolution:
        raise EdgecnnError(
            f"--resolution {resolution[0]}x{resolution[1]} sets the capture size of a webcam index or picamera; "
            f"source {spec!r} delivers frames at its own size"
        )
    if "://" in spec:  # FFmpeg waits this long to connect and for each frame, then gives up
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
        return _capture(spec, lambda: cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params), live=True)
    path = Path(spec)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise EdgecnnError(f"image folder {path} holds no images (accepted: {', '.join(IMAGE_SUFFIXES)})")
        return _images(str(path), images)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return _images(str(path), [path])
        return _capture(spec, lambda: cv2.VideoCapture(spec), live=False)
    raise EdgecnnError(f"source {spec!r} is not an existing file or folder (accepted: {SOURCES_ACCEPTED})")


def _capture(name: str, opener: Callable[[], Any], live: bool, resolution: tuple[int, int] | None = None) -> Source:
    """An OpenCV VideoCapture; a live one is reopened up to RECONNECTS times when it drops."""

    def open_() -> Any:
        cap = opener()
        if resolution and cap.isOpened():
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, resolution[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, resolution[1])
        return cap

    t0 = time.monotonic()
    cap = open_()
    if not cap.isOpened():
        if name.isdigit():
            raise EdgecnnError(f"no camera at index {name} (try another index, or a file, folder, URL or picamera)")
        if live and time.monotonic() - t0 >= STREAM_TIMEOUT_MS / 1000:
            raise EdgecnnError(f"cannot open stream {name}: no answer within {STREAM_TIMEOUT_MS / 1000:g} s")
        if live:
            raise EdgecnnError(f"cannot open stream {name}: the connection was refused, "
                               "or what came back is not a video OpenCV's FFmpeg reads")
        raise EdgecnnError(f"cannot open video file {name}: not a video OpenCV's FFmpeg reads")
    state = {"cap": cap, "frames": 0}

    def read() -> np.ndarray | None:
        for attempt in range(RECONNECTS + 1 if live else 1):
            if attempt:
                state["cap"].release()
                time.sleep(RECONNECT_WAIT_S * attempt)
                state["cap"] = open_()
            ok, frame = state["cap"].read()
            if ok:
                state["frames"] += 1
                return frame
        if not live and state["frames"]:
            return None  # end of the video
        if live:
            what = f"camera {name}" if name.isdigit() else name
            raise EdgecnnError(f"{what} stopped sending frames and {RECONNECTS} reconnects failed")
        raise EdgecnnError(f"video file {name} holds no readable frames")

    fps = cap.get(cv2.CAP_PROP_FPS)
    return Source(name, live, read, lambda: state["cap"].release(), fps if 0 < fps < 1000 else None)


def _images(name: str, paths: list[Path]) -> Source:
    """Still images in name order, one frame each."""
    queue = deque(paths)

    def read() -> np.ndarray | None:
        if not queue:
            return None
        path = queue.popleft()
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise EdgecnnError(f"cannot read image {path} (accepted: {', '.join(IMAGE_SUFFIXES)} that OpenCV decodes)")
        return frame

    return Source(name, False, read, queue.clear, files=tuple(p.name for p in paths))


def _picamera(resolution: tuple[int, int]) -> Source:
    """The Raspberry Pi camera through picamera2 (libcamera); RGB888 arrays are BGR in memory, as OpenCV's."""
    try:
        from picamera2 import Picamera2
    except ImportError:
        raise EdgecnnError(PICAMERA_HINT) from None
    except ValueError as exc:  # "numpy.dtype size changed": apt's simplejpeg meets pip's numpy 2
        raise EdgecnnError(
            f"picamera2 does not import ({exc}); apt's simplejpeg is built for Debian's numpy: "
            "pip install --force-reinstall --no-deps simplejpeg in this venv"
        ) from None
    try:
        camera = Picamera2()
        camera.configure(camera.create_video_configuration(main={"size": resolution, "format": "RGB888"}))
        camera.start()
    except Exception as exc:  # picamera2 raises IndexError or RuntimeError when libcamera finds no camera
        raise EdgecnnError(f"no Raspberry Pi camera found by libcamera ({type(exc).__name__}: {exc}); check the ribbon cable") from None

    def close() -> None:
        camera.stop()
        camera.close()

    return Source("picamera", True, lambda: camera.capture_array("main"), close)


class Grabber:
    """Reads and preprocesses a source in its own thread; a live source keeps only the newest frame.

    Newest-frame-wins means a slow model skips frames instead of falling further behind; a file
    has no real time, so it waits and every frame is classified. Preprocessing here overlaps
    with the previous frame's inference (OpenCV, numpy and onnxruntime release the GIL).
    """

    def __init__(self, source: Source, transform: Callable[[np.ndarray], Any] = lambda frame: None):
        self.source = source
        self.transform = transform
        self.dropped = 0
        self._slot: Frame | None = None
        self._done = False
        self._stop = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="edgecnn-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        index = 0
        try:
            while not self._stop:
                frame = self.source.read()
                if frame is None:
                    break
                t0 = time.perf_counter()
                item = Frame(index, frame, self.transform(frame), (time.perf_counter() - t0) * 1e3)
                with self._cond:
                    while not self.source.live and self._slot is not None and not self._stop:
                        self._cond.wait()
                    if self._stop:
                        break
                    self.dropped += self._slot is not None
                    self._slot = item
                    self._cond.notify_all()
                index += 1
        except BaseException as exc:  # handed to the reading thread, which raises it
            self._error = exc
        finally:
            self.source.close()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def next(self, stall_s: float = STALL_S) -> Frame | None:
        """The next frame, or None at the end of the source."""
        deadline = time.monotonic() + stall_s
        with self._cond:
            while self._slot is None and not self._done:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EdgecnnError(f"no frame from {self.source.name} for {stall_s:.0f} s; giving up")
                self._cond.wait(timeout=min(left, 0.5))
            if self._slot is None:
                if self._error is not None:
                    raise self._error
                return None
            item, self._slot = self._slot, None
            self._cond.notify_all()
            return item

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)  # a read stuck inside a driver is left to the daemon thread
