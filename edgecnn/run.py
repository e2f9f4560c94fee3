"""The run folder: every artifact's file name, every variant's name, and which model each result measured.

`runs/<recipe>/` is the interface between steps. Nothing else in edgecnn spells a file name of it:
`Run(root).onnx("int8", family="pruned")` is `model.pruned.int8.onnx`. A result (eval, bench)
records the SHA-256 of the model it measured, so a report can tell a result whose model has
changed since from a current one.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgecnn.errors import EdgecnnError

T = TypeVar("T")

RECIPE = "recipe.json"
LOCK = ".lock"  # held (flock) by the command writing the run
_held: dict[Path, int] = {}  # run folders this process holds, with their depth
PRUNED_FAMILIES = {"structured": "pruned", "magnitude": "sparse"}  # prune method → family in file names


@dataclass(frozen=True)
class Run:
    """A run folder and the fixed names of what it holds."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, model: Path) -> Run | None:
        """The run a model file lies in (its folder holds recipe.json), or None."""
        root = Path(model).parent
        return cls(root) if (root / RECIPE).is_file() else None

    @classmethod
    def existing(cls, root: Path) -> Run:
        """A run folder that must already be there (a step that reads it before writing)."""
        if not Path(root).is_dir():
            raise EdgecnnError(f"run folder {root} not found")
        return cls(root)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def recipe_json(self) -> Path:
        return self.root / RECIPE

    @property
    def history_json(self) -> Path:
        return self.root / "history.json"

    @property
    def curves_png(self) -> Path:
        return self.root / "curves.png"

    @property
    def test_npz(self) -> Path:
        """The test split as the model reads it, kept so that eval needs no dataset loader (a Pi)."""
        return self.root / "test.npz"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def pareto_png(self) -> Path:
        return self.root / "pareto.png"

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the run folder for this process while it writes there: a second command writing the
        same run at once is refused in one line instead of mixing the folder. Re-entrant. A folder
        made here for the lock and left empty by the step is removed again."""
        key = self.root.resolve()
        if key in _held:
            _held[key] += 1
            try:
                yield
            finally:
                _held[key] -= 1
            return
        made = next((p for p in reversed([key, *key.parents]) if not p.exists()), None)
        key.mkdir(parents=True, exist_ok=True)
        fd = self._lock()
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            if made is not None and [p.name for p in self.root.iterdir()] == [LOCK]:
                (self.root / LOCK).unlink()  # before the unlock: a waiting holder retries on a fresh lock file
                for folder in [key, *key.parents][: len(key.parents) - len(made.parents) + 1]:
                    folder.rmdir()  # up to the first folder this step made
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _lock(self) -> int:
        """An exclusive lock on the folder's lock file, taken on the file the folder holds now."""
        path = self.root / LOCK
        while True:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise EdgecnnError(f"{self.root} is being written by another edgecnn command; wait for it to end, or write elsewhere") from None
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)  # the holder before removed that file as we opened it

    def weights(self, family: str = "") -> Path:
        """model.pt, or model.pruned.pt for a pruned family."""
        return self.root / ".".join(["model", *filter(None, [family]), "pt"])

    def onnx(self, precision: str, family: str = "") -> Path:
        """model.fp32.onnx, model.int8.onnx, model.pruned.fp32.onnx …"""
        return self.root / f"{'.'.join(['model', *filter(None, [family]), precision])}.onnx"

    def model(self, variant: str) -> Path:
        """The ONNX file of a variant name (fp32, pruned.int8 …)."""
        return self.root / f"model.{variant}.onnx"

    def eval_json(self, variant: str) -> Path:
        return self.root / f"eval-{variant}.json"

    def confusion_png(self, variant: str) -> Path:
        return self.root / f"confusion-{variant}.png"

    def bench_json(self, provider: str) -> Path:
        return self.root / f"bench-{provider}.json"

    def prune_json(self, method: str) -> Path:
        return self.root / f"prune-{method}.json"

    def evals(self) -> list[Path]:
        return sorted(self.root.glob("eval-*.json"))

    def prune_records(self) -> list[Path]:
        return sorted(self.root.glob("prune-*.json"))

    def decisions(self) -> list[Path]:
        return sorted(self.root.glob("quantize-decision*.json"))

    def derived(self) -> list[Path]:
        """What the steps after training write; a pipeline run with --force starts without them."""
        patterns = ("model.*.onnx", "model.*.pt", "eval-*.json", "bench-*.json", "prune-*.json", "quantize-decision*.json", "confusion-*.png")
        found = [p for pattern in patterns for p in self.root.glob(pattern)]
        return found + [p for p in (self.report_md, self.report_json, self.pareto_png) if p.is_file()]


def holds_run(locate: Callable[..., Run | None]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A step that writes a run: it holds the run `locate(**arguments)` names while it runs (none: nothing to hold)."""

    def decorate(step: Callable[..., T]) -> Callable[..., T]:
        signature = inspect.signature(step)

        @functools.wraps(step)
        def holding(*args: Any, **kwargs: Any) -> T:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            run = locate(**bound.arguments)
            with run.writing() if run is not None else contextlib.nullcontext():
                return step(*args, **kwargs)

        return holding

    return decorate


def variant_name(model: Path) -> str:
    """The variant a file name says: model.fp32.onnx → fp32, model.pruned.int8.onnx → pruned.int8."""
    name = Path(model).name.removesuffix(".onnx")
    return name.removeprefix("model.") if name.startswith("model.") else name


def exported_path(weights: Path) -> Path:
    """model.pt → model.fp32.onnx; model.pruned.pt → model.pruned.fp32.onnx."""
    return Path(weights).with_name(f"{Path(weights).stem}.fp32.onnx")


def sibling(model: Path, precision: str) -> Path:
    """model.fp32.onnx → model.PRECISION.onnx; other.onnx → other.PRECISION.onnx."""
    stem = Path(model).name.removesuffix(".onnx").removesuffix(".fp32")
    return Path(model).with_name(f"{stem}.{precision}.onnx")


def int8_sibling(model: Path) -> Path:
    """model.fp32.onnx → model.int8.onnx; other.onnx → other.int8.onnx."""
    return sibling(model, "int8")


def fp32_sibling(model: Path) -> Path:
    """model.int8.onnx → model.fp32.onnx: the file an int8 model was quantized from, by name."""
    stem = Path(model).name.removesuffix(".onnx").removesuffix(".int8")
    return Path(model).with_name(f"{stem}.fp32.onnx")


def decision_path(int8_model: Path) -> Path:
    """model.int8.onnx → quantize-decision.json; model.pruned.int8.onnx → quantize-decision.pruned.json."""
    stem = Path(int8_model).name.removesuffix(".onnx").removesuffix(".int8")
    if stem == "model" or stem.startswith("model."):
        return Path(int8_model).with_name(f"quantize-decision{stem.removeprefix('model')}.json")
    return Path(int8_model).with_name(f"{stem}.quantize-decision.json")


def file_digest(path: Path) -> str:
    """SHA-256 of a file: which model a result measured."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
