"""edgecnn camera on videos, folders, a stream and a picamera2 double it classifies through the real OpenCV path."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from digit_video import digit_frame, write_digit_video
from onnx import TensorProto, helper
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.device import camera, capture
from edgecnn.errors import EdgecnnError
from edgecnn.runtime.card import Preprocess
from edgecnn.runtime.preprocess import MNIST_BOX, digit_image, prepare, resolve_preprocess
from edgecnn.runtime.session import Session

DOUBLE = Path(__file__).parents[1] / "picamera2_double"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def frame_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"frame"')]


def summary_of(output: str) -> dict:
    return next(json.loads(line)["summary"] for line in output.splitlines() if line.startswith('{"summary"'))


def test_headless_video_of_printed_digits_is_classified(digits_run, tmp_path):
    video = tmp_path / "digits.mp4"
    truth = write_digit_video(video, frames=120)
    result = invoke("camera", digits_run / "model.int8.onnx", "--source", video, "--headless", "--json")
    assert result.exit_code == 0, result.output
    lines = frame_lines(result.output)
    assert [line["frame"] for line in lines] == list(range(120))  # a file is read whole: no frame skipped
    right = np.mean([line["label"] == str(truth[line["frame"]]) for line in lines])
    assert right >= 0.8, f"{right:.0%} of frames right"
    assert lines[0]["top"][0]["label"] == lines[0]["label"] and len(lines[0]["top"]) == 3
    summary = summary_of(result.output)
    assert summary["frames"] == 120 and summary["stopped"] == "end of source" and summary["dropped"] == 0
    assert summary["mean_fps"] > 0 and 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"]
    assert summary["threads"] == camera.loop_threads()


@pytest.mark.parametrize(("cores", "threads"), [({0}, 1), ({0, 1}, 1), ({0, 1, 2, 3}, 3)])
def test_inference_leaves_a_core_for_capture(monkeypatch, cores, threads):
    monkeypatch.setattr(camera.os, "sched_getaffinity", lambda pid: cores)
    assert camera.loop_threads() == threads


def test_image_folder_and_max_frames(digits_run, tmp_path):
    rng = np.random.default_rng(1)
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), digit_frame(i, (200, 150), ("uni", 400), 100, rng))
    (tmp_path / "notes.txt").write_text("not an image")
    result = invoke("camera", digits_run / "model.fp32.onnx", "--source", tmp_path, "--headless", "--max-frames", 3, "--json")
    assert result.exit_code == 0, result.output
    lines = frame_lines(result.output)
    assert [(line["frame"], line["file"]) for line in lines] == [(0, "00.png"), (1, "01.png"), (2, "02.png")]
    assert summary_of(result.output)["stopped"] == "max frames"
    video = tmp_path / "clip.mp4"
    write_digit_video(video, frames=2)
    result = invoke("camera", digits_run / "model.fp32.onnx", "--source", video, "--headless", "--json")
    assert "file" not in frame_lines(result.output)[0]  # a video's frames have no file of their own


@pytest.mark.parametrize(
    "source, message",
    [
        ("7", "no camera at index 7"),
        ("missing.mp4", r"source 'missing.mp4' is not an existing file or folder \(accepted: a webcam index"),
        ("junk.mp4", "cannot open video file"),
        ("empty", "image folder .*empty holds no images"),
        ("broken", "cannot read image .*bad.png"),
        ("rtsp://127.0.0.1:9/none", "cannot open stream rtsp://127.0.0.1:9/none"),
    ],
)
def test_bad_sources_fail_in_one_line(digits_run, tmp_path, monkeypatch, source, message):
    monkeypatch.chdir(tmp_path)
    Path("junk.mp4").write_bytes(b"\x00not a video" * 100)
    Path("empty").mkdir()
    Path("broken").mkdir()
    Path("broken/bad.png").write_bytes(b"not a png")
    t0 = time.monotonic()
    result = invoke("camera", digits_run / "model.fp32.onnx", "--source", source, "--headless")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    assert re.search(message, result.output), result.output
    assert time.monotonic() - t0 < 10


def test_bad_flags_name_the_value(digits_run, tmp_path):
    model = digits_run / "model.fp32.onnx"
    for args, message in (
        (["--max-frames", "0"], "Invalid value for '--max-frames': Input should be greater than or equal to 1"),
        (["--resize", "squash"], "preprocess resize 'squash' is not accepted (accepted: center_crop, stretch, digit)"),
        (["--size", "8by8"], "--size '8by8' must be two positive integers joined by x"),
        (["--record", tmp_path / "out.gif"], "accepted video types are .mp4, .avi"),
    ):
        result = invoke("camera", model, "--source", tmp_path, "--headless", *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)


class _FileOnce(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_dropped_stream_gives_up_after_bounded_reconnects(digits_run, tmp_path, monkeypatch):
    video = tmp_path / "stream.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 30, (160, 120))
    for i in range(10):
        writer.write(digit_frame(i, (160, 120), ("uni", 400), 80, np.random.default_rng(i)))
    writer.release()
    server = http.server.HTTPServer(("127.0.0.1", 0), lambda *a: _FileOnce(*a, directory=str(tmp_path)))

    def serve_once() -> None:  # one request, then the "camera" is gone
        server.handle_request()
        server.server_close()

    threading.Thread(target=serve_once, daemon=True).start()
    monkeypatch.setattr(capture, "RECONNECT_WAIT_S", 0.05)
    url = f"http://127.0.0.1:{server.server_port}/stream.avi"
    lines: list[str] = []
    with pytest.raises(camera.SourceLost, match=rf"{url} stopped sending frames and 3 reconnects failed") as lost:
        camera.run_camera(digits_run / "model.fp32.onnx", url, headless=True, emit=lines.append)
    frames = [json.loads(line)["frame"] for line in lines]
    assert frames and frames == sorted(frames) and frames[-1] <= 9  # live: newest frames classified, then the drop
    assert lost.value.summary["stopped"] == "source failed" and lost.value.summary["frames"] == len(frames)


def _listening_socket() -> socket.socket:
    """A TCP socket on 127.0.0.1 that listens and never accepts: connections complete, nothing answers."""
    return socket.create_server(("127.0.0.1", 0))


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def test_a_stream_that_never_answers_or_refuses_is_one_line(digits_run, monkeypatch):
    monkeypatch.setattr(capture, "STREAM_TIMEOUT_MS", 1000)
    with _listening_socket() as silent:
        for url, message in (
            (f"http://127.0.0.1:{silent.getsockname()[1]}/video", "no answer within 1 s"),
            (f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam", "no answer within 1 s"),
            (f"http://127.0.0.1:{_free_port()}/video", "the connection was refused, or what came back is not a video"),
        ):
            t0 = time.monotonic()
            result = invoke("camera", digits_run / "model.fp32.onnx", "--source", url, "--headless")
            assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
            assert f"error: cannot open stream {url}: {message}" in result.output, result.output
            assert time.monotonic() - t0 < 5


class _MjpegCamera:
    """An IP camera on 127.0.0.1 (multipart/x-mixed-replace JPEGs, as mjpg-streamer and ESP32-CAM serve)
    that sends `frames` frames and is then unplugged: no more bytes, no FIN, and nothing answers a reconnect."""

    def __init__(self, frames: int):
        self.server = _listening_socket()
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/video"
        self.frames = frames
        self.held: list[socket.socket] = []  # open until close(): the cable is pulled, the socket never closes
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        self.held.append(conn)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
        for i in range(self.frames):
            jpeg = cv2.imencode(".jpg", digit_frame(i % 10, (160, 120), ("uni", 400), 80, np.random.default_rng(i)))[1].tobytes()
            conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg))
            time.sleep(1 / 30)

    def close(self) -> None:
        for sock in (*self.held, self.server):
            sock.close()


def test_a_camera_unplugged_mid_run_ends_with_a_summary_and_one_line(digits_run, monkeypatch):
    monkeypatch.setattr(capture, "STREAM_TIMEOUT_MS", 500)
    monkeypatch.setattr(capture, "RECONNECT_WAIT_S", 0.05)
    camera_ = _MjpegCamera(frames=20)
    try:
        t0 = time.monotonic()
        result = invoke("camera", digits_run / "model.fp32.onnx", "--source", camera_.url, "--headless")
        took = time.monotonic() - t0
    finally:
        camera_.close()
    assert result.exit_code == 2, result.output  # not 0: systemd's Restart=on-failure brings the service back
    frames = [line["frame"] for line in frame_lines(result.stdout)]
    assert frames and frames == sorted(frames) and frames[-1] <= 19
    summary, error = result.stderr.splitlines()
    assert summary.startswith(f"{len(frames)} frames (source failed), ") and "latency p50" in summary, summary
    assert error == f"error: {camera_.url} stopped sending frames and 3 reconnects failed"
    assert took < 0.5 + 3 * (0.15 + 0.5) + 3  # the read timeout, 3 reconnects each waiting out the open timeout, slack


def test_a_source_that_stalls_ends_the_run():
    release = threading.Event()

    def stuck_read():  # a driver that neither returns a frame nor times out
        release.wait()
        return None

    grabber = capture.Grabber(capture.Source("stuck", True, stuck_read, lambda: None))
    with pytest.raises(EdgecnnError, match="no frame from stuck for 0 s; giving up"):
        grabber.next(stall_s=0.2)
    release.set()
    grabber.stop()


def test_picamera_without_picamera2_explains_the_install(digits_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    result = invoke("camera", digits_run / "model.fp32.onnx", "--source", "picamera", "--headless")
    assert result.exit_code == 2
    assert "sudo apt install python3-picamera2" in result.output and "--system-site-packages" in result.output


def test_picamera_double_newest_frame_wins(digits_run, monkeypatch):
    monkeypatch.syspath_prepend(str(DOUBLE))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    lines: list[dict] = []

    def slow_reader(line: str) -> None:  # a consumer slower than the camera
        lines.append(json.loads(line))
        time.sleep(0.02)

    model = digits_run / "model.fp32.onnx"
    summary = camera.run_camera(model, "picamera", headless=True, max_frames=12, emit=slow_reader)
    frames = [line["frame"] for line in lines]
    assert summary["frames"] == 12 and summary["dropped"] > 0
    assert all(b > a for a, b in zip(frames, frames[1:])) and frames[-1] > 11  # newer frames, some skipped
    import picamera2

    replay = picamera2.Picamera2()  # the double films the same frames again, in the same order
    replay.configure(replay.create_video_configuration(main={"size": (640, 480), "format": "RGB888"}))
    replay.start()
    filmed = [replay.capture_array() for _ in range(frames[-1] + 1)]
    session = Session(model)
    spec = resolve_preprocess(session.card.preprocess, session.input_shape, {})
    assert [line["label"] for line in lines] == [str(session.run(prepare(filmed[i], spec)).argmax()) for i in frames]
    monkeypatch.setattr(picamera2, "CAMERAS", [])
    with pytest.raises(EdgecnnError, match="no Raspberry Pi camera found by libcamera"):
        camera.run_camera(digits_run / "model.fp32.onnx", "picamera", headless=True, max_frames=1)


def test_record_writes_a_readable_annotated_mp4(digits_run, tmp_path):
    video, out = tmp_path / "in.mp4", tmp_path / "out" / "annotated.mp4"
    write_digit_video(video, frames=10)
    args = ("camera", digits_run / "model.fp32.onnx", "--source", video, "--headless", "--record", out)
    assert invoke(*args).exit_code == 0
    cap = cv2.VideoCapture(str(out))
    frames = []
    while (ok_frame := cap.read())[0]:
        frames.append(ok_frame[1])
    assert len(frames) == 10 and frames[0].shape == (240, 320, 3)
    assert frames[0][5:40, 5:150].mean() < 150 < frames[0][150:, 200:].mean()  # the dark overlay box on paper
    assert list(out.parent.iterdir()) == [out]  # no temporary file left
    result = invoke(*args)
    assert result.exit_code == 2 and "exists; pass --force" in result.output


def test_window_mode_without_a_display_or_tk_is_one_line(digits_run, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    result = invoke("camera", digits_run / "model.fp32.onnx", "--source", tmp_path)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "window mode needs a display (no display name and no $DISPLAY environment variable); use --headless" in result.output
    monkeypatch.setitem(sys.modules, "tkinter", None)  # a Python built without Tk (Debian's python3 without python3-tk)
    result = invoke("camera", digits_run / "model.fp32.onnx", "--source", tmp_path)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "window mode needs tkinter" in result.output and "sudo apt install python3-tk" in result.output and "--headless" in result.output


PRESS_Q = """
"$@" > out.jsonl 2> err.txt &
app=$!
for _ in $(seq 100); do window=$(xdotool search --name "$TITLE" | head -1); [ -n "$window" ] && break; sleep 0.1; done
echo "$window" > window.txt
[ -n "$window" ] && sleep 0.5 && xdotool windowfocus --sync "$window" key q
wait $app
"""
NEEDS_X = pytest.mark.skipif(not all(shutil.which(t) for t in ("xvfb-run", "xauth", "xdotool")), reason="needs xvfb and xdotool (make gui-deps)")


def press_q_in_window(command: list, folder: Path, title: str, env: dict | None = None) -> tuple[str, str, str]:
    """Run `command` on a fresh Xvfb display, wait for a window titled `title`, focus it and press q.

    Returns the window id ('' if none appeared), the command's stdout and its stderr."""
    (folder / "press_q.sh").write_text(PRESS_Q)
    env = {**(env or os.environ), "TITLE": title}
    subprocess.run(["xvfb-run", "-a", "bash", "press_q.sh", *map(str, command)], cwd=folder, env=env, capture_output=True, timeout=180)
    window, out, err = ((folder / name).read_text() for name in ("window.txt", "out.jsonl", "err.txt"))
    return window.strip(), out, err


