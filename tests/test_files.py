import json

import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path, read_json, replace_dir, write_json


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_existing_artifact_is_kept_without_force(tmp_path):
    target = write_json(tmp_path / "a.json", {"v": 1})
    with pytest.raises(EdgecnnError, match="--force"):
        write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    write_json(target, {"v": 2}, force=True)
    assert read_json(target) == {"v": 2}


def test_read_json_names_the_bad_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(EdgecnnError, match="bad.json is not valid JSON"):
        read_json(bad)
    with pytest.raises(EdgecnnError, match="not found"):
        read_json(tmp_path / "missing.json")


def test_artifacts_follow_the_umask(tmp_path):
    import os

    from edgecnn.files import write_text

    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG instead of killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))  # a disk that holds 2,000 bytes per file
from edgecnn.cli import app
app()
"""


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(digits_run, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "model.fp16.onnx"  # about 4 KB
    done = subprocess.run([sys.executable, "-c", FULL_DISK, "fp16", str(digits_run / "model.fp32.onnx"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: could not write {out}: File too large; nothing was written"
    assert list(tmp_path.iterdir()) == []  # no partial artifact, no temporary file


def test_a_full_disk_inside_onnxruntime_is_one_line_too(digits_run, tmp_path):
    """quantize's temporary models are written by onnxruntime's own code, outside edgecnn's writers."""
    import subprocess
    import sys

    out = tmp_path / "model.int8.onnx"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, "quantize", str(digits_run / "model.fp32.onnx"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: could not write ") and done.stderr.strip().endswith("File too large; nothing was kept"), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_replace_dir_swaps_a_folder_in_whole(tmp_path):
    old, new = tmp_path / "bundle", tmp_path / ".bundle.new"
    for folder, text in ((old, "old"), (new, "new")):
        folder.mkdir()
        (folder / "a.txt").write_text(text)
    replace_dir(new, old)
    assert (old / "a.txt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    fresh = tmp_path / ".fresh"
    fresh.mkdir()
    replace_dir(fresh, tmp_path / "other")
    assert (tmp_path / "other").is_dir() and not fresh.exists()
