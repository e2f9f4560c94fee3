"""train → export → quantize → eval → bench → report, in one call, each step writing the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.bench import bench_models
from edgecnn.evaluate import evaluate_model
from edgecnn.export import export_run
from edgecnn.files import write_json
from edgecnn.quantize import quantize_model
from edgecnn.report import build_report
from edgecnn.train import train


def run_pipeline(
    recipe: str,
    out: Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    force: bool = False,
    batches: list[int] = (1, 32),
    runs: int = 200,
    show_progress: bool = True,
) -> dict[str, Any]:
    """The whole pipeline for one recipe; returns the report."""
    run = Path(out or Path("runs") / recipe)
    train(recipe, run, epochs=epochs, seed=seed, force=force, show_progress=show_progress)
    fp32 = Path(export_run(run, force=True)["model"])
    int8 = Path(quantize_model(fp32, calib=run, force=True)["model"])
    for model in (fp32, int8):
        result = evaluate_model(model, run)
        write_json(run / f"eval-{result['variant']}.json", result, force=True)
    write_json(run / "bench-cpu.json", bench_models([fp32, int8], batches=list(batches), runs=runs), force=True)
    return build_report(run)
