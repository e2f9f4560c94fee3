"""Where work runs: one item after another, or each a Ray task (the `sweep` extra), on this machine's
cores or an existing cluster; and the machine's timing slot, so latency is measured alone while other
work runs side by side. `edgecnn sweep` and benchmarks/compression.py share both.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from edgecnn.errors import EdgecnnError

ENGINES = ("auto", "ray", "serial")
INSTALL = "pip install 'edgecnn[sweep]'"
NODE = socket.gethostname()
T, R = TypeVar("T"), TypeVar("R")


class TimingSlot:
    """This machine's one timing slot. A cell holds it shared while it works and alone while it times, so
    no latency is measured while another cell here trains, calibrates or times, and cells work side by
    side in between. Two flock'd files in the temporary folder, shared by every process on the machine
    (the kernel frees a killed worker's hold); a timer waiting at the gate holds new work back."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder or tempfile.gettempdir())
        self.working: list[dict[str, Any]] = []
        self.timing: list[dict[str, Any]] = []

    def __enter__(self) -> TimingSlot:
        self._lock, self._gate = (os.open(self.folder / f"edgecnn-timing.{name}", os.O_RDONLY | os.O_CREAT, 0o644) for name in ("lock", "gate"))
        self._take(fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._record(self.working)
        os.close(self._lock)  # closing frees the holds
        os.close(self._gate)

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        """Time inside this: it waits until no other cell on the machine works or times."""
        self._record(self.working)
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._take(fcntl.LOCK_EX)
        try:
            yield
        finally:
            self._record(self.timing)
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._take(fcntl.LOCK_SH)

    def _take(self, mode: int) -> None:
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._lock, mode)
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        self._since = time.time()

    def _record(self, into: list[dict[str, Any]]) -> None:
        into.append({"node": NODE, "start": self._since, "end": time.time()})


def one_line(exc: BaseException) -> str:
    if isinstance(exc, EdgecnnError):
        return str(exc)
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def resolve_engine(engine: str, address: str | None) -> str:
    """ray or serial: auto takes Ray where it is installed."""
    if engine not in ENGINES:
        raise EdgecnnError(f"unknown engine {engine!r} (accepted: {', '.join(ENGINES)})")
    has_ray = importlib.util.find_spec("ray") is not None
    if address is not None and engine == "serial":
        raise EdgecnnError(f"a Ray cluster's address ({address}) and the serial engine contradict each other: pick one")
    if not has_ray and (engine == "ray" or address is not None):
        raise EdgecnnError(f"the Ray engine needs Ray, which is not installed: {INSTALL}")
    return "ray" if engine == "ray" or (engine == "auto" and has_ray) else "serial"


def on_engine(
    work: Callable[[T], R], items: list[T], engine: str, address: str | None, cpus: int, lost: Callable[[T, str], R]
) -> Iterator[R]:
    """`work` on every item, serially or each a Ray task of `cpus` CPUs never retried (a killed worker is
    that item's failure, `lost(item, reason)`), results in the order they finish. Uses the Ray instance
    already up, else starts one (a local one on this machine's cores, or joins `address`)."""
    if engine != "ray":
        yield from map(work, items)
        return
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, **({} if address else {"include_dashboard": False}))
    try:
        def call(item: T) -> R:  # Ray takes functions, not partials
            return work(item)

        task = ray.remote(num_cpus=cpus, max_retries=0)(call)
        pending = {task.remote(item): item for item in items}
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            item = pending.pop(done)
            try:
                yield ray.get(done)
            except ray.exceptions.RayError as exc:
                yield lost(item, _ray_reason(exc))
    finally:
        if started:
            ray.shutdown()


def _ray_reason(exc: Exception) -> str:
    """One line for a cell Ray lost: its worker or node died, or the memory monitor killed it."""
    from ray import exceptions

    if isinstance(exc, exceptions.OutOfMemoryError):
        return "out of memory: Ray's memory monitor killed the worker"
    if isinstance(exc, exceptions.WorkerCrashedError):
        return "worker died"
    if isinstance(exc, exceptions.NodeDiedError):
        return "node died"
    if isinstance(exc, exceptions.RayTaskError) and exc.cause is not None:
        return one_line(exc.cause)
    return one_line(exc)
