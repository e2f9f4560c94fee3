"""A folder to copy to a Raspberry Pi: the model, edgecnn's runtime half pinned, a README and scripts.

edgecnn itself travels as a wheel built here from the installed package files (zipfile, no build
backend, no network), so a bundle can be made from a source checkout and from a pip install alike,
and the Pi installs the very code that was tested with the model. With a platform, the wheels of
every requirement travel too, downloaded here for the Pi's CPU and Python, and the Pi installs
offline. Runtime half: no torch.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import edgecnn
from edgecnn.errors import EdgecnnError
from edgecnn.files import refuse_overwrite, replace_dir
from edgecnn.run import Run
from edgecnn.runtime.card import read_card
from edgecnn.runtime.session import load_onnx, refuse_non_finite_weights

# Raspberry Pi OS 64-bit (bookworm): the environment its pip evaluates dependency markers in
PI_ENVIRONMENT = {
    "platform_machine": "aarch64",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}
# pack --platform: the devices whose wheels a bundle can carry, and the pip download flags that pick them.
# Raspberry Pi OS 64-bit bookworm is CPython 3.11 on aarch64 with glibc 2.36, so its pip takes every manylinux
# tag from 2_17 (alias manylinux2014) to 2_36; pip download does not widen one --platform to older glibcs.
PLATFORMS = {
    "bookworm-arm64": (
        "Raspberry Pi OS 64-bit bookworm: aarch64, CPython 3.11",
        (*(f"--platform=manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)), "--platform=manylinux2014_aarch64",
         "--python-version=3.11", "--implementation=cp", "--abi=cp311"),
    ),
}
CAMERA_EXTRAS = ("simplejpeg",)  # install.sh rebuilds apt's picamera2 stack with it: offline, its wheel must travel too
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same package files give the same wheel


def pack_model(model: Path, out: Path, force: bool = False, platform: str | None = None) -> dict[str, Any]:
    """Write the bundle for `model` to `out`, built in a temporary folder and renamed into place.

    `platform` (a PLATFORMS name): the wheels of every requirement for that device go into wheels/,
    pinned to the versions installed here where the device has a wheel of them.
    """
    model, out = Path(model), Path(out)
    check_platform(platform)
    proto = load_onnx(model)
    card = read_card(proto)
    refuse_non_finite_weights(proto, model)
    refuse_overwrite(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be copied and shared
    try:
        shutil.copyfile(model, tmp / model.name)
        run = Run.of(model)
        has_test = run is not None and run.test_npz.is_file()
        if has_test:  # the device reports its own accuracy, without the dataset or the training half
            shutil.copyfile(run.test_npz, tmp / run.test_npz.name)
        wheel, pins = write_runtime(tmp, platform)
        (tmp / "README.md").write_text(_readme(model.name, pins, has_preprocess=card.preprocess is not None, has_test=has_test, platform=platform))
        _write_script(tmp / "run.sh", _RUN.replace("MODEL", model.name))
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "bundle": str(out),
        "model": model.name,
        "wheel": f"wheels/{wheel.name}",
        "requirements": pins,
        "pinned_from": f"Python {sys.version.split()[0]} on {os.uname().machine}",
        "platform": platform,
        "repinned": repinned(runtime_pins(), pins) if platform else {},
        "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()),
    }


def write_runtime(folder: Path, platform: str | None = None) -> tuple[Path, list[str]]:
    """The install half of a bundle in `folder`: a wheel of edgecnn, the pinned requirements.txt and
    install.sh; returns (wheel, pins). A remote bench ships this alone (edgecnn.device.remote).
    With a platform, wheels/ also holds every requirement's wheel for it (see platform_pins)."""
    wheel = build_wheel(folder / "wheels")
    pins = runtime_pins()
    if platform:
        pins = platform_pins(pins, folder / "wheels", platform)
    (folder / "requirements.txt").write_text(_requirements(pins, wheel, platform))
    _write_script(folder / "install.sh", _INSTALL)
    return wheel, pins


def check_platform(platform: str | None) -> None:
    """None (pip resolves on the device) or a PLATFORMS name; anything else is one line naming them."""
    if platform is not None and platform not in PLATFORMS:
        accepted = ", ".join(f"{name} ({about})" for name, (about, _) in PLATFORMS.items())
        raise EdgecnnError(f"unknown --platform {platform!r} (accepted: {accepted})")


