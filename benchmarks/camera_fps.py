"""Camera loop FPS on a generated 640×480 video vs pure inference FPS of the same model (target ≥ 0.9).

The loop is `edgecnn camera --headless` as a Pi runs it: decoding and preprocessing in the
capture thread, inference and one JSON line per frame (to a null sink) in the main one. Pure
inference runs a session with the same threads on one preprocessed frame. Decoding and
preprocessing are timed alone too: the loop runs at the pace of its slower thread, so a model
that classifies faster than a frame decodes (digits) is bound by its capture, and its row says so.
By default both run at the camera's own thread count (every core but one). Writes
benchmarks/results/camera_fps.json.

    .venv/bin/python benchmarks/camera_fps.py [--frames 300] [--digits RUN] [--lite0 RUN] [--threads camera,0] [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgecnn.device.camera import loop_threads, run_camera
from edgecnn.files import write_json
from edgecnn.runtime.bench import machine_info
from edgecnn.runtime.preprocess import prepare, resolve_preprocess
from edgecnn.runtime.session import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from digit_video import write_digit_video  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGET = 0.9


def per_second(fn, n: int) -> float:
    """Calls per second of `fn` over `n` calls after 10 untimed ones."""
    for _ in range(10):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def decode_ms(video: Path) -> float:
    """Milliseconds to decode one frame of the video with OpenCV."""
    cap, n = cv2.VideoCapture(str(video)), 0
    t0 = time.perf_counter()
    while cap.read()[0]:
        n += 1
    return (time.perf_counter() - t0) * 1e3 / n


def measure(model: Path, video: Path, frames: int, threads: int, rounds: int) -> dict:
    """Inference alone and the camera loop, alternated `rounds` times (medians: other load comes and goes)."""
    session = Session(model, threads=threads, spinning=False)  # as the camera loop runs it
    spec = resolve_preprocess(session.card.preprocess, session.input_shape, {})
    ok, frame = cv2.VideoCapture(str(video)).read()
    assert ok, f"cannot read {video}"
    x = prepare(frame, spec)
    preprocess_fps = per_second(lambda: prepare(frame, spec), min(frames, 200))
    capture_ms = decode_ms(video) + 1e3 / preprocess_fps  # the capture thread's work per frame
    run_camera(model, str(video), headless=True, threads=threads, max_frames=20, emit=lambda line: None)  # warm-up
    inference, loops = [], []
    for _ in range(rounds):
        inference.append(per_second(lambda: session.run(x), frames))
        loops.append(run_camera(model, str(video), headless=True, threads=threads, emit=lambda line: None))
    inference_fps = float(np.median(inference))
    loop_fps = float(np.median([loop["mean_fps"] for loop in loops]))
    ratio = float(np.median([loop["mean_fps"] / fps for loop, fps in zip(loops, inference)]))
    capture_fps = 1e3 / capture_ms  # the capture thread's pace, measured alone
    return {
        "model": str(model),
        "threads": threads,
        "frames": loops[0]["frames"],
        "rounds": rounds,
        "loop_fps": loop_fps,
        "inference_fps": inference_fps,
        "preprocess_ms": 1e3 / preprocess_fps,
        "capture_ms": capture_ms,
        "inference_ms": 1e3 / inference_fps,
        "loop_p50_ms": float(np.median([loop["latency_p50_ms"] for loop in loops])),
        "ratio": ratio,
        "capture_bound": capture_fps < inference_fps,  # the slower thread: loop/inference cannot reach the target
        "ratio_vs_slower_stage": loop_fps / min(capture_fps, inference_fps),
        "meets_target": ratio >= TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames in the generated video")
    parser.add_argument("--digits", type=Path, default=ROOT / "runs" / "digits", help="run folder with the digits models")
    parser.add_argument("--lite0", type=Path, default=ROOT / "runs" / "lite0_imagenet", help="run folder with lite0_imagenet models")
    parser.add_argument("--threads", default="camera", help="intra-op thread counts, as `edgecnn camera --threads`: camera (its default), 0 (onnxruntime default), N")
    parser.add_argument("--rounds", type=int, default=9, help="inference and loop measured alternately this many times")
    args = parser.parse_args()

    models = []
    for run in (args.digits, args.lite0):
        for variant in ("fp32", "int8"):
            path = run / f"model.{variant}.onnx"
            if path.is_file():
                models.append(path)
            else:
                print(f"note: {path} is absent, skipped (`edgecnn pipeline {run.name} --out {run}` makes it)")
    rows = []
    load_before = os.getloadavg()[0]  # a shared machine: other load slows the two measurements unevenly
    with tempfile.TemporaryDirectory(prefix="edgecnn-camera-fps-") as tmp:
        video = Path(tmp) / "digits-640x480.mp4"
        write_digit_video(video, frames=args.frames, size=(640, 480))
        for model in models:
            for threads in (loop_threads() if t == "camera" else int(t) for t in args.threads.split(",")):
                rows.append(measure(model, video, args.frames, threads, args.rounds))

    print(f"\n640×480 video, {args.frames} frames, threads 0 = onnxruntime default, target loop/inference ≥ {TARGET}")
    print(f"{'model':<44} {'threads':>7} {'loop FPS':>9} {'infer FPS':>10} {'capture ms':>10} {'infer ms':>9} {'ratio':>6} {'vs slower stage':>16}  bound by")
    for r in rows:
        print(f"{r['model'][-44:]:<44} {r['threads']:>7} {r['loop_fps']:>9.1f} {r['inference_fps']:>10.1f} {r['capture_ms']:>10.2f} "
              f"{r['inference_ms']:>9.3f} {r['ratio']:>6.2f} {r['ratio_vs_slower_stage']:>16.2f}  {'capture' if r['capture_bound'] else 'inference'}")
    out = write_json(RESULTS / "camera_fps.json", {"machine": machine_info(), "frames": args.frames, "size": [640, 480],
                                                    "rounds": args.rounds, "target": TARGET,
                                                    "load_average_1min": [load_before, os.getloadavg()[0]], "results": rows}, force=True)
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