def fresh_install(folder: Path) -> Path:
    """This checkout installed as the README says, `pip install edgecnn` (no extras), into a new venv; its bin folder."""
    root = Path(__file__).parents[2]
    src = folder / "src"  # a copy: pip builds in the source tree, and this one stays untouched
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(root / name, src / name)
    for name in ("edgecnn", "recipes"):
        shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", folder / "venv"], check=True, timeout=120)
    done = subprocess.run([folder / "venv/bin/pip", "install", "-q", src], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "venv/bin"


@pytest.mark.slow
@NEEDS_X
def test_window_mode_from_a_fresh_install_on_a_virtual_display(digits_run, tmp_path):
    """`pip install edgecnn` into a fresh venv: headless OpenCV only, the window on Xvfb, q pressed by xdotool."""
    bin_dir = fresh_install(tmp_path)
    listed = subprocess.run([bin_dir / "pip", "list", "--format", "json"], capture_output=True, text=True, check=True, timeout=120)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "opencv-python-headless" in installed and not installed & {"opencv-python", "opencv-contrib-python", "torch"}
    video = tmp_path / "clip.mp4"
    write_digit_video(video, frames=3000)  # longer than the test waits: only q ends it
    command = [bin_dir / "edgecnn", "camera", digits_run / "model.int8.onnx", "--source", video, "--json"]
    window, out, err = press_q_in_window(command, tmp_path, "edgecnn model.int8.onnx")
    assert window, f"no window titled 'edgecnn model.int8.onnx' appeared; stderr: {err}"
    summary = summary_of(out)
    assert summary["stopped"] == "window closed" and 0 < summary["frames"] < 3000 and summary["dropped"] == 0, (summary, err)
    assert "error" not in err and "Traceback" not in err, err


def test_ctrl_c_stops_with_a_summary(digits_run, tmp_path):
    video = tmp_path / "long.mp4"
    write_digit_video(video, frames=400)
    code = "from edgecnn.cli import app; app()"
    args = [sys.executable, "-c", code, "camera", str(digits_run / "model.fp32.onnx"), "--source", str(video), "--headless", "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a shell's background job ignores SIGINT
    proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    summary = summary_of(out)
    assert summary["stopped"] == "interrupted" and 0 < summary["frames"] < 400


def _foreign_rgb_model(path: Path) -> Path:
    """A metadata-free classifier a user brings: mean of each RGB channel, any image size."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["scores"])]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_model_without_metadata_takes_flags(tmp_path):
    model = _foreign_rgb_model(tmp_path / "mine.onnx")
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "red.png"), np.full((60, 80, 3), (0, 0, 255), np.uint8))  # BGR
    result = invoke("camera", model, "--source", images, "--headless")
    assert result.exit_code == 2 and "pass --size HxW" in result.output
    result = invoke("camera", model, "--source", images, "--headless", "--size", "32x32", "--labels", "red,green,blue", "--top-k", 1)
    assert result.exit_code == 0, result.output
    assert frame_lines(result.output)[0]["label"] == "red"


@pytest.mark.parametrize(
    "model, args, message",
    [
        ("digits", ["--color", "rgb"], r"frames of 8x8 rgb \(from --color rgb\) do not fit the model's input \['batch', 1, 8, 8\]"),
        ("digits", ["--top-k", "11"], r"--top-k 11 asks for more labels than the 10 classes model.fp32.onnx scores \(accepted: 1 to 10\)"),
        ("digits", ["--resolution", "640x480"], r"--resolution 640x480 sets the capture size of a webcam index or picamera; source '.*clip.mp4' delivers"),
        ("rgb", ["--size", "32x32", "--resize", "digit"], r"resize 'digit' needs gray frames; mine.onnx reads rgb \(accepted with rgb: --resize center_crop or stretch\)"),
        ("rgb", ["--size", "32x32", "--color", "gray"], r"frames of 32x32 gray \(from --color gray, --size 32x32\) do not fit the model's input \[1, 3, 'h', 'w'\]"),
    ],
)
def test_flags_that_contradict_the_model_are_one_line_before_the_first_frame(digits_run, tmp_path, model, args, message):
    video = tmp_path / "clip.mp4"
    write_digit_video(video, frames=2)
    path = digits_run / "model.fp32.onnx" if model == "digits" else _foreign_rgb_model(tmp_path / "mine.onnx")
    result = invoke("camera", path, "--source", video, "--headless", "--json", *args)
    assert result.exit_code == 2 and result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    assert re.search(message, result.output), result.output


def test_top_k_defaults_to_every_class_of_a_two_class_model(tmp_path):
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 16, 16])
    y = helper.make_tensor_value_info("logit", TensorProto.FLOAT, [1, 1])  # one sigmoid unit: two classes
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["logit"])]
    model = tmp_path / "bright.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]), str(model))
    cv2.imwrite(str(tmp_path / "white.png"), np.full((16, 16, 3), 255, np.uint8))
    result = invoke("camera", model, "--source", tmp_path / "white.png", "--headless", "--json")
    assert result.exit_code == 0, result.output
    assert [t["label"] for t in frame_lines(result.output)[0]["top"]] == ["1", "0"]


def test_digit_preprocessing_places_the_ink_as_the_datasets_do():
    paper = np.full((240, 320), 230, np.uint8)
    cv2.rectangle(paper, (0, 0), (319, 12), 20, -1)  # a dark edge of a table: touches the border, ignored
    cv2.putText(paper, "7", (150, 200), 20, cv2.FontFace("uni"), 120)
    small = digit_image(paper, (8, 8), invert=True)
    rows, cols = np.nonzero(small > 32)
    assert rows.min() == 0 and rows.max() == 7 and cols.min() >= 1 and cols.max() <= 6  # fills the height, aspect kept
    mnist = digit_image(paper, (28, 28), invert=True).astype(np.float64)
    m = cv2.moments(mnist)
    assert abs(m["m10"] / m["m00"] - 14) < 0.6 and abs(m["m01"] / m["m00"] - 14) < 0.6  # centered by mass
    rows, cols = np.nonzero(mnist > 32)
    assert rows.max() - rows.min() + 1 <= round(28 * MNIST_BOX) + 1
    blank = np.full((240, 320), 230, np.uint8)
    assert not digit_image(blank, (8, 8), invert=True).any()
    x = prepare(cv2.cvtColor(paper, cv2.COLOR_GRAY2BGR), Preprocess(size=(8, 8), color="gray", resize="digit", invert=True))
    assert x.shape == (1, 1, 8, 8) and x.dtype == np.float32 and 0.99 < x.max() <= 1.0


def test_center_crop_is_imagenet_style():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 80:560] = (255, 0, 0)  # a blue square in the middle of a black frame (BGR)
    spec = Preprocess(size=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    x = prepare(frame, spec)
    assert x.shape == (1, 3, 224, 224)
    rgb = x[0] * np.array(spec.std)[:, None, None] + np.array(spec.mean)[:, None, None]
    # blue lands in the third (RGB) channel; the 87.5% center crop leaves out the black sides a stretch would keep
    assert np.allclose(rgb[2], 1, atol=1e-5) and np.allclose(rgb[:2], 0, atol=1e-5)
