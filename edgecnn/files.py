"""Artifact writing: temporary name then rename, so a crash never leaves a half file."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgecnn.errors import EdgecnnError


def refuse_overwrite(path: Path, force: bool) -> None:
    """Raise when `path` exists and the user did not ask to replace it."""
    if path.exists() and not force:
        raise EdgecnnError(f"{path} exists; pass --force to overwrite it")


@contextlib.contextmanager
def atomic_path(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    refuse_overwrite(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp makes it 0600; an artifact follows the user's umask, as any file they write
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        raise EdgecnnError(f"could not write {path}: {exc.strerror}; nothing was written") from None
    finally:
        tmp_path.unlink(missing_ok=True)


def replace_dir(new: Path, out: Path) -> None:
    """Put folder `new` at `out`: on Linux one atomic exchange with an existing `out`, so a kill at any
    moment leaves the old folder or the new one at `out`, never neither; the old one is then removed."""
    new, out = Path(new), Path(out)
    if out.exists() and _exchange(new, out):
        shutil.rmtree(new) if new.is_dir() else new.unlink()
        return
    old = None
    if out.exists():  # no atomic exchange here: a short moment with no `out`
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    new.rename(out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux's renameat2(RENAME_EXCHANGE); False where it is not available."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:  # glibc before 2.28, musl
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # a kernel or filesystem without it
        return False
    raise OSError(code, os.strerror(code), str(b))


FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # a full disk, a file-size limit, a quota


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any, force: bool = False) -> Path:
    """Write `data` as indented JSON, atomically."""
    with atomic_path(path, force) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)


def write_text(path: Path, text: str, force: bool = False) -> Path:
    """Write `text`, atomically."""
    with atomic_path(path, force) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_png(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG, atomically."""
    with atomic_path(path, force=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


def read_json(path: Path) -> Any:
    """Read a JSON file, naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"{path} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EdgecnnError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
