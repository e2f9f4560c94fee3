"""A folder to copy to a Raspberry Pi: the model, edgecnn's runtime half pinned, a README and scripts.

edgecnn itself travels as a wheel built here from the installed package files (zipfile, no build
backend, no network), so a bundle can be made from a source checkout and from a pip install alike,
and the Pi installs the very code that was tested with the model. Runtime half: no torch.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import shutil
import stat
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
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same package files give the same wheel


def pack_model(model: Path, out: Path, force: bool = False) -> dict[str, Any]:
    """Write the bundle for `model` to `out`, built in a temporary folder and renamed into place."""
    model, out = Path(model), Path(out)
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
        wheel, pins = write_runtime(tmp)
        (tmp / "README.md").write_text(_readme(model.name, pins, has_preprocess=card.preprocess is not None, has_test=has_test))
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
        "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()),
    }


def write_runtime(folder: Path) -> tuple[Path, list[str]]:
    """The install half of a bundle in `folder`: a wheel of edgecnn, the pinned requirements.txt and
    install.sh; returns (wheel, pins). A remote bench ships this alone (edgecnn.device.remote)."""
    wheel = build_wheel(folder / "wheels")
    pins = runtime_pins()
    (folder / "requirements.txt").write_text(_requirements(pins, wheel))
    _write_script(folder / "install.sh", _INSTALL)
    return wheel, pins


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


def _requirements(pins: list[str], wheel: Path) -> str:
    return (
        f"# edgecnn's runtime half, pinned as installed where this bundle was made (Python {sys.version.split()[0]}).\n"
        "# No torch: training stays on the desktop. Install from the bundle folder: ./install.sh\n"
        + "".join(f"{p}\n" for p in pins)
        + f"./wheels/{wheel.name}\n"
    )


def _readme(model: str, pins: list[str], has_preprocess: bool, has_test: bool) -> str:
    ort = next((p for p in pins if p.lower().startswith("onnxruntime==")), "onnxruntime")
    flags = "" if has_preprocess else (
        "\n`" + model + "` carries no `edgecnn.preprocess` metadata: add `--size HxW --color rgb|gray "
        "--resize center_crop|stretch|digit` (and `--mean`, `--std`, `--labels`) to every camera command.\n"
    )
    accuracy = (f".venv/bin/edgecnn eval {model} --data test.npz                 # accuracy on the test split it was trained against\n"
                if has_test else "")
    return _README.format(model=model, ort=ort, flags=flags, accuracy=accuracy)


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
"$venv/bin/pip" install -r requirements.txt
if [ -d /usr/lib/python3/dist-packages/picamera2 ]; then
    echo "picamera2 found: installing simplejpeg into the venv, built for its numpy"
    "$venv/bin/pip" install --force-reinstall --no-deps simplejpeg
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
