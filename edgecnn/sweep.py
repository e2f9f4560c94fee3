"""Sweeps: recipes × pruning ratios × targets × accuracy budgets × seeds, each cell one pipeline run in
its own run folder, on Ray (the `sweep` extra) or one cell after another; one table of the medians and
ranges over seeds, and an accuracy-against-latency plot per target.

Cells train, export, calibrate and evaluate side by side, but latency is measured alone on its machine
(TimingSlot), so a figure is what a serial run would measure. A finished cell leaves its outcome in
cells/NAME.json beside its run folder cells/NAME/, and a rerun skips it; a failed cell is reported with
its reason, does not stop the others, and runs again next time.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import itertools
import math
import statistics
import time
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgecnn.engine import INSTALL, NODE, TimingSlot, on_engine, one_line, resolve_engine
from edgecnn.errors import EdgecnnError
from edgecnn.files import read_json, save_png, write_json, write_text
from edgecnn.progress import progress_bar
from edgecnn.report import pareto_front
from edgecnn.run import Run
from edgecnn.runtime.bench import machine_info
from edgecnn.runtime.targets import TARGETS, resolve_target


@dataclass(frozen=True)
class Cell:
    """One point of the grid: one pipeline run."""

    recipe: str
    prune: float | None  # None: not pruned
    target: str
    max_drop: float
    seed: int | None  # None: the recipe's own

    @property
    def name(self) -> str:
        prune = "none" if self.prune is None else f"{self.prune:g}"
        return f"{self.recipe}.prune-{prune}.{self.target}.drop-{self.max_drop:g}.seed-{'recipe' if self.seed is None else self.seed}"

    @property
    def group(self) -> tuple[Any, ...]:
        """The cell without its seed: what the table takes the median over seeds of."""
        return (self.recipe, self.prune, self.target, self.max_drop)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        _refuse_unknown(cls, d, "sweep cell")
        return cls(**d)


@dataclass(frozen=True)
class Settings:
    """What every cell of a sweep shares."""

    epochs: int | None = None  # None: each recipe's own
    auto_quant: bool = False
    batches: tuple[int, ...] = (1, 32)
    runs: int = 200
    threads: int = 1  # torch threads per cell, on either engine: trained weights depend on them
    dataset_options: dict[str, dict[str, str]] = field(default_factory=dict)  # recipe → its data options

    def of(self, recipe: str) -> dict[str, Any]:
        """The settings one cell of `recipe` ran with, as its outcome records them."""
        return {"epochs": self.epochs, "auto_quant": self.auto_quant, "batches": list(self.batches), "runs": self.runs,
                "threads": self.threads, "dataset_options": self.dataset_options.get(recipe, {})}


@dataclass(frozen=True)
class Outcome:
    """What one cell came to: its report's rows, or the one-line reason it failed; and when it worked and timed."""

    cell: Cell
    settings: dict[str, Any]
    status: str  # done, failed
    run: str
    node: str | None
    seconds: float | None  # None: Ray lost the cell
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reason: str | None = None
    detail: str | None = None  # the traceback of an error that is no user mistake
    working: list[dict[str, Any]] = field(default_factory=list)  # intervals holding the timing slot shared
    timing: list[dict[str, Any]] = field(default_factory=list)  # intervals holding it alone
    reused: bool = False  # finished in an earlier sweep

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "cell": self.cell.to_dict(), "name": self.cell.name}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Outcome:
        d = {k: v for k, v in d.items() if k != "name"}
        _refuse_unknown(cls, d, "sweep cell outcome")
        return cls(**{**d, "cell": Cell.from_dict(d["cell"])})


def _refuse_unknown(cls: type, d: dict[str, Any], what: str) -> None:
    unknown = d.keys() - {f.name for f in fields(cls)}
    if unknown:
        raise EdgecnnError(f"{what} has unknown keys {sorted(unknown)} (accepted: {', '.join(f.name for f in fields(cls))})")


def cell_paths(root: Path, cell: Cell) -> tuple[Path, Path]:
    """A cell's run folder and its outcome file, in the sweep folder."""
    return Path(root) / "cells" / cell.name, Path(root) / "cells" / f"{cell.name}.json"


