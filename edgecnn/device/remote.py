"""Benchmark on devices over SSH: ship edgecnn's runtime once, time the models there, bring the figures home.

Per host, at most three ssh calls: a probe (python3, the cached install, the models already there), a
tar stream of what is missing that the device unpacks and installs, and `edgecnn bench --json` run
there followed by the device's fingerprint. The system ssh client does the talking, so keys, agents,
ProxyJump and ~/.ssh/config work as in a terminal; BatchMode turns a missing key into an error, never
a prompt, and every call has a timeout. Runtime half: no torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.device.pack import write_runtime
from edgecnn.errors import EdgecnnError
from edgecnn.progress import step
from edgecnn.run import file_digest
from edgecnn.runtime.bench import machine_info
from edgecnn.runtime.session import load_onnx
from edgecnn.runtime.targets import resolve_target

CONNECT_TIMEOUT_S = 10  # a device on the LAN answers in well under a second; one that is off never does
ALIVE_INTERVAL_S = 5  # with 3 missed answers, a link that dies mid-run is given up within 15 s
PROBE_TIMEOUT_S = 60  # connect, the login shell's startup files, a few file tests
INSTALL_TIMEOUT_S = 1800  # pip fetching onnxruntime, numpy and OpenCV wheels on a Pi over Wi-Fi takes minutes
BENCH_TIMEOUT_S = 3600  # a large model at batch 32, 100 runs each, on a Pi Zero
KEEP_BUNDLES = 2  # each holds a ~300 MB venv on a Pi's SD card: the one in use and the one before it
CACHE = '"${XDG_CACHE_HOME:-$HOME/.cache}/edgecnn"'  # on the device, where edgecnn keeps its caches here too
# Raspberry Pi firmware's get_throttled bits (vcgencmd documentation)
THROTTLE_BITS = {
    0: "under-voltage now", 1: "frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
    16: "under-voltage since boot", 17: "frequency capped since boot", 18: "throttled since boot", 19: "soft temperature limit since boot",
}
_HOST = re.compile(r"(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]*@)?(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*))(?::(?P<port>\d{1,5}))?")


@dataclass(frozen=True)
class Host:
    """One device: ssh's destination ([user@]host, or a Host alias of the ssh config) and a port, if given."""

    destination: str
    port: int | None = None

    def __str__(self) -> str:
        user, at, name = self.destination.rpartition("@")
        name = f"[{name}]" if ":" in name else name
        return f"{user}{at}{name}" + (f":{self.port}" if self.port else "")


def parse_host(text: str) -> Host:
    """'pi@raspberrypi.local:2222' → Host('pi@raspberrypi.local', 2222); an IPv6 address goes in brackets."""
    m = _HOST.fullmatch(text)
    if not m or (m["port"] and not 1 <= int(m["port"]) <= 65535):
        raise EdgecnnError(f"remote host {text!r} is not [user@]host[:port] with a port from 1 to 65535 "
                           "(e.g. pi@raspberrypi.local, pi@192.168.1.20:2222, pi@[fe80::1]:22, a Host alias of the ssh config)")
    return Host(f"{m['user'] or ''}{m['ip6'] or m['name']}", int(m["port"]) if m["port"] else None)


@dataclass(frozen=True)
class _Model:
    path: Path
    remote: str  # models/SHA256/NAME under the device's cache: a model crosses once, whatever run it came from


