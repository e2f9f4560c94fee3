"""ARM parity without a Pi: the model on aarch64 onnxruntime under QEMU user-mode vs this host.

The arm64 side is Debian bookworm's python3.11 (as Raspberry Pi OS bookworm) extracted by
mmdebstrap, plus the aarch64 wheels of this host's onnxruntime and numpy versions; both are
built once by an explicit, logged `--setup` and cached (a bundle run in it: edgecnn.device.emulated_pi).
Emulation is ~300× slower than a Pi: this proves outputs, never timings. Runtime half: no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgecnn.data import resolve_split
from edgecnn.device.pack import PLATFORMS
from edgecnn.errors import EdgecnnError
from edgecnn.run import Run
from edgecnn.runtime.card import read_card
from edgecnn.runtime.session import Session, load_onnx

SUITE = "bookworm"  # Raspberry Pi OS 64-bit is Debian bookworm: python3.11, glibc 2.36
PLATFORM = "bookworm-arm64"  # pack --platform's name for it: the wheels a bundle carries
# extracted without maintainer scripts: python3.11 runs a model; python3-venv (ensurepip and its wheels), dash
# (/bin/sh) and coreutils (dirname) run a bundle's install.sh and run.sh
ROOTFS_PACKAGES = ("python3.11", "libstdc++6", "python3-venv", "dash", "coreutils")
FP32_LIMIT = 1e-4  # float kernels may sum in another order on NEON; more than this is a real difference
RUN_TIMEOUT_S = 900  # an emulated run longer than this asks for fewer --samples
BATCH = 32  # both sides run the same batches, so kernels see the same shapes
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}


def _cpuinfo(part: str, features: str, model: str) -> str:
    cores = "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 1\n\n"
        for i in range(4)
    )
    return cores + f"Model\t\t: {model}\n"


# QEMU's CPU model and the /proc/cpuinfo a Pi shows: onnxruntime's CPU detection reads it, and the
# host's x86 one makes it crash under QEMU 7.2. QEMU's default `max` CPU has SVE/i8mm no Pi has.
CPUS = {
    "pi4": ("cortex-a72", _cpuinfo("0xd08", "fp asimd evtstrm crc32 cpuid", "Raspberry Pi 4 Model B")),
    "pi5": ("cortex-a76", _cpuinfo("0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp", "Raspberry Pi 5 Model B")),
}


def cache_dir() -> Path:
    """Where the arm64 rootfs and wheels are kept: $XDG_CACHE_HOME/edgecnn/arm or ~/.cache/edgecnn/arm."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecnn" / "arm"


