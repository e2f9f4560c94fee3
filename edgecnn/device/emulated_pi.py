"""A Pi bundle run as a Pi runs it, without a Pi: the bundle from `pack --platform` copied into an
overlay of the cached arm64 rootfs (edgecnn.device.arm), its install.sh offline and run.sh --headless
chrooted in user, mount, PID and network namespaces whose own binfmt_misc hands aarch64 programs to
QEMU. Its per-frame labels are compared with this host's camera run. Runtime half: no torch.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgecnn.device.arm import CPUS, PLATFORM, RUN_TIMEOUT_S, arm_environment, arm_paths, cache_dir, check_options
from edgecnn.errors import EdgecnnError

INSTALL_TIMEOUT_S = 900  # install.sh under QEMU: a venv and ~90 MB of wheels, a few minutes
GUEST_HOME = "/home/pi"  # the bundle goes to GUEST_HOME/bundle in the rootfs, as on a Pi
_GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's root PATH, for the namespace's tools too
# binfmt_misc's entry for aarch64 ELF programs (the magic and mask of Debian's qemu-user-static); flag F opens QEMU
# when registered, so it runs programs inside the chroot, which has no x86 QEMU
BINFMT = (r":edgecnn-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
          r":\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:{qemu}:F")


# Run as `unshare ... sh -c _NAMESPACE sh ROOTFS SCRATCH BINFMT COMMAND...` in new user, mount, PID and network
# namespaces: the rootfs under an overlay (the cache stays as built), the host's /dev and /sys, a /proc with a Pi's
# cpuinfo, and a binfmt_misc of this namespace's own (Linux 6.7+) that hands aarch64 programs to QEMU; no network.
_NAMESPACE = """set -eu
rootfs=$1 scratch=$2 register=$3
shift 3
root=$scratch/root
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$scratch/upper,workdir=$scratch/work" "$root"
mkdir -p "$root/dev" "$root/sys" "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t proc proc "$root/proc"
mount --bind "$scratch/cpuinfo" "$root/proc/cpuinfo"
if ! mount -t binfmt_misc binfmt_misc "$scratch/binfmt" 2>/dev/null; then
    echo "binfmt_misc cannot be mounted in a user namespace on Linux $(uname -r) (6.7 or later can)" >&2
    exit 1
fi
printf '%s' "$register" > "$scratch/binfmt/register"
exec chroot "$root" "$@"
"""


def verify_bundle(
    bundle: Path,
    video: Path,
    cpu: str = "pi4",
    samples: int = 200,
    setup: bool = False,
    cache: Path | None = None,
    mirror: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The bundle as a Pi runs it: install.sh offline, then run.sh --headless on the first `samples` frames
    of `video`, in the arm64 rootfs under QEMU; passes when every frame's top-1 label equals this host's
    `edgecnn camera` on the same frames."""
    from edgecnn.device.camera import run_camera

    check_options(cpu, samples)
    bundle, video = Path(bundle), Path(video)
    if not video.is_file():
        raise EdgecnnError(f"--video {video} is not a file (accepted: a video file OpenCV reads, such as .mp4)")
    model = _bundle_model(bundle)
    cache = Path(cache) if cache else cache_dir()
    setup_result = arm_environment(cache, setup, mirror, log)
    for tool in ("unshare", "chroot"):
        if not shutil.which(tool, path=_GUEST_PATH):
            raise EdgecnnError(f"verify-arm --bundle needs {tool} (Debian: util-linux and coreutils)")
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=cache) as tmp:
        scratch = Path(tmp)
        home = scratch / "upper" / GUEST_HOME.lstrip("/")
        shutil.copytree(bundle, home / "bundle", symlinks=True, ignore=shutil.ignore_patterns(".venv"))
        clip = home / f"{video.stem}.mkv"
        count = _lossless_copy(video, clip, samples)
        log(f"verify-arm: {count} frames of {video.name} decoded here and written lossless to {clip.name} for both sides")
        host_lines: list[str] = []
        run_camera(model, str(clip), headless=True, emit=host_lines.append)
        host = _frames(host_lines)
        guest = _install_and_run(arm_paths(cache)[0], scratch, cpu, clip.name, log)
    arm = guest.pop("frames")
    mismatches = [{"frame": i, "host": h["label"], "arm": a["label"]} for i, (h, a) in enumerate(zip(host, arm)) if h["label"] != a["label"]]
    return {
        "bundle": str(bundle),
        "model": model.name,
        "video": str(video),
        "decoded": f"the first {count} frames, decoded here and written lossless (FFV1) for both sides",
        "cpu": cpu,
        "qemu_cpu": CPUS[cpu][0],
        "frames": {"host": len(host), "arm": len(arm)},
        "label_agreement": (len(host) - len(mismatches)) / len(host) if host and len(host) == len(arm) else 0.0,
        "mismatches": mismatches,
        "max_top1_p_diff": max((abs(h["p"] - a["p"]) for h, a in zip(host, arm)), default=0.0),
        "criterion": "install.sh offline, then the same top-1 label on every frame",
        "passed": bool(host) and len(host) == len(arm) and not mismatches,
        "host": {"machine": platform.machine(), "onnxruntime": ort.__version__, "numpy": np.__version__},
        **guest,
        "setup": setup_result,
    }


