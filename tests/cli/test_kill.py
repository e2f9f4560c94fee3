"""`kill -9` at any moment of a command that writes artifacts leaves each one as it was or whole and new.

Each command runs as a real process on a run folder that already holds every artifact; it is killed
while it writes (the moment its first temporary file appears) and at fractions of its full duration.
After each kill every artifact is either byte-identical to before or a complete file of its kind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import onnx
import pytest

EDGECNN = [sys.executable, "-c", "from edgecnn.cli import app; app()"]
FRACTIONS = (0.5, 0.8, 0.95)


def artifacts(folder: Path) -> dict[str, str]:
    """Every file outside temporaries, by content hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def assert_whole(path: Path) -> None:
    """The file is complete for its kind: it parses, loads or decodes to the end."""
    if path.suffix == ".onnx":
        onnx.checker.check_model(onnx.load(str(path)))
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".png":
        assert cv2.imread(str(path)) is not None, path
    elif path.suffix == ".pt":
        import torch

        torch.load(path, map_location="cpu", weights_only=True)
    elif path.suffix in (".whl", ".zip"):
        assert zipfile.ZipFile(path).testzip() is None, path
    elif path.suffix == ".npz":
        import numpy as np

        dict(np.load(path))
    else:
        assert path.read_text().endswith("\n"), path


def first_temporary(folder: Path) -> bool:
    return any(p.name.startswith(".") and p.name != ".lock" for p in folder.rglob("*"))


def kill_at(args: list[str], folder: Path, delay: float | None) -> bool:
    """Start the command and SIGKILL it after `delay` seconds, or (None) as soon as it writes a temporary;
    True when it was still running then."""
    proc = subprocess.Popen(EDGECNN + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < 120:
        if (first_temporary(folder) if delay is None else time.monotonic() - start >= delay):
            break
        time.sleep(0.001)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return alive


@pytest.fixture(scope="module")
def full_run(digits_run, tmp_path_factory) -> Path:
    """A digits run holding every artifact: pruned models, results, report, and a bundle beside it."""
    from typer.testing import CliRunner

    from edgecnn.cli import app

    root = tmp_path_factory.mktemp("kill")
    run = root / "digits"
    shutil.copytree(digits_run, run, ignore=shutil.ignore_patterns(".lock"))
    for args in (
        ["prune", run, "--ratio", "0.5", "--finetune-epochs", "2", "--runs", "5", "--force"],
        ["eval", run / "model.fp32.onnx", "--force"],
        ["eval", run / "model.int8.onnx", "--force"],
        ["bench", run / "model.fp32.onnx", run / "model.int8.onnx", "--runs", "5", "--force"],
        ["report", run],
        ["pack", run / "model.int8.onnx", "--out", root / "bundle"],
    ):
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    return run


COMMANDS = {
    "export": lambda run: ["export", run, "--force"],
    "quantize": lambda run: ["quantize", run / "model.fp32.onnx", "--samples", "64", "--force"],
    "prune": lambda run: ["prune", run, "--ratio", "0.5", "--finetune-epochs", "2", "--runs", "5", "--force"],
    "pack": lambda run: ["pack", run / "model.int8.onnx", "--out", run.parent / "bundle", "--force"],
    "report": lambda run: ["report", run],
}


@pytest.mark.slow  # each command runs to the end once and is killed four times: about a minute in all
@pytest.mark.parametrize("command", COMMANDS)
def test_kill_9_leaves_each_artifact_old_or_whole(command, full_run, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(full_run.parent, root, ignore=shutil.ignore_patterns(".lock"))
    args = [str(a) for a in COMMANDS[command](root / "digits")]
    start = time.monotonic()
    subprocess.run(EDGECNN + args, check=True, capture_output=True)
    duration = time.monotonic() - start
    killed = []
    for delay in (None, *(f * duration for f in FRACTIONS)):
        before = artifacts(root)
        killed.append(kill_at(args, root, delay))
        after = artifacts(root)
        assert set(before) <= set(after), f"{command} killed at {delay}: {sorted(set(before) - set(after))} gone"
        for name, digest in after.items():
            if before.get(name) != digest:
                assert_whole(root / name)
        for leftover in (p for p in root.rglob("*") if p.name.startswith(".") and p.name != ".lock"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()  # a killed process cannot clean up
    assert killed[0], f"{command} ended before it wrote a temporary file"
    assert os.listdir(root / "bundle")