def arm_paths(cache: Path) -> tuple[Path, Path]:
    """(rootfs, site folder): the rootfs is per package list, the site folder per onnxruntime and numpy
    version, as on this host."""
    packages = hashlib.sha256(" ".join(ROOTFS_PACKAGES).encode()).hexdigest()[:8]
    return cache / f"{SUITE}-arm64-{packages}", cache / f"site-onnxruntime{ort.__version__}-numpy{np.__version__}"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses for the suite (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for stanza in text.split("\n\n"):  # deb822: URIs and Suites fields in one paragraph
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
        for line in text.splitlines():  # one-line style: deb [options] URI suite components
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == SUITE:
                return m.group(1)
    return "http://deb.debian.org/debian"


def _check_tools(setup: bool) -> None:
    missing = [t for t in ("qemu-aarch64-static", *(("mmdebstrap",) if setup else ())) if not shutil.which(t)]
    if missing:
        raise EdgecnnError(
            f"verify-arm needs {' and '.join(missing)}: as root, `make arm-deps` "
            "(apt-get install qemu-user-static mmdebstrap)"
        )


def setup_arm(cache: Path, mirror: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build what is missing of the arm64 rootfs and the aarch64 wheels in `cache`, logging each step."""
    rootfs, site = arm_paths(cache)
    _check_tools(setup=not rootfs.is_dir())
    cache.mkdir(parents=True, exist_ok=True)
    done: dict[str, Any] = {"cache": str(cache)}
    if not rootfs.is_dir():
        if os.geteuid() != 0:
            raise EdgecnnError(f"mmdebstrap needs root here to build the arm64 rootfs: run verify-arm --setup once as root (it is cached in {cache})")
        mirror = mirror or debian_mirror()
        log(f"arm setup: mmdebstrap {SUITE} arm64 {' '.join(ROOTFS_PACKAGES)} from {mirror} into {rootfs}")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".rootfs-", dir=cache) as tmp:
            _run(["mmdebstrap", "--variant=extract", "--architectures=arm64", f"--include={','.join(ROOTFS_PACKAGES)}",
                  "--quiet", SUITE, f"{tmp}/rootfs", mirror], "mmdebstrap")
            (Path(tmp) / "rootfs").rename(rootfs)
        done["rootfs_seconds"] = round(time.perf_counter() - t0, 1)
        log(f"arm setup: rootfs ready in {done['rootfs_seconds']} s")
    if not site.is_dir():
        pins = [f"onnxruntime=={ort.__version__}", f"numpy=={np.__version__}"]
        log(f"arm setup: pip download {' '.join(pins)} for aarch64 Python 3.11 into {site}")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".site-", dir=cache) as tmp:
            wheels = Path(tmp) / "wheels"
            _run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", *PLATFORMS[PLATFORM][1], "-d", str(wheels), *pins], "pip download")
            files = sorted(wheels.glob("*.whl"))
            _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--only-binary=:all:",
                  *PLATFORMS[PLATFORM][1], "--target", f"{tmp}/site", *map(str, files)], "pip install --target")
            sums = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}  # pip checked PyPI's hashes; kept for the record
            (Path(tmp) / "site" / "edgecnn-wheels.json").write_text(json.dumps(sums, indent=2) + "\n")
            (Path(tmp) / "site").rename(site)
        done["wheels"] = sorted(sums)
        done["wheels_seconds"] = round(time.perf_counter() - t0, 1)
        log(f"arm setup: {len(sums)} wheels installed in {done['wheels_seconds']} s: {', '.join(sorted(sums))}")
    return done


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip() and "is ignored" not in line]
        raise EdgecnnError(f"{what} failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}")


_GUEST = """
import json, platform, sys
import numpy as np, onnxruntime as ort
folder = sys.argv[1]
spec = json.load(open(folder + "/spec.json"))
opts = ort.SessionOptions()
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
extra = {"disabled_optimizers": spec["disabled"]} if spec["disabled"] else {}
session = ort.InferenceSession(folder + "/model.onnx", sess_options=opts, providers=["CPUExecutionProvider"], **extra)
x = np.load(folder + "/x.npy")
name = session.get_inputs()[0].name
y = np.concatenate([session.run(None, {name: x[i:i + spec["batch"]]})[0] for i in range(0, len(x), spec["batch"])])
np.save(folder + "/y.npy", y)
cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("Model")]
json.dump({"machine": platform.machine(), "python": platform.python_version(), "onnxruntime": ort.__version__,
           "numpy": np.__version__, "providers": ort.get_available_providers(), "cpu": cpu[0] if cpu else "?"},
          open(folder + "/info.json", "w"))
"""


def run_emulated(model: Path, x: np.ndarray, cpu: str, cache: Path, disabled: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Outputs of `model` on `x` from aarch64 onnxruntime under QEMU, with the guest's versions."""
    rootfs, site = arm_paths(cache)
    qemu_cpu, cpuinfo = CPUS[cpu]
    (rootfs / "proc").mkdir(exist_ok=True)
    (rootfs / "proc" / "cpuinfo").write_text(cpuinfo)  # QEMU_LD_PREFIX serves it for /proc/cpuinfo
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "QEMU_LD_PREFIX": str(rootfs),
        "QEMU_CPU": qemu_cpu,
        "PYTHONPATH": str(site),  # on this command only: the host Python never sees these wheels
        "PYTHONNOUSERSITE": "1",
    }
    with tempfile.TemporaryDirectory(prefix="edgecnn-arm-") as tmp:
        shutil.copyfile(model, f"{tmp}/model.onnx")
        np.save(f"{tmp}/x.npy", x)
        Path(tmp, "spec.json").write_text(json.dumps({"batch": BATCH, "disabled": disabled}))
        cmd = ["qemu-aarch64-static", str(rootfs / "usr/bin/python3.11"), "-c", _GUEST, tmp]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise EdgecnnError(f"the emulated run took over {RUN_TIMEOUT_S} s for {len(x)} samples; pass fewer --samples") from None
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgecnnError(f"aarch64 onnxruntime under QEMU ({qemu_cpu}) failed (exit {done.returncode}): {last}")
        return np.load(f"{tmp}/y.npy"), json.loads(Path(tmp, "info.json").read_text())