def bench_remote(
    hosts: Sequence[str],
    models: Sequence[Path],
    target: str | None = None,
    provider: str | None = None,
    batches: Sequence[int] = (1, 32),
    threads: int = 1,
    warmup: int = 10,
    runs: int = 100,
    ssh_config: Path | None = None,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """Time `models` on each host, in turn, with `edgecnn bench --json` there (unset target and provider: its defaults).

    One entry per host, in the order given: bench's result with the model paths given here, plus "host",
    "device" (device_fingerprint there, after the timing) and "bundle" (its hash, whether it was cached,
    the models copied); or {"host", "error"} for a host that failed, so the others still count.
    """
    parsed = [parse_host(h) for h in hosts]
    if target is not None:
        resolve_target(target)
    if ssh_config is not None and not Path(ssh_config).is_file():
        raise EdgecnnError(f"ssh config {ssh_config} not found")
    if shutil.which("ssh") is None:
        raise EdgecnnError("a remote bench needs the ssh client on PATH (Debian: apt install openssh-client)")
    for model in models:
        load_onnx(model)  # a bad file is one line here, before any connection
    shipped = [_Model(Path(m), f"models/{file_digest(Path(m))}/{Path(m).name}") for m in models]
    args = [*(m.remote for m in shipped), "--json", "--batch", ",".join(map(str, batches)), "--threads", str(threads),
            "--warmup", str(warmup), "--runs", str(runs), *(["--target", target] if target else []), *(["--provider", provider] if provider else [])]
    with tempfile.TemporaryDirectory(prefix="edgecnn-remote-") as tmp:
        bundle = Path(tmp) / "bundle"
        bundle.mkdir()
        write_runtime(bundle)
        sha = _tree_digest(bundle)
        results = []
        for host in parsed:
            try:
                results.append(_bench_host(host, bundle, sha, shipped, args, ssh_config, show_progress))
            except EdgecnnError as exc:
                results.append({"host": str(host), "error": str(exc)})
    return results


def _tree_digest(folder: Path) -> str:
    """SHA-256 over a folder's relative paths and contents: the bundle's name on the device."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


def _bench_host(host: Host, bundle: Path, sha: str, models: list[_Model], args: list[str], ssh_config: Path | None, show_progress: bool) -> dict[str, Any]:
    probe = _ssh(host, ssh_config, "probing the device", PROBE_TIMEOUT_S, "\n".join([
        'command -v python3 >/dev/null || { echo "no python3 on PATH ($PATH): install python3 and python3-venv" >&2; exit 127; }',
        f"c={CACHE}",
        f'[ -f "$c/bundles/{sha}/installed" ] && echo installed',
        f'for m in {" ".join(shlex.quote(m.remote) for m in models)}; do [ -f "$c/$m" ] || echo "missing $m"; done',
    ])).splitlines()
    cached = "installed" in probe
    missing = [m for m in models if f"missing {m.remote}" in probe]
    t0 = time.perf_counter()
    if missing or not cached:
        work = [*([] if cached else ["installing edgecnn's runtime (pip; minutes on a Pi)"]), *([f"copying {len(missing)} model(s)"] if missing else [])]
        step(f"{host}: {', '.join(work)}", show_progress)
        _ship(host, ssh_config, None if cached else bundle, sha, missing)
    setup_s = time.perf_counter() - t0
    step(f"{host}: timing {len(models)} model(s)", show_progress)
    venv = f"bundles/{sha}/.venv/bin"
    out = _ssh(host, ssh_config, "edgecnn bench there", BENCH_TIMEOUT_S, "\n".join([
        "set -e",
        f"cd {CACHE}",
        f"touch bundles/{sha}",  # last used: the bundles kept are the ones used most recently
        shlex.join([f"{venv}/edgecnn", "bench", *args]),
        shlex.join([f"{venv}/python", "-c", "import json; from edgecnn.device.remote import device_fingerprint; print(json.dumps(device_fingerprint()))"]),
    ]))
    text, _, fingerprint = out[max(out.find("{\n"), 0):].rstrip().rpartition("\n")  # past any banner the login shell printed
    try:
        result, device = json.loads(text), json.loads(fingerprint)
    except json.JSONDecodeError:
        raise EdgecnnError(f"edgecnn bench there printed no JSON result: {out[-200:]!r}") from None
    local = {m.remote: str(m.path) for m in models}
    for entry in (*result["models"], *result["results"]):
        entry["model"] = local.get(entry["model"], entry["model"])
    bundle_info = {"sha256": sha, "cached": cached, "copied": [m.path.name for m in missing], "setup_s": round(setup_s, 3)}
    return {"host": str(host), **result, "device": device, "bundle": bundle_info}


def _ship(host: Host, ssh_config: Path | None, bundle: Path | None, sha: str, models: list[_Model]) -> None:
    """Unpack the bundle (when given) and the models under the device's cache as one tar stream, then
    install the bundle there: a venv beside it (install.sh), marked installed only when that succeeded;
    bundles other than the KEEP_BUNDLES used last are removed."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w:gz") as tar:
        if bundle is not None:
            tar.add(bundle, arcname=f"bundles/{sha}", filter=_owned_by_root)
        for model in models:
            tar.add(model.path, arcname=model.remote, filter=_owned_by_root)
    lines = [
        "set -eu",
        f"c={CACHE}",
        'mkdir -p "$c/bundles" "$c/models"',
        't=$(mktemp -d "$c/incoming.XXXXXX")',
        "trap 'rm -rf \"$t\"' EXIT",
        'tar -xzf - -C "$t"',
        'for d in "$t"/models/*; do [ -d "$d" ] || continue; rm -rf "$c/models/${d##*/}"; mv "$d" "$c/models/"; done',
    ]
    if bundle is not None:
        lines = [
            'python3 -c "import ensurepip" 2>/dev/null || { echo "python3 there cannot make a venv: install python3-venv" >&2; exit 3; }',
            *lines,
            f'b="$c/bundles/{sha}"',
            f'rm -rf "$b"; mv "$t/bundles/{sha}" "$b"',
            'if ! "$b/install.sh" >"$b/install.log" 2>&1; then',
            '  why=$(grep -i "^error" "$b/install.log" | tail -n 1); [ -n "$why" ] || why=$(tail -n 1 "$b/install.log")',
            '  echo "install.sh: $why (log: $b/install.log)" >&2; exit 4',
            "fi",
            'touch "$b/installed"',
            f'cd "$c/bundles" && ls -1t | tail -n +{KEEP_BUNDLES + 1} | while read -r old; do rm -rf "./$old"; done',
        ]
    _ssh(host, ssh_config, "installing edgecnn there" if bundle is not None else "copying the models", INSTALL_TIMEOUT_S, "\n".join(lines), stream.getvalue())


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owner 0: a root login keeps the files as its own, any other user unpacks them as itself."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _ssh(host: Host, ssh_config: Path | None, what: str, timeout: float, script: str, stdin: bytes = b"") -> str:
    """Run a POSIX shell script on the host; its stdout, or one line saying what failed there."""
    cmd = [
        "ssh", *(["-F", str(ssh_config)] if ssh_config else []), *(["-p", str(host.port)] if host.port else []),
        "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
        "-o", f"ServerAliveInterval={ALIVE_INTERVAL_S}", "-o", "ServerAliveCountMax=3",
        host.destination, "/bin/sh -c " + shlex.quote(script),
    ]
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EdgecnnError(f"{what} gave no answer within {timeout:.0f} s; stopped") from None
    if done.returncode == 0:
        return done.stdout.decode()
    lines = [line.strip() for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
    why = lines[-1] if lines else "no message"
    if done.returncode == 255:  # ssh's own failure: no connection, no login
        hint = (" (it refused every key offered: ssh-copy-id to it once, or name the key in the ssh config)" if "Permission denied" in why
                else " (unknown or changed host key: ssh to it once by hand to check and accept it)" if "Host key verification failed" in why
                else "")
        raise EdgecnnError(f"ssh could not log in: {why}{hint}")
    raise EdgecnnError(f"{what} failed (exit {done.returncode}): {why.removeprefix('error: ')}")


def device_fingerprint() -> dict[str, Any]:
    """What a figure measured on this machine needs beside it: bench's machine info (CPU, cores, Python,
    onnxruntime, temperature) plus host name, OS, kernel, cpufreq governor and the Pi's throttling flags
    decoded; None where unreadable. Runs on the device, from the bundle's venv, right after the bench."""
    info = machine_info()
    flags = _throttle_flags(info.pop("throttled", None))
    try:
        os_name = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        os_name = None
    return {
        **info,
        "cpu_temp_c": info.get("cpu_temp_c"),
        "hostname": platform.node(),
        "os": os_name,
        "kernel": platform.release(),
        "governor": _read_value("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "throttled": None if flags is None else f"{flags:#x}",
        "throttling": None if flags is None else [word for bit, word in THROTTLE_BITS.items() if flags >> bit & 1],
    }


def _read_value(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _throttle_flags(sysfs: str | None) -> int | None:
    """The firmware's flags from sysfs (hex digits) or `vcgencmd get_throttled` (throttled=0x…); None off a Pi."""
    text = sysfs
    if text is None:
        try:
            text = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
    try:
        return int(text.strip().removeprefix("throttled="), 16)
    except ValueError:
        return None


def device_summary(device: dict[str, Any]) -> str:
    """One line of a fingerprint: CPU, OS, kernel, versions, governor, temperature, throttling (what is known)."""
    throttling = device["throttling"]
    parts = [
        f"{device['cpu']} ×{device['cores']} ({device['machine']})", device["os"], f"kernel {device['kernel']}",
        f"Python {device['python']}", f"onnxruntime {device['onnxruntime']}",
        device["governor"] and f"governor {device['governor']}",
        device["cpu_temp_c"] is not None and f"{device['cpu_temp_c']:.1f} °C",
        throttling is not None and (", ".join(throttling) if throttling else "never throttled"),
    ]
    return ", ".join(p for p in parts if p)
