"""Latency and throughput of ONNX models, measured interleaved so that noise hits all alike.

Runtime half: no torch. Every figure carries the machine, onnxruntime version, provider, threads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgecnn.errors import EdgecnnError
from edgecnn.run import file_digest, variant_name
from edgecnn.runtime.openvino import open_session, openvino_version
from edgecnn.runtime.providers import ProviderOptions
from edgecnn.runtime.session import Session


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


DEVICE_PROVIDERS = {"cuda": "cuda", "tensorrt": "cuda"}  # provider → where its tensors live (ORT's device names)


def bound_runner(session: Session, x: np.ndarray, device: str, device_id: int = 0) -> tuple[Callable[[], None], ort.IOBinding]:
    """A run with input and outputs already on `device` (IO binding), so no host↔device copy is in
    what it times; and the binding, whose outputs a caller can copy back."""
    binding = session.session.io_binding()
    binding.bind_ortvalue_input(session.input_name, ort.OrtValue.ortvalue_from_numpy(x.astype(session.input_dtype), device, device_id))
    for output in session.session.get_outputs():
        binding.bind_output(output.name, device, device_id)
    return (lambda: session.session.run_with_iobinding(binding)), binding


SETTLE_MS = 1.0  # untimed calls of a model before each timed one add up to at least this


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def turn_orders(count: int, turns: int, seed: int = 0) -> Iterator[list[int]]:
    """The order `count` interleaved models run in, drawn afresh for each of `turns` turns.

    A model called right after another starts on the caches that one left: the same OpenVINO file,
    timed thrice beside an ORT model in a fixed rotation, ran 3-5% slower in the slot behind it. A
    deployed model runs call after call, so each timed call follows untimed calls of the same model
    (timed_turns), and a fresh order each turn keeps what is left over from being one neighbour's."""
    rng = np.random.default_rng(seed)
    for _ in range(turns):
        yield rng.permutation(count).tolist()


def timed_turns(fns: list[Callable[[], Any]], turns: int, seed: int = 0) -> Iterator[tuple[int, float]]:
    """(index, milliseconds) of each timed call, `turns` turns over `fns` in turn_orders, each timed
    call right after untimed ones of the same function: at least one, and SETTLE_MS of them.

    One call does not settle a small model behind a large neighbour: convnet's int8 at b1 read 39 µs
    after one untimed call and 33.5 µs after 0.25 ms of them, as back to back (fp32: 64 against 60 µs)."""
    for order in turn_orders(len(fns), turns, seed):
        for i in order:
            settled = time.perf_counter() + SETTLE_MS / 1e3
            fns[i]()  # refills the caches the calls before it took
            while time.perf_counter() < settled:
                fns[i]()
            yield i, _timed(fns[i])