def run_cell(cell: Cell, settings: Settings, root: Path) -> Outcome:
    """One pipeline run in the cell's run folder, its latency timed alone on this machine; the outcome is
    written beside the folder once the run finished. A failure is an outcome with its one-line reason."""
    folder, outcome_file = cell_paths(root, cell)
    outcome_file.unlink(missing_ok=True)  # a run folder rewritten is unfinished until its outcome is back
    t0, slot = time.perf_counter(), TimingSlot()
    base = {"cell": cell, "settings": settings.of(cell.recipe), "run": str(folder), "node": NODE}
    try:
        with slot:
            from edgecnn.pipeline import run_pipeline  # importing torch is work too: not while another cell times
            from edgecnn.train.fit import torch_threads

            with torch_threads(settings.threads):
                report = run_pipeline(
                    cell.recipe, folder, epochs=settings.epochs, seed=cell.seed, force=True, prune_ratio=cell.prune,
                    auto_quant=settings.auto_quant, max_drop=cell.max_drop, batches=list(settings.batches), runs=settings.runs,
                    show_progress=False, dataset_options=settings.dataset_options.get(cell.recipe), target=cell.target,
                    timing_slot=slot.alone,
                )
    except Exception as exc:  # a cell's failure, whatever it is, is its row: the sweep goes on
        user = isinstance(exc, EdgecnnError)
        return Outcome(**base, status="failed", seconds=time.perf_counter() - t0, reason=one_line(exc),
                       detail=None if user else traceback.format_exc(), working=slot.working, timing=slot.timing)
    outcome = Outcome(**base, status="done", seconds=time.perf_counter() - t0, rows=_rows(report), notes=report["notes"],
                      working=slot.working, timing=slot.timing)
    write_json(outcome_file, outcome.to_dict(), force=True)
    return outcome


def _rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A report's rows with the figures a sweep compares; latency as a list (JSON keeps no int keys)."""
    return [
        {"variant": r["variant"], "accuracy": r["accuracy"], "size_bytes": r["size_bytes"],
         "latency": [{"batch": int(b), "p50_ms": t["p50_ms"], "speedup": t["speedup"]} for b, t in sorted(r["latency"].items())]}
        for r in report["rows"]
    ]


def grid(recipes: list[str], prune: list[float | None], targets: list[str], max_drops: list[float], seeds: list[int | None]) -> list[Cell]:
    """Every combination, seeds innermost; repeated values count once."""
    axes = [list(dict.fromkeys(axis)) for axis in (recipes, prune, targets, max_drops, seeds)]
    return [Cell(*values) for values in itertools.product(*axes)]


def _check(cells: list[Cell], settings: Settings) -> None:
    """Every value of the grid and settings, before any cell runs."""
    from recipes import get_recipe

    if not cells:
        raise EdgecnnError("a sweep needs at least one recipe")
    for recipe in {c.recipe for c in cells}:
        get_recipe(recipe)
    for ratio in {c.prune for c in cells} - {None}:
        if not 0.0 < ratio < 1.0:
            raise EdgecnnError(f"pruning ratio {ratio} is not between 0 and 1 (exclusive); none means no pruning")
    for target in {c.target for c in cells}:
        if not resolve_target(target).timed_here:
            here = [t for t in TARGETS if TARGETS[t].timed_here]
            raise EdgecnnError(f"target {target} is timed on the device; a sweep times here (accepted: {', '.join(here)})")
    for drop in {c.max_drop for c in cells}:
        if drop < 0:
            raise EdgecnnError(f"accuracy budget {drop} is below 0 points")
    if settings.epochs is not None and settings.epochs < 1 or settings.runs < 1 or settings.threads < 1 or not settings.batches or min(settings.batches) < 1:
        raise EdgecnnError(f"epochs, runs, threads and batches must be ≥ 1; got {settings.epochs}, {settings.runs}, {settings.threads} and {list(settings.batches)}")
    stray = settings.dataset_options.keys() - {c.recipe for c in cells}
    if stray:
        raise EdgecnnError(f"dataset options for {', '.join(sorted(stray))}, which the sweep does not run (recipes: {', '.join(dict.fromkeys(c.recipe for c in cells))})")


def _finished(root: Path, cell: Cell) -> Outcome | None:
    """The outcome of a cell an earlier sweep finished, while its run folder still holds the report."""
    folder, outcome_file = cell_paths(root, cell)
    if not outcome_file.is_file() or not Run(folder).report_json.is_file():
        return None
    return Outcome.from_dict(read_json(outcome_file))


