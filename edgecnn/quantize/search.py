"""Accuracy-budgeted int8: try the configurations the graph passes allow, rank layers by
quantization error, leave the worst in float until the budget holds, keep the fastest model that
beats fp32.

Accuracy is measured on the held-out validation split (never test), latency on the target
where the target loads the model (or on the device itself), all candidates interleaved with fp32 in one run.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgecnn.data import calibration_samples, resolve_splits
from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path, read_json, refuse_overwrite, write_json
from edgecnn.progress import progress_bar
from edgecnn.quantize.layers import layer_errors
from edgecnn.quantize.model import QuantConfig, prepare, quantize_prepared, recipe_method
from edgecnn.quantize.passes import PASSES, float_nodes, pass_sets, quantized_compute
from edgecnn.run import Run, decision_path, file_digest, holds_run, int8_sibling
from edgecnn.runtime.bench import bench_models
from edgecnn.runtime.card import read_card
from edgecnn.runtime.evaluate import accuracy
from edgecnn.runtime.session import Session, load_onnx
from edgecnn.runtime.targets import DEFAULT_TARGET, Target, resolve_target

MAX_FLOAT_LAYERS = 6  # past this many float layers int8 rarely pays; the search stops
SPEED_TIE = 0.02  # speed scores this close are a shared machine's noise: a clearly smaller file wins
SIZE_WIN = 0.9  # clearly smaller: at most this share of the fastest's file (a float head doubled convnet's)


def candidate_configs(prepared: onnx.ModelProto, target: Target, method: str = "minmax") -> list[QuantConfig]:
    """ORT's defaults, S8S8, and U8S8 with every combination of passes that fit the model, pay on it and
    are valid for the target, calibrated by `method`. TensorRT reads symmetric S8S8 QDQ only."""
    if target.provider == "tensorrt":
        return [QuantConfig(types="s8s8", symmetric=True, passes=names, method=method) for names in pass_sets(prepared, target)]
    return [QuantConfig(method=method), QuantConfig(types="s8s8", method=method),
            *(QuantConfig(passes=names, method=method) for names in pass_sets(prepared, target) if names)]


@dataclass
class Trial:
    """One configuration tried: its accuracy on the validation split, then its timing against fp32."""

    config: QuantConfig
    model: Path | None
    val_accuracy: float
    drop_points: float
    within_budget: bool
    size_bytes: int
    p50_ms: dict[int, float] = field(default_factory=dict)
    speedup: dict[int, float] = field(default_factory=dict)
    score: float | None = None  # geometric mean of the speedups over the batches
    chosen: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.label(),
            "settings": dataclasses.asdict(self.config),
            **{k: v for k, v in dataclasses.asdict(self).items() if k not in ("config", "model")},
        }


@holds_run(lambda model, out, **_: Run.of(Path(out) if out else int8_sibling(model)))
def auto_quantize(
    model: Path,
    calib: Path | None = None,
    max_drop: float = 0.5,
    target: str = DEFAULT_TARGET,
    batches: list[int] = (1,),
    samples: int = 256,
    runs: int = 200,
    out: Path | None = None,
    force: bool = False,
    show_progress: bool = True,
    timings: Path | None = None,
    candidates: Path | None = None,
    parity: Callable[[Path], str | None] | None = None,
    timing_slot: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> dict[str, Any]:
    """Search int8 configurations valid for `target` within `max_drop` accuracy points; keep the fastest
    that beats fp32 where the target loads it.

    Timings come from this machine, loaded as the target loads a model, or from `timings`: the JSON
    `edgecnn bench --json` wrote on the device, for the models `candidates` wrote (a folder).
    A target with an emulated CPU keeps a model only where `parity` (its verify-arm) returns no
    failure. Where fp32 is kept, nothing is written but the decision: an int8 file already at `out`
    (only possible with `force`) is left as it was, and the decision says so. The timing here runs
    inside `timing_slot()` (a sweep's: alone on its machine).
    """
    model = Path(model)
    goal = resolve_target(target)
    if max_drop < 0:
        raise EdgecnnError(f"--max-drop must be ≥ 0 accuracy points, got {max_drop}")
    if not goal.timed_here and timings is None and candidates is None:
        raise EdgecnnError(
            f"target {target} is timed on the device itself: write the candidates with --candidates DIR, run "
            f"`edgecnn bench DIR/*.onnx --batch {','.join(map(str, batches))} --json > timings.json` there, then pass --timings timings.json"
        )
    if goal.arm_cpu and parity is None and candidates is None:
        raise EdgecnnError(f"target {target} keeps a model only after verify-arm --cpu {goal.arm_cpu} proves its outputs")
    measured = read_timings(timings) if timings is not None else None
    out = Path(out) if out else int8_sibling(model)
    decision_file = decision_path(out)
    refuse_overwrite(out, force)
    refuse_overwrite(decision_file, force)
    card = read_card(load_onnx(model))
    (train_split, calib_source), (val, val_source) = resolve_splits(calib, model, "train", "val")
    x = calibration_samples(train_split, samples)
    Session(model).check_input(x)
    base_acc = accuracy(model, val.x, val.y, goal.runtime)

    with tempfile.TemporaryDirectory(prefix="edgecnn-auto-") as tmp, progress_bar(f"int8 search on {model.name}", None, show_progress) as advance:
        tmp = Path(tmp)
        prepared = prepare(model, tmp / "prepared.onnx")
        trials: list[Trial] = []

        def attempt(config: QuantConfig) -> Trial:
            path = tmp / f"trial{len(trials)}.onnx"
            quantize_prepared(prepared, path, config, card, x, calib_source, kept_for=target)
            acc = accuracy(path, val.x, val.y, goal.runtime)
            drop = 100 * (base_acc - acc)
            trials.append(Trial(config, path, acc, drop, drop <= max_drop, path.stat().st_size))
            advance(f"{config.label()}: {drop:+.2f} pt")
            return trials[-1]

        prepared_model = onnx.load(str(prepared))
        start = recipe_method(model)
        for config in candidate_configs(prepared_model, goal, start):
            attempt(config)
        ranking: list[dict[str, Any]] = []
        if not any(t.within_budget for t in trials):
            best = max(trials, key=lambda t: t.val_accuracy)
            config = best.config
            for method in ("percentile", "entropy"):  # calibration that ignores outliers, before giving up layers
                if method != start:
                    attempt(dataclasses.replace(config, method=method))
        if not any(t.within_budget for t in trials):
            if config.format == "qdq":
                ranking = layer_errors(prepared, best.model, x[:64])
            present = {n.name for n in prepared_model.graph.node}
            # a pass that rewrites a block in int8 (the s2d stem) needs its neighbours in int8: layers leave for float without it
            config = dataclasses.replace(config, passes=tuple(n for n in config.passes if not PASSES[n].replaced_nodes(prepared_model)))
            by_passes = set(float_nodes(prepared_model, config.passes))
            layers = 0
            for row in ranking:
                in_float = by_passes | set(config.exclude)
                newly = [n for n in row["nodes"] if n in present and n not in in_float]
                if not newly:  # already float (a float stem's block): its error is where int8 begins
                    continue
                if not quantized_compute(prepared_model, in_float | set(newly)):
                    break  # no conv or dense layer left in int8: that is fp32 with quantize overhead
                config = dataclasses.replace(config, exclude=(*config.exclude, *newly))
                layers += 1
                if attempt(config).within_budget or layers == MAX_FLOAT_LAYERS:
                    break

        fine = [t for t in trials if t.within_budget]
        if candidates is not None:
            return write_candidates(model, fine, candidates, force)
        advance(f"timing {len(fine)} configurations against fp32")
        if measured is not None:
            timing = timed_elsewhere(measured, model, fine, list(batches))
        elif fine:
            with timing_slot():
                timing = bench_models([model, *(t.model for t in fine)], provider=goal.provider, batches=list(batches), runs=runs,
                                      card_options=goal.card_options, runtime=goal.runtime)
        else:
            timing = None
        for r in timing["results"] if timing else []:
            trial = next((t for t in fine if t.model == Path(r["model"])), None)
            if trial is not None:
                trial.p50_ms[r["batch"]] = r["p50_ms"]
                trial.speedup[r["batch"]] = r["speedup"]
        for t in fine:
            t.score = float(np.exp(np.mean(np.log(list(t.speedup.values())))))
        chosen, refused = choose(fine), {}
        while chosen is not None and goal.arm_cpu:
            failure = parity(chosen.model)
            if failure is None:
                break
            refused[chosen.config.label()] = failure
            fine.remove(chosen)
            chosen = choose(fine)
        if chosen:
            chosen.chosen = True
            with atomic_path(out, force=True) as kept:
                shutil.copyfile(chosen.model, kept)

    decision = {
        "model": str(model),
        "kept": str(out) if chosen else str(model),
        "kept_variant": chosen.config.label() if chosen else "fp32",
        "kept_passes": list(chosen.config.passes) if chosen else [],
        "reason": _reason(chosen, fine, max_drop),
        "left_alone": str(out) if not chosen and out.exists() else None,
        "max_drop_points": max_drop,
        "fp32_val_accuracy": base_acc,
        "validation": val_source,
        "calibration": calib_source,
        "target": target,
        "provider": goal.provider,
        "timed": "on the device (" + str(timings) + ")" if timings is not None else goal.loaded_as(),
        "parity_failures": refused,
        "batches": list(batches),
        "fp32_p50_ms": {r["batch"]: r["p50_ms"] for r in timing["results"] if Path(r["model"]) == model} if timing else None,
        "machine": timing["machine"] if timing else None,
        "trials": [t.to_dict() for t in trials],
        "layer_ranking": ranking,
    }
    write_json(decision_file, decision, force=True)
    return decision


def _beats_fp32(timed: list[Trial]) -> list[Trial]:
    return [t for t in timed if min(t.speedup.values()) > 1.0]


def choose(timed: list[Trial]) -> Trial | None:
    """Of the timed trials that beat fp32 at every batch, the fastest, unless one within SPEED_TIE of
    its score has a clearly smaller file (SIZE_WIN); None where none beats fp32."""
    faster = _beats_fp32(timed)
    if not faster:
        return None
    fastest = max(faster, key=lambda t: t.score)
    smallest = min((t for t in faster if t.score >= (1 - SPEED_TIE) * fastest.score), key=lambda t: (t.size_bytes, -t.score))
    return smallest if smallest.size_bytes <= SIZE_WIN * fastest.size_bytes else fastest


def _reason(chosen: Trial | None, fine: list[Trial], max_drop: float) -> str:
    if chosen:
        speedups = ", ".join(f"{s:.2f}× at b{b}" for b, s in chosen.speedup.items())
        fastest = chosen.score == max(t.score for t in _beats_fp32(fine))  # a trial slower at some batch is out of the race
        which = "the fastest int8" if fastest else f"a clearly smaller int8 within {SPEED_TIE:.0%} of the fastest and"
        return f"{chosen.config.label()} is {which} within {max_drop} points: {speedups} vs fp32"
    if fine:
        return "no int8 configuration within budget beats fp32 at every batch on this target; fp32 kept"
    return f"no int8 configuration stays within {max_drop} accuracy points; fp32 kept"


def write_candidates(model: Path, fine: list[Trial], folder: Path, force: bool) -> dict[str, Any]:
    """The fp32 model and every candidate within budget in `folder`, named by their configs, for
    timing on the device; the search then reads that timing back by each file's SHA-256."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not force:
        raise EdgecnnError(f"{folder} is not empty; pass --force to write the candidates there")
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / f"{model.stem}.onnx"]
    shutil.copyfile(model, written[0])
    for t in fine:
        written.append(folder / f"candidate.{t.config.label().replace('/', '-')}.onnx")
        shutil.copyfile(t.model, written[-1])
    return {"model": str(model), "candidates": [str(p) for p in written], "within_budget": len(fine)}


