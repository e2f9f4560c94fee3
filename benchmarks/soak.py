"""Memory soak: resident memory (RSS) of the camera loop and of repeated inference over a long run (target growth ≤ 5%).

Two phases on the digits model, each in this process: `run_camera` headless on a generated
320×240 digits video as long as the soak (open_source has no looping source, so the file holds
every frame), and a `Session.run` loop on one input as `edgecnn bench` runs it. RSS is read at
the end of warm-up (the first 10% of the frames or runs) and at the last one in the loop itself,
and every --interval seconds from a background thread in between; growth is (peak after warm-up
− RSS at end of warm-up) / RSS at end of warm-up. Without --run a digits run is trained, exported
and quantized in a child process (as tests/conftest.py does), so torch is not in the memory
measured. Exits 1 when a phase grows more than the target. Writes benchmarks/results/soak.json.

    .venv/bin/python benchmarks/soak.py [--frames 20000] [--runs 20000] [--run RUN] [--variant int8] [--interval 0.01]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from edgecnn.device.camera import run_camera
from edgecnn.files import write_json
from edgecnn.runtime.bench import machine_info
from edgecnn.runtime.session import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from digit_video import write_digit_video  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGET_PCT = 5.0
WARMUP_SHARE = 0.1  # allocators, caches and onnxruntime's arenas settle in the first 10%
MB = 2**20


def rss_bytes() -> int:
    """Resident memory of this process, from /proc/self/status (Linux, as on a Pi)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmRSS line")


class Soak:
    """Counts a phase's steps; RSS at the end of warm-up and at the last step, sampled in between."""

    def __init__(self, steps: int, interval: float):
        self.steps, self.warmup, self.interval = steps, max(1, int(steps * WARMUP_SHARE)), interval
        self.done = 0
        self.warm_rss = self.final_rss = 0
        self.start = self.seconds = 0.0
        self.samples: list[int] = []  # RSS after warm-up, from the background thread
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="soak-rss", daemon=True)

    def step(self, *_: object) -> None:
        """One frame or run done; takes `emit`'s line too, which it drops."""
        self.done += 1
        if self.done == self.warmup:
            self.warm_rss = rss_bytes()
        if self.done == self.steps:
            self.final_rss = rss_bytes()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            if self.warmup <= self.done < self.steps:
                self.samples.append(rss_bytes())

    def __enter__(self) -> Soak:
        self.start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.perf_counter() - self.start

    def summary(self, phase: str) -> dict[str, Any]:
        if self.done != self.steps:
            raise RuntimeError(f"{phase} ran {self.done} steps, not {self.steps}")
        peak = max(self.samples + [self.final_rss])
        growth = 100 * (peak - self.warm_rss) / self.warm_rss
        return {
            "phase": phase,
            "steps": self.steps,
            "warmup_steps": self.warmup,
            "seconds": round(self.seconds, 2),
            "steps_per_s": round(self.steps / self.seconds, 1),
            "samples": len(self.samples),
            "rss_warmup_mb": self.warm_rss / MB,
            "rss_min_after_warmup_mb": min(self.samples + [self.final_rss]) / MB,
            "rss_peak_after_warmup_mb": peak / MB,
            "rss_final_mb": self.final_rss / MB,
            "growth_pct": growth,
            "passed": growth <= TARGET_PCT,
        }


def make_run(run: Path) -> None:
    """Train, export and quantize a digits run, with the calls tests/conftest.py makes."""
    from edgecnn.quantize.model import quantize_model
    from edgecnn.train.export import export_run
    from edgecnn.train.fit import train

    train("digits", run, epochs=12, show_progress=False)  # enough for a model that predicts; memory does not depend on accuracy
    export_run(run)
    quantize_model(run / "model.fp32.onnx", calib=run, samples=128)


def soak_camera(model: Path, video: Path, frames: int, interval: float) -> dict[str, Any]:
    """The headless camera loop over every frame of the video, each JSON line dropped."""
    with Soak(frames, interval) as soak:
        loop = run_camera(model, str(video), headless=True, emit=soak.step)
    return {**soak.summary("camera"), "threads": loop["threads"], "dropped": loop["dropped"]}


def soak_bench(model: Path, runs: int, interval: float) -> dict[str, Any]:
    """`runs` inferences on one batch-1 input, with the session bench_models builds (one thread)."""
    with Soak(runs, interval) as soak:
        session = Session(model, threads=1)
        x = session.random_input(1)
        for _ in range(runs):
            session.run(x)
            soak.step()
    return {**soak.summary("bench"), "threads": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000, help="camera loop frames (the generated video's length)")
    parser.add_argument("--runs", type=int, default=20000, help="inferences in the bench phase")
    parser.add_argument("--run", type=Path, help="digits run folder to use instead of training one")
    parser.add_argument("--variant", choices=("int8", "fp32"), default="int8", help="which model of the run: int8 is what a device runs")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between RSS samples (20,000 runs of the digits model take under a second)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgecnn-soak-") as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "digits"
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                pool.submit(make_run, run).result()
        model = run / f"model.{args.variant}.onnx"
        if not model.is_file():
            sys.exit(f"{model} not found (`edgecnn pipeline digits --out {run}` makes it)")
        video = Path(tmp) / "digits-320x240.mp4"
        write_digit_video(video, frames=args.frames)
        phases = [soak_camera(model, video, args.frames, args.interval), soak_bench(model, args.runs, args.interval)]

    print(f"\n{model.name}, RSS in MiB, warm-up = first {WARMUP_SHARE:.0%}, target growth ≤ {TARGET_PCT}%")
    print(f"{'phase':<7} {'steps':>6} {'seconds':>8} {'per s':>7} {'samples':>7} {'warm-up':>8} {'peak after':>10} {'final':>7} {'growth %':>8}  result")
    for p in phases:
        print(f"{p['phase']:<7} {p['steps']:>6} {p['seconds']:>8.1f} {p['steps_per_s']:>7.0f} {p['samples']:>7} {p['rss_warmup_mb']:>8.1f} "
              f"{p['rss_peak_after_warmup_mb']:>10.1f} {p['rss_final_mb']:>7.1f} {p['growth_pct']:>8.2f}  {'PASS' if p['passed'] else 'FAIL'}")
    out = write_json(RESULTS / "soak.json", {"machine": machine_info(), "model": str(model) if args.run else f"<trained>/{model.name}",
                                             "frames": args.frames, "runs": args.runs, "interval_s": args.interval,
                                             "warmup_share": WARMUP_SHARE, "target_growth_pct": TARGET_PCT, "phases": phases}, force=True)
    print(f"written: {out.relative_to(ROOT)}")
    if not all(p["passed"] for p in phases):
        sys.exit(1)


if __name__ == "__main__":
    main()
