"""train → export → [prune] → quantize → eval → bench → report, each step writing the run folder."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from edgecnn.data import resolve_split
from edgecnn.errors import EdgecnnError
from edgecnn.files import read_json, refuse_overwrite
from edgecnn.measure import bench, record_eval
from edgecnn.progress import step
from edgecnn.quantize.model import quantize_model
from edgecnn.report import build_report
from edgecnn.run import Run, holds_run, int8_sibling, variant_name
from edgecnn.runtime.agreement import compare_models
from edgecnn.runtime.card import read_card
from edgecnn.runtime.evaluate import evaluate_samples
from edgecnn.runtime.session import Session, load_onnx
from edgecnn.runtime.targets import DEFAULT_TARGET, resolve_target
from edgecnn.train.export import export_run
from edgecnn.train.fit import recipe_run, train


@holds_run(lambda recipe, out, **_: recipe_run(recipe, out))
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
    target: str = DEFAULT_TARGET,
    timing_slot: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> dict[str, Any]:
    """The whole pipeline for one recipe, timed where `target` loads a model; returns the report.
    Every latency measurement (pruning's, the int8 search's, the final bench) runs inside `timing_slot()`."""
    run = recipe_run(recipe, out)
    if not resolve_target(target).timed_here:
        raise EdgecnnError(f"the pipeline times models on this machine; target {target} is timed on the device (`edgecnn quantize-search --target {target} --candidates DIR`)")
    if prune_ratio is not None and not 0.0 < prune_ratio < 1.0:
        raise EdgecnnError(f"--prune must be a ratio between 0 and 1 (exclusive), got {prune_ratio}")
    refuse_overwrite(run.weights(), force)
    if force:  # no variant of an earlier run may reach this run's report
        for path in run.derived():
            path.unlink()
    train(recipe, run.root, epochs=epochs, seed=seed, force=force, show_progress=show_progress, dataset_options=dataset_options)
    step("export to ONNX", show_progress)
    fp32_models = [Path(export_run(run.root, force=True)["model"])]
    if prune_ratio is not None:
        from edgecnn.train.prune import prune_run

        step(f"prune {prune_ratio:.0%} of the channels and fine-tune", show_progress)
        pruned = prune_run(run.root, ratio=prune_ratio, runs=20, force=True, show_progress=show_progress, max_drop=max_drop, timing_slot=timing_slot)
        if pruned["kept"]:  # beyond the budget it is reported in the notes, not kept
            fp32_models.append(Path(pruned["model"]))
    models = list(fp32_models)
    for fp32 in fp32_models:
        step(f"quantize {fp32.name}", show_progress)
        if auto_quant:
            from edgecnn.quantize.search import auto_quantize

            decision = auto_quantize(fp32, run.root, max_drop=max_drop, target=target, batches=list(batches), runs=runs, force=True, show_progress=show_progress, timing_slot=timing_slot)
            kept = Path(decision["kept"])
            if kept != fp32:
                models.append(kept)
        else:
            models.append(quantize_model(fp32, calib=run.root, out=int8_sibling(fp32), force=True).model)
    step(f"evaluate and time {len(models)} models", show_progress)
    test, source = resolve_split(run.root, fp32_models[0], "test")  # loaded once for every variant
    photos = photo_check_views(run, fp32_models[0])
    for model in models:
        result = evaluate_samples(Session(model, threads=None), test.x, test.y, source)
        reference = fp32_source(model)
        if photos is not None and reference != model and reference.is_file():
            result["agreement"] = compare_models(model, reference, *photos)
        record_eval(run, result)
    with timing_slot():
        bench(models, target=target, batches=list(batches), runs=runs)
    return build_report(run.root, provider=resolve_target(target).provider)


def photo_check_views(run: Run, fp32: Path) -> tuple[Any, str] | None:
    """The photo set's check views, prepared as the model card says, for a run whose recipe calibrates
    int8 on the photo set (its int8 is then compared with fp32 on photos it never saw); None for the others."""
    if read_json(run.recipe_json).get("dataset_options", {}).get("calibration") != "photos":
        return None
    from edgecnn.data.photos import photo_set

    views = photo_set(read_card(load_onnx(fp32)).preprocess.to_dict())
    return views.check.x, f"{views.source} (check views)"


def fp32_source(model: Path) -> Path:
    """The fp32 model a variant was made from: model.int8.onnx → model.fp32.onnx, model.pruned.int8.onnx → model.pruned.fp32.onnx."""
    variant = variant_name(model)
    return Run(model.parent).model(variant.removesuffix("int8") + "fp32") if variant.endswith("int8") else model