def run_sweep(
    cells: list[Cell],
    settings: Settings = Settings(),
    out: Path = Path("runs/sweep"),
    engine: str = "auto",
    address: str | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run every cell not finished before (all with `force`), on Ray or serially; write sweep.json,
    sweep.md and pareto-TARGET.png into `out` and return the sweep."""
    _check(cells, settings)
    engine = resolve_engine(engine, address)
    out = Path(out).resolve()  # workers may start elsewhere
    t0 = time.perf_counter()
    outcomes: dict[Cell, Outcome] = {}
    for cell in cells if not force else []:
        earlier = _finished(out, cell)
        if earlier is not None:
            if earlier.settings != settings.of(cell.recipe):
                changed = ", ".join(f"{k} {earlier.settings.get(k)} → {v}" for k, v in settings.of(cell.recipe).items() if earlier.settings.get(k) != v)
                raise EdgecnnError(f"cell {cell.name} in {out} finished with other settings ({changed}); pass --force to run it again, or write elsewhere")
            outcomes[cell] = dataclasses.replace(earlier, reused=True)
    todo = [c for c in cells if c not in outcomes]
    def lost(cell: Cell, reason: str) -> Outcome:
        return Outcome(cell, settings.of(cell.recipe), "failed", str(cell_paths(out, cell)[0]), None, None, reason=reason)

    with progress_bar(f"sweep ({engine})", len(todo), show_progress) as advance:
        runs = on_engine(functools.partial(run_cell, settings=settings, root=out), todo, engine, address, settings.threads, lost)
        for outcome in runs if todo else ():  # nothing left: no Ray to start
            outcomes[outcome.cell] = outcome
            advance(f"{outcome.cell.name}: {outcome.status}")
    ordered = [outcomes[c] for c in cells]
    table = merge(ordered)
    result = {
        "out": str(out),
        "engine": engine,
        "note": f"cells ran one after another: {INSTALL} runs them in parallel on Ray" if importlib.util.find_spec("ray") is None else None,
        "settings": dataclasses.asdict(settings),
        "grid": {axis: list(dict.fromkeys(getattr(c, axis) for c in cells)) for axis in ("recipe", "prune", "target", "max_drop", "seed")},
        "table": table,
        "failed": [{"cell": o.cell.name, "reason": o.reason} for o in ordered if o.status == "failed"],
        "pareto_png": _plots(table, out, settings.batches[0]),
        "cells": [o.to_dict() for o in ordered],
        "machine": machine_info(),
        "seconds": time.perf_counter() - t0,
    }
    write_json(out / "sweep.json", result, force=True)
    write_text(out / "sweep.md", markdown(result), force=True)
    return result


def _spread(values: list[float | None]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None


def merge(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """One row per recipe, ratio, target, budget and variant: the median and range over seeds of accuracy,
    size, and p50 latency and speedup at each batch; `seeds` counts the cells that have the variant."""
    cells: dict[tuple[Any, ...], int] = {}
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for o in outcomes:
        cells[o.cell.group] = cells.get(o.cell.group, 0) + 1
        for row in o.rows if o.status == "done" else []:
            groups.setdefault((*o.cell.group, row["variant"]), []).append(row)
    table = []
    for (recipe, prune, target, max_drop, variant), rows in groups.items():
        batches = sorted({t["batch"] for r in rows for t in r["latency"]})
        latency = {b: [next((t for t in r["latency"] if t["batch"] == b), {}) for r in rows] for b in batches}
        table.append({
            "recipe": recipe, "prune": prune, "target": target, "max_drop": max_drop, "variant": variant,
            "seeds": len(rows), "cells": cells[(recipe, prune, target, max_drop)],
            "accuracy": _spread([r["accuracy"] for r in rows]),
            "size_bytes": _spread([r["size_bytes"] for r in rows]),
            "latency": [{"batch": b, "p50_ms": _spread([t.get("p50_ms") for t in ts]), "speedup": _spread([t.get("speedup") for t in ts])}
                        for b, ts in latency.items()],
        })
    return table


def _median(spread: dict[str, float] | None, scale: float, spec: str, unit: str = "") -> str:
    return "–" if spread is None else f"{scale * spread['median']:{spec}}{unit}"


def _range(spread: dict[str, float] | None, scale: float, decimals: int) -> str:
    """min–max over seeds, rounded outward so that the median never reads outside it; – for one value or none."""
    if spread is None or spread["min"] == spread["max"]:
        return "–"
    step = 10**decimals
    low, high = (rounding(round(scale * spread[k] * step, 6)) / step for k, rounding in (("min", math.floor), ("max", math.ceil)))
    return f"{low:.{decimals}f}–{high:.{decimals}f}"


def table_cells(table: list[dict[str, Any]], batch: int) -> tuple[list[str], list[list[str]]]:
    """The merged table's header and cells: medians over seeds and their ranges, latency at `batch`."""
    header = ["recipe", "prune", "target", "budget", "variant", "seeds", "accuracy", "acc range",
              f"p50 ms b{batch}", "p50 range", f"speedup b{batch}", "speedup range", "KiB"]
    rows = []
    for r in table:
        at = next((t for t in r["latency"] if t["batch"] == batch), {})
        rows.append([
            r["recipe"], "none" if r["prune"] is None else f"{r['prune']:g}", r["target"], f"{r['max_drop']:g} pt", r["variant"],
            f"{r['seeds']}/{r['cells']}", _median(r["accuracy"], 100, ".2f", "%"), _range(r["accuracy"], 100, 1),
            _median(at.get("p50_ms"), 1, ".3f"), _range(at.get("p50_ms"), 1, 3),
            _median(at.get("speedup"), 1, ".2f", "×"), _range(at.get("speedup"), 1, 2), _median(r["size_bytes"], 1 / 1024, ".1f"),
        ])
    return header, rows


def markdown(result: dict[str, Any]) -> str:
    """sweep.md: the merged table, the failed cells with their reasons, and how it was measured."""
    batch = result["settings"]["batches"][0]
    header, rows = table_cells(result["table"], batch)
    lines = ["# Sweep", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if result["failed"]:
        lines += ["", "## Failed cells", "", "| cell | reason |", "|---|---|"]
        lines += [f"| {f['cell']} | {f['reason']} |" for f in result["failed"]]
    done = [c for c in result["cells"] if c["status"] == "done"]
    m = result["machine"]
    lines += [
        "",
        f"Medians over seeds beside their min–max; seeds: the cells that kept the variant, of those in the group. {len(result['cells'])} cells "
        f"({sum(c['reused'] for c in done)} finished earlier, {len(result['failed'])} failed) on {result['engine']}, "
        f"{result['settings']['threads']} torch thread(s) per cell; every latency measured alone on its machine. "
        f"Driver: {m['cpu']} ({m['cores']} cores), onnxruntime {m['onnxruntime']}.",
    ]
    return "\n".join(lines) + "\n"


def _plots(table: list[dict[str, Any]], out: Path, batch: int) -> dict[str, str]:
    """pareto-TARGET.png per target: a panel per recipe, each variant's median accuracy against its median
    p50 latency with their ranges over seeds as bars, the Pareto front in red. An unpruned variant is the same
    model in every cell of its recipe, seed and budget: it is drawn once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = len({r["max_drop"] for r in table}) > 1
    written = {}
    for target in dict.fromkeys(r["target"] for r in table):
        panels: dict[str, dict[str, tuple[dict[str, float], dict[str, float]]]] = {}
        for r in table:
            at = next((t for t in r["latency"] if t["batch"] == batch), {})
            if r["target"] != target or r["accuracy"] is None or at.get("p50_ms") is None:
                continue
            label = r["variant"] + (f" {r['prune']:g}" if r["variant"].startswith("pruned") else "") + (f" @{r['max_drop']:g} pt" if budgets else "")
            panels.setdefault(r["recipe"], {}).setdefault(label, (r["accuracy"], at["p50_ms"]))
        if not panels:
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(max(6, 5 * len(panels)), 4.5), squeeze=False)
        for ax, (recipe, points) in zip(axes[0], panels.items()):
            front = set(pareto_front([{"variant": k, "accuracy": a["median"], "latency": {batch: {"p50_ms": t["median"]}}} for k, (a, t) in points.items()], batch))
            for label, (acc, lat) in points.items():
                ax.errorbar(lat["median"], 100 * acc["median"], fmt="o", capsize=3, color="tab:red" if label in front else "tab:gray",
                            xerr=[[lat["median"] - lat["min"]], [lat["max"] - lat["median"]]],
                            yerr=[[100 * (acc["median"] - acc["min"])], [100 * (acc["max"] - acc["median"])]])
                ax.annotate(label, (lat["median"], 100 * acc["median"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
            ax.margins(0.2)
            ax.set_title(recipe)
            ax.set_xlabel(f"p50 latency at batch {batch} (ms)")
            ax.set_ylabel("accuracy (%)")
        fig.suptitle(f"target {target}: medians over seeds, bars their range\nred: the Pareto front", fontsize=10)
        fig.tight_layout()
        written[target] = str(save_png(fig, out / f"pareto-{target}.png"))
        plt.close(fig)
    return written
