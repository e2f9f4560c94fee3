"""edgecnn camera on videos, folders, a stream and a picamera2 double it classifies through the real OpenCV path."""

from __future__ import annotations

import http.server
import importlib.metadata
import json
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
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
    assert [line["frame"] for line in frame_lines(result.output)] == [0, 1, 2]
    assert summary_of(result.output)["stopped"] == "max frames"


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
    with pytest.raises(EdgecnnError, match=rf"{url} stopped sending frames and 3 reconnects failed"):
        camera.run_camera(digits_run / "model.fp32.onnx", url, headless=True, emit=lines.append)
    frames = [json.loads(line)["frame"] for line in lines]
    assert frames and frames == sorted(frames) and frames[-1] <= 9  # live: newest frames classified, then the drop


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


def test_window_mode_needs_a_gui_build(digits_run, tmp_path):
    try:
        cv2.namedWindow("probe")
        pytest.skip("this OpenCV has a GUI")
    except cv2.error:
        pass
    result = invoke("camera", digits_run / "model.fp32.onnx", "--source", tmp_path)
    assert result.exit_code == 2 and "window mode needs OpenCV with GUI support" in result.output and "--headless" in result.output


PRESS_Q = """
"$@" > out.jsonl 2> err.txt &
app=$!
for _ in $(seq 100); do window=$(xdotool search --name "edgecnn model.int8.onnx" | head -1); [ -n "$window" ] && break; sleep 0.1; done
echo "$window" > window.txt
[ -n "$window" ] && sleep 0.5 && xdotool key --window "$window" q
wait $app
"""


@pytest.mark.slow
@pytest.mark.skipif(not all(shutil.which(t) for t in ("xvfb-run", "xdotool")), reason="needs xvfb and xdotool (make gui-deps)")
def test_window_mode_on_a_virtual_display_quits_on_q(digits_run, tmp_path):
    """OpenCV's GUI build in a venv layered over this one, the window on Xvfb, q pressed by xdotool."""
    venv = tmp_path / "gui"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True)
    Path(purelib.stdout.strip(), "edgecnn-under-test.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    version = importlib.metadata.version("opencv-python-headless")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", f"opencv-python=={version}"], check=True, timeout=600)
    video = tmp_path / "clip.mp4"
    write_digit_video(video, frames=3000)  # longer than the test waits: only q ends it
    (tmp_path / "press_q.sh").write_text(PRESS_Q)
    command = [python, "-c", "from edgecnn.cli import app; app()", "camera", digits_run / "model.int8.onnx", "--source", video, "--json"]
    done = subprocess.run(["xvfb-run", "-a", "bash", "press_q.sh", *map(str, command)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (tmp_path / "err.txt").read_text()
    assert (tmp_path / "window.txt").read_text().strip(), "no window titled 'edgecnn model.int8.onnx' appeared"
    summary = summary_of((tmp_path / "out.jsonl").read_text())
    assert summary["stopped"] == "window closed" and 0 < summary["frames"] < 3000 and summary["dropped"] == 0


def test_ctrl_c_stops_with_a_summary(digits_run, tmp_path):
    video = tmp_path / "long.mp4"
    write_digit_video(video, frames=400)
    code = "from edgecnn.cli import app; app()"
    args = [sys.executable, "-c", code, "camera", str(digits_run / "model.fp32.onnx"), "--source", str(video), "--headless", "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