def platform_pins(pins: list[str], wheels: Path, platform: str) -> list[str]:
    """Download into `wheels` the platform's wheels of `pins` (runtime_pins) and of CAMERA_EXTRAS; returns
    the pins of what was downloaded, as `name==version`.

    A version installed here that has no wheel for the platform is let go to edgecnn's own range (any
    version, for a dependency of a dependency), and pip chooses for the platform; every other pin keeps
    the version tested here.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    check_platform(platform)
    ranges = {canonicalize_name(r.name): f"{r.name}{r.specifier}" for r in map(Requirement, _base_requirements())}
    wanted = {canonicalize_name(Requirement(p).name): p.split(";")[0].strip() for p in pins}  # markers were read for the Pi
    wheels.mkdir(parents=True, exist_ok=True)
    while True:
        done = _pip_download([*wanted.values(), *CAMERA_EXTRAS], wheels, platform)
        if not done.returncode:
            break
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")] or done.stderr.strip().splitlines()[-1:]
        missing = re.search(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9._-]*)==", done.stderr)
        name = canonicalize_name(missing.group(1)) if missing else None
        if name not in wanted or "==" not in wanted[name]:
            raise EdgecnnError(f"pip download for --platform {platform} failed (exit {done.returncode}): "
                               f"{errors[-1] if errors else 'no output'}")
        wanted[name] = ranges.get(name, name)
    return downloaded_pins(wheels, pins)


def downloaded_pins(wheels: Path, pins: list[str]) -> list[str]:
    """`name==version` of each wheel in `wheels` but edgecnn's and CAMERA_EXTRAS', sorted, a name spelled as in
    `pins` where it is there."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename

    spelled = {canonicalize_name(Requirement(p).name): Requirement(p).name for p in pins}
    found: dict[str, str] = {}
    for path in wheels.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(path.name)
        if name not in {"edgecnn", *CAMERA_EXTRAS}:
            found[name] = f"{spelled.get(name, name)}=={version}"
    return [found[k] for k in sorted(found)]


def _pip_download(requirements: list[str], wheels: Path, platform: str) -> subprocess.CompletedProcess:
    _, flags = PLATFORMS[platform]
    return subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", *flags, "--dest", str(wheels),
                           *requirements], capture_output=True, text=True)


def repinned(host: list[str], pins: list[str]) -> dict[str, str]:
    """`{name: "version here → version pinned"}` for each pin that is not the version installed here."""
    from packaging.utils import canonicalize_name

    def versions(lines: list[str]) -> dict[str, str]:
        return {canonicalize_name(line.split("==")[0]): line.split("==")[1] for line in lines if "==" in line}

    here = versions(host)
    return {name: f"{here.get(name, 'none')} → {v}" for name, v in versions(pins).items() if here.get(name) != v}


