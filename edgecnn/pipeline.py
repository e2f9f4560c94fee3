"""train → export → [prune] → quantize → eval → bench → report, each step writing the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.bench import bench_models
from edgecnn.data import resolve_split
from edgecnn.errors import EdgecnnError
from edgecnn.evaluate import evaluate_samples
from edgecnn.export import export_run
from edgecnn.files import refuse_overwrite, write_json
from edgecnn.quantize import int8_path, quantize_model
from edgecnn.report import build_report
from edgecnn.runtime import Session
from edgecnn.train import train

# what a pipeline writes besides the trained weights; --force clears them so no stale variant is reported
DERIVED = ("model.*.onnx", "model.*.pt", "eval-*.json", "bench-*.json", "prune-*.json", "quantize-decision*.json", "report.*", "pareto.png")


def clear_derived(run: Path) -> None:
    for pattern in DERIVED:
        for path in run.glob(pattern):
            path.unlink()


def run_pipeline(
    recipe: str,
    out: Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    force: bool = False,
    prune_ratio: float | None = None,
    auto_quant: bool = False,
    max_drop: float = 0.5,
    batches: list[int] = (1, 32),
    runs: int = 200,
    show_progress: bool = True,
    dataset_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole pipeline for one recipe; returns the report."""
    run = Path(out or Path("runs") / recipe)
    if prune_ratio is not None and not 0.0 < prune_ratio < 1.0:
        raise EdgecnnError(f"--prune must be a ratio between 0 and 1 (exclusive), got {prune_ratio}")
    refuse_overwrite(run / "model.pt", force)
    if force and run.is_dir():
        clear_derived(run)
    train(recipe, run, epochs=epochs, seed=seed, force=force, show_progress=show_progress, dataset_options=dataset_options)
    fp32_models = [Path(export_run(run, force=True)["model"])]
    if prune_ratio is not None:
        from edgecnn.prune import prune_run

        fp32_models.append(Path(prune_run(run, ratio=prune_ratio, runs=20, force=True)["model"]))
    models = list(fp32_models)
    for fp32 in fp32_models:
        if auto_quant:
            from edgecnn.autoquant import auto_quantize

            kept = Path(auto_quantize(fp32, run, max_drop=max_drop, batches=list(batches), runs=runs, force=True)["kept"])
            if kept != fp32:
                models.append(kept)
        else:
            models.append(Path(quantize_model(fp32, calib=run, out=int8_path(fp32), force=True)["model"]))
    test, source = resolve_split(run, fp32_models[0], "test")  # loaded once for every variant
    for model in models:
        result = evaluate_samples(Session(model, threads=None), test, source)
        write_json(run / f"eval-{result['variant']}.json", result, force=True)
    write_json(run / "bench-cpu.json", bench_models(models, batches=list(batches), runs=runs), force=True)
    return build_report(run)