def bench_models(
    models: list[Path],
    provider: str = "cpu",
    batches: list[int] = (1, 32),
    threads: int = 1,
    warmup: int = 10,
    runs: int = 100,
    options: ProviderOptions = ProviderOptions(),
    card_options: bool = False,
    runtime: str = "onnxruntime",
) -> dict[str, Any]:
    """Time each model at each batch size, once per turn each, in a fresh order every turn, each timed
    call right after untimed ones of the same model (timed_turns).

    Models load as any ONNX Runtime program loads them, unless `card_options` applies the session
    options their cards ask for (the `host` target): a figure then holds inside edgecnn only.
    `runtime="openvino"` runs them in the OpenVINO runtime instead (the `openvino` target).

    Per model: the build (session creation and first run, where cuDNN's search and a TensorRT engine
    build land), where its nodes run, and on a GPU the latency with inputs and outputs already on the
    device (IO binding) beside the latency with the host copies.
    """
    if not models:
        raise EdgecnnError("give at least one .onnx model to bench")
    if warmup < 0 or runs < 1:
        raise EdgecnnError(f"--warmup must be ≥ 0 and --runs ≥ 1, got {warmup} and {runs}")
    device = DEVICE_PROVIDERS.get(provider)
    if options.cuda_graph and device is None:
        raise EdgecnnError(f"cuda_graph replays runs on a GPU: it takes provider cuda or tensorrt, not {provider!r}")
    sessions, models_info = [], []
    for model in models:
        t0 = time.perf_counter()
        session = open_session(model, runtime, provider=provider, threads=threads, options=options, card_options=card_options)
        first = session.random_input(batches[0])
        if device:
            bound_runner(session, first, device, options.device_id)[0]()
        else:
            session.refuse_non_finite(session.run(first))  # timing a model that computes NaN measures nothing
        if options.cuda_graph and session.fallen_back():
            raise EdgecnnError(f"cuda_graph needs every node on the GPU; {session.path.name} runs {', '.join(session.fallen_back()[:5])} on the CPU")
        sessions.append(session)
        models_info.append({
            "model": str(session.path), "variant": variant_name(session.path), "model_sha256": file_digest(session.path),
            "build_ms": (time.perf_counter() - t0) * 1e3, "placement": session.placement(), "fallen_back": session.fallen_back(),
            "session_needs": list(session.card.session_options.disabled_optimizers),
        })
    results = []
    for batch in batches:
        inputs = [s.random_input(batch) for s in sessions]
        bound = [bound_runner(s, x, device, options.device_id)[0] for s, x in zip(sessions, inputs)] if device else []
        plain = bound if options.cuda_graph else [lambda s=s, x=x: s.run(x) for s, x in zip(sessions, inputs)]  # a graph replays bound runs only
        for fn in plain + bound:
            for _ in range(warmup):
                fn()
        times: list[list[float]] = [[] for _ in sessions]
        device_times: list[list[float]] = [[] for _ in sessions]
        for i, ms in timed_turns(plain, runs):
            times[i].append(ms)
            if bound:
                device_times[i].append(_timed(bound[i]))
        base = None
        for s, info, t, d in zip(sessions, models_info, times, device_times):
            stats = percentiles(t)
            base = base or stats["p50_ms"]
            results.append(
                {
                    "model": info["model"],
                    "model_sha256": info["model_sha256"],
                    "variant": info["variant"],
                    "batch": batch,
                    **stats,
                    "throughput": batch * 1e3 / stats["p50_ms"],
                    "speedup": base / stats["p50_ms"],
                    "size_bytes": s.path.stat().st_size,
                    **({"device_p50_ms": percentiles(d)["p50_ms"]} if d else {}),
                }
            )
    return {
        "machine": {**machine_info(), **({"openvino": openvino_version()} if runtime == "openvino" else {})},
        "provider": provider,
        "runtime": runtime,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(options).items()},
        "card_options": card_options,
        "threads": threads,
        "warmup": warmup,
        "runs": runs,
        "interleaved": True,
        "models": models_info,
        "results": results,
    }


def profile_model(
    model: Path, batch: int = 1, threads: int = 1, runs: int = 50, provider: str = "cpu", options: ProviderOptions = ProviderOptions()
) -> dict[str, list[dict[str, Any]]]:
    """Kernel time per operator type and per execution provider, from onnxruntime's profiler, largest first."""
    with tempfile.TemporaryDirectory(prefix="edgecnn-profile-") as tmp:
        session = Session(model, provider=provider, threads=threads, options=options, profile=Path(tmp) / "profile")
        x = session.random_input(batch)
        for _ in range(runs):
            session.run(x)
        trace = json.loads(Path(session.session.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    by_provider: dict[str, list[float]] = {}
    for event in trace:
        args = event.get("args", {})
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op, ep = args.get("op_name", "?"), args.get("provider", "?")
            by_op[op] = by_op.get(op, 0.0) + event["dur"]
            by_provider.setdefault(ep, []).append(event["dur"])
    total = sum(by_op.values()) or 1.0
    return {
        "ops": [{"op": op, "us_per_run": us / runs, "share": us / total} for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])],
        "providers": [
            {"provider": ep, "kernels_per_run": len(durations) / runs, "us_per_run": sum(durations) / runs, "share": sum(durations) / total}
            for ep, durations in sorted(by_provider.items(), key=lambda kv: -sum(kv[1]))
        ],
    }