def _write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def build_wheel(folder: Path) -> Path:
    """A py3-none-any wheel of the installed edgecnn package (runtime code and package data)."""
    version = edgecnn.__version__
    package = Path(edgecnn.__file__).parent
    files = sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    dist_info = f"edgecnn-{version}.dist-info"
    requires = "".join(f"Requires-Dist: {r}\n" for r in _base_requirements())
    extra = {
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: edgecnn\nVersion: {version}\nRequires-Python: >=3.10\n{requires}",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: edgecnn.device.pack\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/entry_points.txt": "[console_scripts]\nedgecnn = edgecnn.cli:app\n",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"edgecnn-{version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        entries = [(f"edgecnn/{p.relative_to(package).as_posix()}", p.read_bytes()) for p in files]
        entries += [(name, text.encode()) for name, text in extra.items()]
        for name, data in entries:
            _write_entry(whl, name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        _write_entry(whl, f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode())
    return path


def _write_entry(whl: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    whl.writestr(info, data)


def _base_requirements() -> list[str]:
    """edgecnn's own requirements without extras: the runtime half."""
    try:
        requires = importlib.metadata.requires("edgecnn") or []
    except importlib.metadata.PackageNotFoundError:
        raise EdgecnnError("edgecnn is not installed (pip install -e . in the checkout): its requirements are unknown") from None
    return [r for r in requires if "extra ==" not in r]


def runtime_pins() -> list[str]:
    """`name==version` for the runtime half and everything it pulls in on a Pi, as installed here.

    A dependency only the Pi needs (a marker false here) is listed unpinned, for pip to resolve there.
    """
    from packaging.requirements import Requirement  # onnxruntime depends on packaging

    pins: dict[str, str] = {}
    todo = [Requirement(r) for r in _base_requirements()]
    while todo:
        req = todo.pop()
        key = req.name.lower().replace("_", "-")
        if key in pins or (req.marker and not req.marker.evaluate(PI_ENVIRONMENT)):
            continue
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            pins[key] = str(req)
            continue
        pins[key] = f"{dist.metadata['Name']}=={dist.version}"
        todo += [Requirement(r) for r in dist.requires or []]
    if "torch" in pins:
        raise EdgecnnError("the runtime half pulls in torch; the bundle would not fit a Pi")
    return [pins[k] for k in sorted(pins)]


def _requirements(pins: list[str], wheel: Path, platform: str | None) -> str:
    made = f"pinned as installed where this bundle was made (Python {sys.version.split()[0]})"
    if platform:
        made = (f"for {platform} ({PLATFORMS[platform][0]}): {made}\n# wherever {platform} has a wheel of that "
                "version; the wheels are in wheels/, and install.sh installs from them offline")
    return (
        f"# edgecnn's runtime half, {made}.\n"
        "# No torch: training stays on the desktop. Install from the bundle folder: ./install.sh\n"
        + "".join(f"{p}\n" for p in pins)
        + f"./wheels/{wheel.name}\n"
    )


def _readme(model: str, pins: list[str], has_preprocess: bool, has_test: bool, platform: str | None) -> str:
    ort = next((p for p in pins if p.lower().startswith("onnxruntime==")), "onnxruntime")
    flags = "" if has_preprocess else (
        "\n`" + model + "` carries no `edgecnn.preprocess` metadata: add `--size HxW --color rgb|gray "
        "--resize center_crop|stretch|digit` (and `--mean`, `--std`, `--labels`) to every camera command.\n"
    )
    accuracy = (f".venv/bin/edgecnn eval {model} --data test.npz                 # accuracy on the test split it was trained against\n"
                if has_test else "")
    offline = (f"\n`wheels/` also holds every requirement's wheel for {platform} ({PLATFORMS[platform][0]}),\n"
               "simplejpeg's too: `install.sh` installs from them with no internet (`pip install --no-index`).\n" if platform else "")
    return _README.format(model=model, ort=ort, flags=flags, accuracy=accuracy, offline=offline)


_README = """# edgecnn bundle: {model}

A camera classifier for a Raspberry Pi running Raspberry Pi OS 64-bit (bookworm, Python 3.11).
It holds the model, the edgecnn runtime (`wheels/`, no PyTorch) and `requirements.txt`, pinned
({ort}, OpenCV headless, numpy) to the versions the model was tested with.
{flags}
## Install (once)

```sh
sudo apt install python3-venv python3-picamera2   # picamera2 only for the Camera Module
./install.sh                                       # .venv beside this README, pinned requirements
```

`install.sh` makes the venv with `--system-site-packages` so that apt's picamera2 is visible
inside it, and reinstalls simplejpeg there: apt's copy is built for Debian's numpy 1.24 and
fails to import next to the pinned numpy 2.
{offline}
## Run

```sh
./run.sh --source picamera              # Camera Module (libcamera); a window with labels, FPS, latency
./run.sh --source 0                     # USB webcam at /dev/video0
./run.sh --source picamera --headless   # no screen: one JSON line per frame on stdout
./run.sh --source clip.mp4 --headless --record annotated.mp4
```

The window needs a desktop session and Python's tkinter, which Raspberry Pi OS with desktop has
(elsewhere: `sudo apt install python3-tk`; `install.sh` says when it is missing); OpenCV stays
the headless build, and `--headless` needs neither. Ctrl-C ends a run with a summary (frames,
mean FPS, p50/p99 latency). `./run.sh --help` lists every option.

## As a service (headless, starts at boot)

`/etc/systemd/system/edgecnn-camera.service`, with `pi` and `/home/pi/bundle` changed to your
user and this folder:

```ini
[Unit]
Description=edgecnn camera classifier
After=network-online.target

[Service]
User=pi
WorkingDirectory=/home/pi/bundle
ExecStart=/home/pi/bundle/run.sh --source picamera --headless
StandardOutput=append:/home/pi/bundle/predictions.jsonl
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
```

```sh
sudo systemctl daemon-reload && sudo systemctl enable --now edgecnn-camera
journalctl -u edgecnn-camera -f   # errors and the summary when it stops
```

`systemctl stop` sends SIGTERM; the camera command ends as on Ctrl-C, with its summary.

## Measure on the Pi

```sh
.venv/bin/edgecnn bench {model} --batch 1 --threads 4   # records CPU, temperature and throttling next to the figures
{accuracy}```
"""

_INSTALL = """#!/bin/sh
# Create .venv beside this script and install the pinned runtime half (no torch) into it.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
venv="${EDGECNN_VENV:-$here/.venv}"
cd "$here"
python3 -m venv --system-site-packages "$venv"   # apt's picamera2 stays importable
set -- wheels/*.whl
index=""
if [ "$#" -gt 1 ]; then   # edgecnn pack --platform put every wheel beside edgecnn's: no index, no internet
    index="--no-index --find-links wheels"
fi
"$venv/bin/pip" install $index -r requirements.txt
if [ -d /usr/lib/python3/dist-packages/picamera2 ]; then
    echo "picamera2 found: installing simplejpeg into the venv, built for its numpy"
    "$venv/bin/pip" install $index --force-reinstall --no-deps simplejpeg
fi
if ! "$venv/bin/python" -c "import tkinter" 2>/dev/null; then
    echo "no tkinter: the camera window needs sudo apt install python3-tk (--headless runs without it)"
fi
echo "installed: $venv/bin/edgecnn; run $here/run.sh --source picamera"
"""

_RUN = """#!/bin/sh
# The camera classifier on this bundle's model; arguments go to `edgecnn camera` (try --help).
here="$(cd "$(dirname "$0")" && pwd)"
venv="${EDGECNN_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/edgecnn" ]; then
    echo "error: no edgecnn in $venv; run $here/install.sh first" >&2
    exit 2
fi
exec "$venv/bin/edgecnn" camera "$here/MODEL" "$@"
"""
