"""Latency and throughput of ONNX models, measured interleaved so that noise hits all alike.

Runtime half: no torch. Every figure carries the machine, onnxruntime version, provider, threads.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgecnn.errors import EdgecnnError
from edgecnn.run import file_digest, variant_name
from edgecnn.runtime.session import Session, session_options


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip("\x00\n ")
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's model name, or the board name on ARM boards that report none."""
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware"):
            return value.strip()
    return _read("/proc/device-tree/model") or platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """What a figure needs next to it to be comparable: machine, CPU, versions, thermal state."""
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }
    temp = _read("/sys/class/thermal/thermal_zone0/temp")
    if temp and temp.lstrip("-").isdigit():
        info["cpu_temp_c"] = int(temp) / 1000
    throttled = _read("/sys/devices/platform/soc/soc:firmware/get_throttled")
    if throttled is not None:
        info["throttled"] = throttled  # Raspberry Pi firmware flags; "0" means never throttled
    return info


def parse_batches(text: str) -> list[int]:
    """'1,32' → [1, 32], refusing anything but positive integers."""
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        batches = []
    if not batches or any(b < 1 for b in batches):
        raise EdgecnnError(f"--batch must be positive integers separated by commas, e.g. 1,32; got {text!r}")
    return batches


def percentiles(times_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(times_ms)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(arr.mean())}


def bench_models(
    models: list[Path],
    provider: str = "cpu",
    batches: list[int] = (1, 32),
    threads: int = 1,
    warmup: int = 10,
    runs: int = 100,
) -> dict[str, Any]:
    """Time each model at each batch size, round-robin across models, rotating who goes first."""
    if not models:
        raise EdgecnnError("give at least one .onnx model to bench")
    if warmup < 0 or runs < 1:
        raise EdgecnnError(f"--warmup must be ≥ 0 and --runs ≥ 1, got {warmup} and {runs}")
    sessions = [Session(m, provider=provider, threads=threads) for m in models]
    digests = {s.path: file_digest(s.path) for s in sessions}
    results = []
    for batch in batches:
        inputs = [s.random_input(batch) for s in sessions]
        for s, x in zip(sessions, inputs):
            for _ in range(warmup):
                s.run(x)
        times: list[list[float]] = [[] for _ in sessions]
        for r in range(runs):
            for k in range(len(sessions)):
                i = (r + k) % len(sessions)
                t0 = time.perf_counter()
                sessions[i].run(inputs[i])
                times[i].append((time.perf_counter() - t0) * 1e3)
        base = None
        for s, t in zip(sessions, times):
            stats = percentiles(t)
            base = base or stats["p50_ms"]
            results.append(
                {
                    "model": str(s.path),
                    "model_sha256": digests[s.path],
                    "variant": variant_name(s.path),
                    "batch": batch,
                    **stats,
                    "throughput": batch * 1e3 / stats["p50_ms"],
                    "speedup": base / stats["p50_ms"],
                    "size_bytes": s.path.stat().st_size,
                }
            )
    return {
        "machine": machine_info(),
        "provider": provider,
        "threads": threads,
        "warmup": warmup,
        "runs": runs,
        "interleaved": True,
        "results": results,
    }


def op_profile(model: Path, batch: int = 1, threads: int = 1, runs: int = 50, provider: str = "cpu") -> list[dict[str, Any]]:
    """Share of kernel time per operator type, from onnxruntime's profiler, largest first."""
    session = Session(model, provider=provider, threads=threads)
    opts = session_options(threads)
    with tempfile.TemporaryDirectory(prefix="edgecnn-profile-") as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        profiled = ort.InferenceSession(
            session.path.read_bytes(),
            sess_options=opts,
            providers=[session.provider.ep],
            **({"disabled_optimizers": session.disabled_optimizers} if session.disabled_optimizers else {}),
        )
        x = session.random_input(batch)
        for _ in range(runs):
            profiled.run(None, {session.input_name: x})
        trace = json.loads(Path(profiled.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for event in trace:
        args = event.get("args", {})
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[args.get("op_name", "?")] = totals.get(args.get("op_name", "?"), 0.0) + event["dur"]
    total = sum(totals.values()) or 1.0
    return [
        {"op": op, "us_per_run": us / runs, "share": us / total}
        for op, us in sorted(totals.items(), key=lambda kv: -kv[1])
    ]