def check_options(cpu: str, samples: int) -> None:
    if cpu not in CPUS:
        raise EdgecnnError(f"unknown --cpu {cpu!r} (accepted: {', '.join(CPUS)})")
    if samples < 1:
        raise EdgecnnError(f"--samples must be positive, got {samples}")


def is_quantized(model: Path) -> bool:
    """True for an int8 model: quantization ops in the graph or edgecnn's quantization metadata."""
    proto = load_onnx(model)
    return read_card(proto).quantization is not None or any(n.op_type in QUANT_OPS for n in proto.graph.node)


def verify_arm(
    model: Path,
    cpu: str = "pi4",
    data: Path | None = None,
    samples: int = 200,
    setup: bool = False,
    cache: Path | None = None,
    mirror: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Host vs emulated aarch64 outputs: fp32 within FP32_LIMIT, int8 bit-exact, top-1 identical."""
    check_options(cpu, samples)
    model = Path(model)
    cache = Path(cache) if cache else cache_dir()
    session = Session(model, threads=1)
    x, y, source = _samples(session, model, data, samples)
    setup_result = arm_environment(cache, setup, mirror, log)
    host = np.concatenate([session.run(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])
    log(f"verify-arm: {len(x)} samples through aarch64 onnxruntime under QEMU ({CPUS[cpu][0]})")
    t0 = time.perf_counter()
    arm, guest = run_emulated(model, x, cpu, cache, session.disabled_optimizers)
    emulated_s = time.perf_counter() - t0
    int8 = is_quantized(model)
    diff = float(np.max(np.abs(host.astype(np.float64) - arm.astype(np.float64)))) if host.size else 0.0
    bit_exact = bool(host.dtype == arm.dtype and host.shape == arm.shape and np.array_equal(host.view(np.uint8), arm.view(np.uint8)))
    top_host, top_arm = session.card.predictions(host), session.card.predictions(arm)
    agreement = float((top_host == top_arm).mean())
    ok = agreement == 1.0 and (bit_exact if int8 else diff <= FP32_LIMIT)
    result = {
        "model": str(model),
        "kind": "int8" if int8 else "fp32",
        "cpu": cpu,
        "qemu_cpu": CPUS[cpu][0],
        "samples": len(x),
        "data": source,
        "max_abs_diff": diff,
        "bit_exact": bit_exact,
        "top1_agreement": agreement,
        "criterion": "bit-exact outputs, identical top-1" if int8 else f"max |Δ| ≤ {FP32_LIMIT:g}, identical top-1",
        "passed": ok,
        "host": {"machine": platform.machine(), "onnxruntime": ort.__version__, "numpy": np.__version__},
        "arm": guest,
        "emulated_seconds": round(emulated_s, 1),
        "setup": setup_result,
    }
    if y is not None:
        result["accuracy"] = {"host": float((top_host == y).mean()), "arm": float((top_arm == y).mean())}
    return result


def arm_environment(cache: Path, setup: bool, mirror: str | None, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The cached arm64 environment, built first with `setup`: that setup's record, or None."""
    rootfs, site = arm_paths(cache)
    setup_result = None
    if setup:
        t0 = time.perf_counter()
        setup_result = setup_arm(cache, mirror, log)
        setup_result["seconds"] = round(time.perf_counter() - t0, 1)
    elif not (rootfs.is_dir() and site.is_dir()):
        _check_tools(setup=True)
        raise EdgecnnError(
            f"no arm64 environment in {cache} yet: add --setup to build it once (mmdebstrap {SUITE} arm64 python3.11 "
            f"python3-venv, ~110 MB; aarch64 onnxruntime {ort.__version__} and numpy {np.__version__} wheels from PyPI, ~140 MB)"
        )
    _check_tools(setup=False)
    return setup_result


def _samples(session: Session, model: Path, data: Path | None, n: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The first `n` test samples of --data or the model's run folder, else seeded random inputs."""
    if data is None and Run.of(model) is None:
        return session.random_input(n, seed=0), None, f"{n} random inputs (seed 0)"
    split, source = resolve_split(data, model, "test")
    session.check_input(split.x[:1])
    return split.x[:n].astype(session.input_dtype), split.y[:n], source
