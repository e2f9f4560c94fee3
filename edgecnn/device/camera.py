"""Live classification: a frame source read in its own thread, the model's preprocessing, results.

Runtime half: OpenCV, numpy and onnxruntime, never torch; this is what runs on a Raspberry Pi.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecnn.device.capture import Grabber, open_source
from edgecnn.errors import EdgecnnError
from edgecnn.files import refuse_overwrite
from edgecnn.runtime.preprocess import prepare, resolve_preprocess
from edgecnn.runtime.session import Session

RECORD_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}  # both are in every OpenCV wheel's FFmpeg


@dataclass
class _Stats:
    """Frame count, FPS over the last 30 frames, and latencies as a log-spaced histogram: a loop that
    runs for days keeps the same few KiB, and its percentiles stay within 0.6%."""

    start: float | None = None  # when the first frame was taken: opening the source is not counted
    frames: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(_EDGES_MS) + 1, np.int64))
    recent: deque = field(default_factory=lambda: deque(maxlen=30))

    def add(self, started: float, latency_ms: float) -> float:
        """Record one frame; returns the FPS over the last 30 frames."""
        self.start = self.start or started
        self.frames += 1
        self.counts[np.searchsorted(_EDGES_MS, latency_ms)] += 1
        self.recent.append(time.perf_counter())
        span = self.recent[-1] - self.recent[0]
        return (len(self.recent) - 1) / span if span > 0 else 0.0

    def percentile_ms(self, q: float) -> float | None:
        """The latency below which `q` percent of frames fell (the geometric middle of its bin); None without frames."""
        if not self.frames:
            return None
        i = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.frames))
        low, high = _EDGES_MS[max(i - 1, 0)], _EDGES_MS[min(i, len(_EDGES_MS) - 1)]
        return float(np.sqrt(low * high))


_EDGES_MS = np.logspace(-3, 5, 8 * 200 + 1)  # 1 µs to 100 s, 200 bins per decade


def draw_overlay(frame: np.ndarray, top: list[dict[str, Any]], fps: float, latency_ms: float) -> np.ndarray:
    """Top-k labels with probabilities, FPS and latency on a dark box in the frame's corner."""
    lines = [f"{t['label']}  {100 * t['p']:.1f}%" for t in top] + [f"{fps:.1f} FPS  {latency_ms:.1f} ms"]
    scale = max(0.5, frame.shape[0] / 720)
    step = int(30 * scale)
    h, w = step * len(lines) + step // 2, int(320 * scale)
    corner = frame[:h, :w]
    corner[:] = (corner * 0.4).astype(frame.dtype)
    for i, text in enumerate(lines):
        color = (80, 255, 80) if i == 0 else (255, 255, 255)
        cv2.putText(frame, text, (10, step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, color, 2, cv2.LINE_AA)
    return frame


class _Recorder:
    """Annotated frames to a video written under a temporary name, renamed into place at the end."""

    def __init__(self, path: Path, force: bool):
        self.path = Path(path)
        if self.path.suffix.lower() not in RECORD_CODECS:
            raise EdgecnnError(f"--record {path}: accepted video types are {', '.join(RECORD_CODECS)}")
        refuse_overwrite(self.path, force)
        self.tmp: Path | None = None
        self.writer: Any = None

    def write(self, frame: np.ndarray, fps: float) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=self.path.suffix, dir=self.path.parent)
            os.close(fd)
            self.tmp = Path(tmp)
            fourcc = cv2.VideoWriter.fourcc(*RECORD_CODECS[self.path.suffix.lower()])
            self.writer = cv2.VideoWriter(tmp, fourcc, fps, (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                raise EdgecnnError(f"OpenCV cannot write video {self.path}")
        self.writer.write(frame)

    def close(self, keep: bool) -> bool:
        """Release the writer; rename the video into place if `keep`. True when a video was kept."""
        if self.writer is None:
            return False
        self.writer.release()
        if keep:
            os.replace(self.tmp, self.path)
        self.tmp.unlink(missing_ok=True)
        return keep


class SourceLost(EdgecnnError):
    """The source failed after frames were classified (a camera unplugged, a stream gone): the summary so far rides along."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


class _Window:
    """Annotated frames in a Tk window; q, Esc or the close button end the run.

    Tk comes with Python (Debian's python3-tk), so one OpenCV build, the headless one, serves both
    modes: OpenCV's GUI build is a second `cv2` that cannot sit beside it, and it needs libGL and
    X libraries even to import. A frame reaches Tk as PPM bytes, converted by OpenCV.
    """

    def __init__(self, title: str):
        try:
            import tkinter
        except ImportError:
            raise EdgecnnError(
                "window mode needs tkinter, which this Python lacks (Debian, Ubuntu, Raspberry Pi OS: "
                "sudo apt install python3-tk); use --headless for one JSON line per frame"
            ) from None
        try:
            self.root = tkinter.Tk(className="edgecnn")
        except tkinter.TclError as exc:  # no $DISPLAY, or an X server that refuses us
            raise EdgecnnError(f"window mode needs a display ({exc}); use --headless for one JSON line per frame") from None
        self.root.title(title)
        self.open = True
        for event in ("<KeyPress-q>", "<Escape>"):
            self.root.bind(event, self._close)
        self.root.protocol("WM_DELETE_WINDOW", self._close)
        self.photo = tkinter.PhotoImage(master=self.root)
        tkinter.Label(self.root, image=self.photo, borderwidth=0).pack()
        self.screen = (self.root.winfo_screenwidth(), self.root.winfo_screenheight())

    def _close(self, event: Any = None) -> None:
        self.open = False

    def show(self, frame: np.ndarray) -> bool:
        """Draw a BGR frame, shrunk to fit the screen; False once the user closed the window."""
        h, w = frame.shape[:2]
        fit = min(1.0, 0.9 * self.screen[0] / w, 0.9 * self.screen[1] / h)
        if fit < 1:
            frame = cv2.resize(frame, (round(w * fit), round(h * fit)), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        self.photo.configure(data=b"P6 %d %d 255 " % (rgb.shape[1], rgb.shape[0]) + rgb.tobytes(), format="PPM")
        self.root.update()
        return self.open

    def close(self) -> None:
        self.root.destroy()


def loop_threads() -> int:
    """Inference threads for the camera loop: every core but one, which capture and preprocessing use.

    On two cores the loop runs as fast with one inference thread as with two, and the model's
    figure without capture is then the one the loop can reach.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)


def run_camera(
    model: Path,
    source: str = "0",
    *,
    headless: bool = False,
    max_frames: int | None = None,
    record: Path | None = None,
    force: bool = False,
    top_k: int | None = None,
    provider: str = "cpu",
    threads: int | None = None,
    resolution: tuple[int, int] | None = None,
    preprocess: dict[str, Any] | None = None,
    labels: list[str] | None = None,
    emit: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Classify frames until the source ends, `max_frames`, Ctrl-C, SIGTERM or q; returns a summary.

    Headless: one JSON line per frame through `emit` (an image folder's carry the file name).
    Otherwise a window with the overlay. `preprocess` fields and `labels` replace the model's
    metadata (for models without it). `top_k` None: 3, or every class if fewer.
    `threads` None: `loop_threads()`; 0: onnxruntime's default (every core).
    A source that fails after frames were classified raises SourceLost, which carries the summary.
    """
    if max_frames is not None and max_frames < 1:
        raise EdgecnnError(f"--max-frames must be a positive count, got {max_frames}")
    if top_k is not None and top_k < 1:
        raise EdgecnnError(f"--top-k must be at least 1, got {top_k}")
    threads = loop_threads() if threads is None else threads
    session = Session(model, provider=provider, threads=threads, spinning=False)  # the capture thread needs a core too
    spec = resolve_preprocess(session.card.preprocess, session.input_shape, preprocess or {})
    if spec.resize == "digit" and spec.color != "gray":
        raise EdgecnnError(f"resize 'digit' needs gray frames; {Path(model).name} reads {spec.color} "
                           "(accepted with rgb: --resize center_crop or stretch)")
    names = labels or session.card.labels
    classes = session.classes()
    if names and classes is not None and len(names) != classes:
        source_of_names = "--labels gives" if labels else "the model card lists"
        raise EdgecnnError(f"{source_of_names} {len(names)} class names but {Path(model).name} scores {classes} classes")
    if top_k is not None and classes is not None and top_k > classes:
        raise EdgecnnError(f"--top-k {top_k} asks for more labels than the {classes} classes {Path(model).name} scores "
                           f"(accepted: 1 to {classes})")
    top_k = top_k or min(3, classes or 3)
    recorder = _Recorder(record, force) if record else None
    window = None if headless else _Window(f"edgecnn {Path(model).name}")
    try:
        src = open_source(source, resolution)
    except EdgecnnError:
        if window:
            window.close()
        raise
    grabber = Grabber(src, lambda frame: prepare(frame, spec))
    stats = _Stats()
    stopped, ok, recorded, lost = "end of source", False, False, None
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if previous is not None:
        signal.signal(signal.SIGTERM, _raise_interrupt)  # systemd stops a service with SIGTERM
    try:
        while max_frames is None or stats.frames < max_frames:
            try:
                item = grabber.next()
            except EdgecnnError as exc:
                if not stats.frames:
                    raise  # nothing classified yet: the one line says it all
                stopped, lost = "source failed", exc
                break
            if item is None:
                break
            t0 = time.perf_counter()
            output = session.run(item.input)
            session.refuse_non_finite(output)
            probs = session.card.probabilities(output[0])
            latency_ms = item.prepare_ms + (time.perf_counter() - t0) * 1e3  # preprocessing + inference
            order = np.argsort(-probs)[:top_k]
            top = [{"label": names[i] if names and i < len(names) else str(i), "index": int(i), "p": round(float(probs[i]), 4)} for i in order]
            fps = stats.add(t0, latency_ms)
            if headless:
                file = {"file": src.files[item.index]} if src.files else {}
                emit(json.dumps({"frame": item.index, **file, "label": top[0]["label"], "p": top[0]["p"], "top": top,
                                 "latency_ms": round(latency_ms, 3), "fps": round(fps, 1)}))
            if recorder or window:
                draw_overlay(item.image, top, fps, latency_ms)
            if recorder:
                recorder.write(item.image, src.fps or 30.0)
            if window and not window.show(item.image):
                stopped = "window closed"
                break
        else:
            stopped = "max frames"
        ok = True
    except KeyboardInterrupt:
        stopped, ok = "interrupted", True
    finally:
        grabber.stop()
        if recorder:
            recorded = recorder.close(keep=ok)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if window:
            window.close()
    summary = _summary(model, source, threads, stats, grabber.dropped, stopped, record if recorded else None)
    if lost:
        raise SourceLost(str(lost), summary)
    return summary


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _summary(model: Path, source: str, threads: int, stats: _Stats, dropped: int, stopped: str, record: Path | None) -> dict[str, Any]:
    seconds = time.perf_counter() - stats.start if stats.start else 0.0
    return {
        "model": str(model),
        "source": source,
        "frames": stats.frames,
        "dropped": dropped,
        "seconds": round(seconds, 3),
        "mean_fps": round(stats.frames / seconds, 2) if seconds > 0 else 0.0,
        "latency_p50_ms": stats.percentile_ms(50),
        "latency_p99_ms": stats.percentile_ms(99),
        "threads": threads,
        "stopped": stopped,
        "record": str(record) if record else None,
    }


def parse_pair(name: str, text: str, example: str) -> tuple[int, int]:
    """'640x480' → (640, 480), refusing anything but two positive integers."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise EdgecnnError(f"--{name} {text!r} must be two positive integers joined by x, e.g. {example}")
    return int(parts[0]), int(parts[1])


def parse_floats(name: str, text: str) -> tuple[float, ...]:
    """'0.485,0.456,0.406' → a tuple of floats."""
    try:
        return tuple(float(p) for p in text.split(","))
    except ValueError:
        raise EdgecnnError(f"--{name} {text!r} must be numbers separated by commas, e.g. 0.485,0.456,0.406") from None


def read_labels(text: str) -> list[str]:
    """Class names from a file (one per line) or a comma-separated list."""
    path = Path(text)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [p.strip() for p in text.split(",")]