def _install_and_run(rootfs: Path, scratch: Path, cpu: str, clip: str, log: Callable[[str], None]) -> dict[str, Any]:
    """install.sh, then run.sh --headless on `clip`, of the bundle laid out in `scratch`/upper: the per-frame
    records, what the venv holds, and the seconds each took."""
    qemu_cpu, cpuinfo = CPUS[cpu]
    for folder in ("work", "root", "binfmt"):
        (scratch / folder).mkdir()
    (scratch / "cpuinfo").write_text(cpuinfo)
    bundle = f"{GUEST_HOME}/bundle"
    log(f"verify-arm: {bundle}/install.sh in the arm64 rootfs under QEMU ({qemu_cpu}), no network")
    t0 = time.perf_counter()
    _in_rootfs(rootfs, scratch, qemu_cpu, [f"{bundle}/install.sh"], INSTALL_TIMEOUT_S)
    install_s = time.perf_counter() - t0
    site = next((scratch / "upper" / bundle.lstrip("/") / ".venv" / "lib").glob("python3*/site-packages"))
    log(f"verify-arm: installed in {install_s:.0f} s; {bundle}/run.sh --source {clip} --headless")
    t0 = time.perf_counter()
    done = _in_rootfs(rootfs, scratch, qemu_cpu, [f"{bundle}/run.sh", "--source", f"{GUEST_HOME}/{clip}", "--headless", "--json"], RUN_TIMEOUT_S)
    return {
        "frames": _frames(done.stdout.splitlines()),
        "installed": sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions(path=[str(site)])),
        "install_seconds": round(install_s, 1),
        "emulated_seconds": round(time.perf_counter() - t0, 1),
    }


def _lossless_copy(video: Path, out: Path, frames: int) -> int:
    """The first `frames` frames of `video`, decoded here and written lossless (FFV1) to `out`; returns their count.

    Lossy decoders differ across CPUs: OpenCV's FFmpeg decodes an MPEG-4 (mp4v) clip up to 3 levels apart on
    most pixels on x86-64 and aarch64. With the same pixels on both sides, a label that differs is the bundle's.
    """
    import cv2

    from edgecnn.device.capture import open_source

    source = open_source(str(video))
    writer = None
    count = 0
    try:
        while count < frames and (frame := source.read()) is not None:
            if writer is None:
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"FFV1"), source.fps or 30.0, (frame.shape[1], frame.shape[0]))
                if not writer.isOpened():
                    raise EdgecnnError(f"this OpenCV ({cv2.__version__}) cannot write FFV1 video to {out.name}; opencv-python-headless can")
            writer.write(frame)
            count += 1
    finally:
        source.close()
        if writer is not None:
            writer.release()
    return count


def _bundle_model(bundle: Path) -> Path:
    """The model of a bundle from `pack --platform`; refuses a folder that is not one."""
    fix = f"make one with edgecnn pack MODEL -o {bundle} --platform {PLATFORM}"
    if not (bundle / "install.sh").is_file() or not (bundle / "run.sh").is_file():
        raise EdgecnnError(f"--bundle {bundle} has no install.sh and run.sh: {fix}")
    if not any("aarch64" in wheel.name for wheel in bundle.glob("wheels/*.whl")):
        raise EdgecnnError(f"--bundle {bundle} carries no aarch64 wheels, so its install.sh would need the internet: {fix}")
    models = sorted(bundle.glob("*.onnx"))
    if len(models) != 1:
        raise EdgecnnError(f"--bundle {bundle} holds {len(models)} .onnx files (accepted: the one model pack puts there)")
    return models[0]


def _in_rootfs(rootfs: Path, scratch: Path, qemu_cpu: str, command: list[str], timeout: int) -> subprocess.CompletedProcess:
    """`command` chrooted in the overlaid rootfs under QEMU (_NAMESPACE); an EdgecnnError with its last line if it fails."""
    register = BINFMT.format(qemu=shutil.which("qemu-aarch64-static"))
    env = {"PATH": _GUEST_PATH, "HOME": GUEST_HOME, "LANG": "C.UTF-8", "QEMU_CPU": qemu_cpu}
    cmd = ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--net", "--fork", "--kill-child",
           "sh", "-c", _NAMESPACE, "sh", str(rootfs), str(scratch), register, *command]
    name = Path(command[0]).name
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EdgecnnError(f"{name} took over {timeout} s under QEMU; a shorter --video or fewer --samples") from None
    if done.returncode:
        lines = [line for line in (done.stderr.strip() or done.stdout.strip()).splitlines() if line.strip()]
        raise EdgecnnError(f"{name} failed under QEMU ({qemu_cpu}, exit {done.returncode}): {lines[-1] if lines else 'no output'}")
    return done


def _frames(lines: list[str]) -> list[dict[str, Any]]:
    """The per-frame records of `edgecnn camera --headless` output, in order."""
    return [record for record in (json.loads(line) for line in lines if line.startswith("{")) if "frame" in record]
