"""edgecnn pack: the bundle's contents, its pins, the wheel of edgecnn, overwrite rules, a real install."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from device.test_camera import NEEDS_X, press_q_in_window, summary_of
from digit_video import write_digit_video
from typer.testing import CliRunner

from edgecnn import __version__
from edgecnn.cli import app
from edgecnn.device.pack import downloaded_pins, platform_pins, repinned

WHEEL = f"wheels/edgecnn-{__version__}-py3-none-any.whl"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def bundle(digits_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "bundle"
    result = invoke("pack", digits_run / "model.int8.onnx", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    return out


def test_bundle_holds_the_model_pinned_runtime_readme_and_scripts(bundle, digits_run):
    files = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert files == ["README.md", "install.sh", "model.int8.onnx", "requirements.txt", "run.sh", "test.npz", WHEEL]
    assert (bundle / "test.npz").read_bytes() == (digits_run / "test.npz").read_bytes()  # the device reports its own accuracy
    assert (bundle / "model.int8.onnx").read_bytes() == (digits_run / "model.int8.onnx").read_bytes()
    assert all(os.access(bundle / s, os.X_OK) for s in ("install.sh", "run.sh"))
    assert oct(bundle.stat().st_mode & 0o777) == "0o755"
    lines = [line for line in (bundle / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert f"onnxruntime=={ort.__version__}" in lines and f"numpy=={np.__version__}" in lines
    assert any(line.startswith("opencv-python-headless==") for line in lines) and lines[-1] == f"./{WHEEL}"
    names = {line.split("==")[0].lower() for line in lines[:-1]}
    assert not names & {"torch", "scikit-learn", "matplotlib", "torch-pruning"}
    assert all("==" in line for line in lines[:-1])
    readme = (bundle / "README.md").read_text()
    for needed in ("64-bit", "--system-site-packages", "./install.sh", "--source picamera", "--headless", "[Service]", "systemctl",
                   "eval model.int8.onnx --data test.npz", "sudo apt install python3-tk"):
        assert needed in readme, needed
    assert "pip install opencv-python" not in readme  # a second cv2 beside the headless one breaks both
    assert 'camera "$here/model.int8.onnx"' in (bundle / "run.sh").read_text()
    assert '"$venv/bin/python" -c "import tkinter"' in (bundle / "install.sh").read_text()
    assert "bookworm-arm64" not in readme and "--no-index" not in readme  # no wheels of its own: pip resolves on the Pi


def test_the_wheel_is_edgecnn_without_extras(bundle):
    with zipfile.ZipFile(bundle / WHEEL) as whl:
        names = set(whl.namelist())
        assert {"edgecnn/device/camera.py", "edgecnn/cli/__init__.py", "edgecnn/runtime/session.py"} <= names
        assert "edgecnn/data/imagenet_classes.txt" in names  # package data travels with the code
        assert not any(n.startswith("recipes/") or "__pycache__" in n for n in names)
        meta = whl.read(f"edgecnn-{__version__}.dist-info/METADATA").decode()
        assert "Requires-Dist: onnxruntime" in meta and "torch" not in meta and "extra" not in meta
        assert "edgecnn = edgecnn.cli:app" in whl.read(f"edgecnn-{__version__}.dist-info/entry_points.txt").decode()
        for row in whl.read(f"edgecnn-{__version__}.dist-info/RECORD").decode().splitlines():
            name, digest, size = row.split(",")
            if digest:
                data = whl.read(name)
                assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert int(size) == len(data)


def test_existing_bundle_is_kept_without_force(bundle, digits_run):
    result = invoke("pack", digits_run / "model.fp32.onnx", "-o", bundle)
    assert result.exit_code == 2 and "exists; pass --force" in result.output
    assert (bundle / "model.int8.onnx").is_file()
    result = invoke("pack", digits_run / "model.fp32.onnx", "-o", bundle / ".." / "other", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["model"] == "model.fp32.onnx"
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["bundle", "other"]  # no temporary folders left


def test_force_replaces_the_whole_bundle(digits_run, tmp_path):
    out = tmp_path / "b"
    assert invoke("pack", digits_run / "model.int8.onnx", "-o", out).exit_code == 0
    assert invoke("pack", digits_run / "model.fp32.onnx", "-o", out, "--force").exit_code == 0
    assert (out / "model.fp32.onnx").is_file() and not (out / "model.int8.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_bad_model_leaves_nothing(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    for model, message in ((tmp_path / "none.onnx", "not found"), (junk, "is not an ONNX model")):
        result = invoke("pack", model, "-o", tmp_path / "b")
        assert result.exit_code == 2 and message in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.onnx"]


@pytest.fixture(scope="module")
def installed(bundle, tmp_path_factory) -> dict[str, str]:
    """install.sh into a fresh venv (pip may use its caches); the environment that points run.sh at it."""
    env = {**os.environ, "EDGECNN_VENV": str(tmp_path_factory.mktemp("installed") / "venv")}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run([bundle / "install.sh"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return env


@pytest.mark.slow
def test_bundle_installs_torch_free_and_classifies_a_video(bundle, installed, tmp_path):
    """install.sh into a fresh venv, then run.sh on a generated video."""
    venv = Path(installed["EDGECNN_VENV"])
    probe = subprocess.run([venv / "bin" / "python", "-c", "import torch"], capture_output=True, text=True)
    assert "No module named 'torch'" in probe.stderr
    video = tmp_path / "clip.mp4"
    truth = write_digit_video(video, frames=40)
    run = subprocess.run([bundle / "run.sh", "--source", video, "--headless", "--json"], env=installed, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    frames = [line for line in lines if "frame" in line]
    assert len(frames) == 40 and lines[-1]["summary"]["frames"] == 40
    assert np.mean([f["label"] == str(truth[f["frame"]]) for f in frames]) >= 0.8
    accuracy = subprocess.run([venv / "bin" / "edgecnn", "eval", bundle / "model.int8.onnx", "--data", bundle / "test.npz", "--json"],
                              capture_output=True, text=True, timeout=120)
    assert accuracy.returncode == 0 and json.loads(accuracy.stdout)["samples"] == 297, accuracy.stderr


@pytest.mark.slow
@NEEDS_X
def test_bundle_window_opens_on_a_desktop(bundle, installed, tmp_path):
    """run.sh in window mode on Xvfb, as on a Pi desktop: the bundle's headless OpenCV, the system Python's Tk."""
    video = tmp_path / "clip.mp4"
    write_digit_video(video, frames=3000)  # longer than the test waits: only q ends it
    window, out, err = press_q_in_window([bundle / "run.sh", "--source", video, "--json"], tmp_path, "edgecnn model.int8.onnx", env=installed)
    assert window, f"no window titled 'edgecnn model.int8.onnx' appeared; stderr: {err}"
    summary = summary_of(out)
    assert summary["stopped"] == "window closed" and 0 < summary["frames"] < 3000, (summary, err)


def test_a_bad_platform_is_one_line_naming_the_accepted_ones(digits_run, tmp_path):
    result = invoke("pack", digits_run / "model.int8.onnx", "-o", tmp_path / "b", "--platform", "pi")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: unknown --platform 'pi' (accepted: bookworm-arm64 (Raspberry Pi OS 64-bit bookworm")
    assert list(tmp_path.iterdir()) == []


def test_the_pins_are_what_was_downloaded_spelled_as_here(tmp_path):
    """platform_pins reads its pins back from the wheels pip chose; edgecnn's own and simplejpeg's are not pins."""
    names = ["numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
             "opencv_python_headless-5.0.0.93-cp37-abi3-manylinux_2_28_aarch64.whl", "typing_extensions-4.16.0-py3-none-any.whl",
             "new_dep-1.0-py3-none-any.whl", f"edgecnn-{__version__}-py3-none-any.whl",
             "simplejpeg-1.9.0-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.whl"]
    for name in names:
        (tmp_path / name).touch()
    host = ["numpy==2.3.1", "opencv-python-headless==5.0.0.93", "typing_extensions==4.16.0"]
    pins = downloaded_pins(tmp_path, host)
    assert pins == ["new-dep==1.0", "numpy==2.4.6", "opencv-python-headless==5.0.0.93", "typing_extensions==4.16.0"]
    assert repinned(host, pins) == {"new-dep": "none → 1.0", "numpy": "2.3.1 → 2.4.6"}


def _tiny_wheel(folder: Path, name: str, version: str) -> Path:
    """A pure-Python wheel holding one module, as pip download leaves them."""
    dist = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{name}.py", "ANSWER = 42\n")
        whl.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{dist}/RECORD", "")
    return path


def test_install_sh_installs_offline_when_the_wheels_came_with_the_bundle(bundle, tmp_path):
    """The bundle's install.sh: with a wheel beside edgecnn's it asks no index (one that cannot answer is set),
    and installs from wheels/."""
    folder = tmp_path / "bundle"
    (folder / "wheels").mkdir(parents=True)
    shutil.copy(bundle / "install.sh", folder)
    _tiny_wheel(folder / "wheels", "edgecnn", "0")  # the count install.sh goes by: more than edgecnn's wheel
    _tiny_wheel(folder / "wheels", "tiny", "1.0")
    (folder / "requirements.txt").write_text("tiny==1.0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "VIRTUAL_ENV"}
    env.update(EDGECNN_VENV=str(tmp_path / "venv"), PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple")
    done = subprocess.run([folder / "install.sh"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    probe = subprocess.run([tmp_path / "venv" / "bin" / "python", "-c", "import tiny; print(tiny.ANSWER)"], capture_output=True, text=True)
    assert probe.stdout == "42\n", probe.stderr


@pytest.mark.slow
def test_a_platform_bundle_carries_aarch64_wheels_pinned_as_here(digits_run, tmp_path):
    """pack --platform: pip download for aarch64 CPython 3.11; every pin has its wheel, at the version installed here."""
    out = tmp_path / "bundle"
    result = invoke("pack", digits_run / "model.int8.onnx", "-o", out, "--platform", "bookworm-arm64", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["platform"] == "bookworm-arm64" and report["repinned"] == {}  # every version here has its aarch64 wheel
    lines = [line for line in (out / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert f"onnxruntime=={ort.__version__}" in lines and f"numpy=={np.__version__}" in lines and lines[-1] == f"./{WHEEL}"
    wheels = {w.name for w in (out / "wheels").iterdir()}
    for pin in lines[:-1]:
        name, version = pin.split("==")
        prefix = f"{name.lower().replace('-', '_')}-{version}-"
        found = [w for w in wheels if w.lower().startswith(prefix)]
        assert len(found) == 1 and (found[0].endswith("-any.whl") or "aarch64" in found[0]) and "x86_64" not in found[0], (pin, found)
    assert any(w.startswith("simplejpeg-") and "aarch64" in w for w in wheels)  # install.sh's picamera2 step, offline too
    assert "installs from them with no internet" in (out / "README.md").read_text()


@pytest.mark.slow
def test_a_version_without_a_wheel_for_the_pi_is_left_to_pip(tmp_path):
    """numpy 1.21 has no CPython 3.11 wheel: its pin goes to edgecnn's range and pip's choice for the Pi."""
    from packaging.version import Version

    pins = platform_pins(["numpy==1.21.6"], tmp_path, "bookworm-arm64")
    assert len(pins) == 1 and pins[0].startswith("numpy==") and Version(pins[0].split("==")[1]) >= Version("1.24")
    assert any(w.name.startswith(pins[0].replace("==", "-") + "-cp311-cp311-") and "aarch64" in w.name for w in tmp_path.iterdir())
    assert repinned(["numpy==1.21.6"], pins) == {"numpy": f"1.21.6 → {pins[0].split('==')[1]}"}