def read_timings(path: Path) -> dict[tuple[str, int], float]:
    """p50 latency by (model SHA-256, batch) from the JSON `edgecnn bench --json` writes."""
    data = read_json(path)
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) and {"model_sha256", "batch", "p50_ms"} <= r.keys() for r in results):
        raise EdgecnnError(f"{path} is not the JSON `edgecnn bench --json` writes (results with model_sha256, batch and p50_ms)")
    return {(r["model_sha256"], int(r["batch"])): float(r["p50_ms"]) for r in results}


def timed_elsewhere(measured: dict[tuple[str, int], float], model: Path, fine: list[Trial], batches: list[int]) -> dict[str, Any] | None:
    """bench_models' result shape from timings measured on the device; one line naming what they lack."""
    results, missing = [], []
    for path in [model, *(t.model for t in fine)]:
        digest = file_digest(path)
        for batch in batches:
            if (digest, batch) not in measured:
                missing.append(f"{path.name if path == model else next(t.config.label() for t in fine if t.model == path)} at batch {batch}")
            else:
                results.append({"model": str(path), "batch": batch, "p50_ms": measured[(digest, batch)]})
    if missing:
        raise EdgecnnError(f"the timings lack {len(missing)} measurement(s), e.g. {', '.join(missing[:3])}; time the files --candidates wrote, at these batches")
    base = {r["batch"]: r["p50_ms"] for r in results if Path(r["model"]) == model}
    for r in results:
        r["speedup"] = base[r["batch"]] / r["p50_ms"]
    return {"machine": {"timed": "on the device"}, "results": results} if fine else None
