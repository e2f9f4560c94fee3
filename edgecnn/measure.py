"""eval and bench as steps of a run: measure models, and record each result in the run they belong to.

A result measured on a run's own test split (eval) or on models of one run (bench) is written
into that run, so `report` finds it; each records the SHA-256 of the model it measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.data import resolve_split
from edgecnn.files import write_json
from edgecnn.run import Run
from edgecnn.runtime.bench import bench_models
from edgecnn.runtime.evaluate import evaluate_samples
from edgecnn.runtime.session import Session
from edgecnn.runtime.targets import DEFAULT_TARGET, resolve_target


def evaluate_model(
    model: Path,
    data: Path | None = None,
    split: str = "test",
    provider: str = "cpu",
    threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate an ONNX classifier on labelled data; recorded in its run when it measured the run's test split."""
    session = Session(model, provider=provider, threads=threads)
    samples, source = resolve_split(data, model, split)
    result = evaluate_samples(session, samples.x, samples.y, source)
    run = Run.of(model)
    if run is not None and split == "test" and (data is None or Path(data).resolve() == run.root.resolve()):
        result["recorded"] = str(record_eval(run, result))
    return result


def record_eval(run: Run, result: dict[str, Any]) -> Path:
    """Write an eval result into its run (replacing the variant's earlier one)."""
    with run.writing():
        return write_json(run.eval_json(result["variant"]), result, force=True)


def bench(models: list[Path], target: str = DEFAULT_TARGET, provider: str | None = None, **settings: Any) -> dict[str, Any]:
    """Time models interleaved (runtime.bench.bench_models) as `target` loads them, in its runtime and on
    its provider unless another is given; recorded in their run when they share one."""
    goal = resolve_target(target)
    provider = provider or goal.provider
    result = {"target": goal.name, **bench_models(models, provider=provider, card_options=goal.card_options, runtime=goal.runtime, **settings)}
    runs = {Run.of(m) for m in models}
    if len(runs) == 1 and None not in runs:
        run = runs.pop()
        with run.writing():
            result["recorded"] = str(write_json(run.bench_json(provider), result, force=True))
    return result
