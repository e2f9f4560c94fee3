"""Accuracy-budgeted int8: try the sensible configurations, rank layers by quantization error,
leave the worst in float until the budget holds, keep the fastest model that beats fp32.

Accuracy is measured on the held-out validation split (never test), latency on the target
provider and batch, all candidates interleaved with fp32 in one run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization.qdq_loss_debug import (
    DEQUANT_OUTPUT_SUFFIX,
    collect_activations,
    compute_activation_error,
    compute_weight_error,
    create_activation_matching,
    create_weight_matching,
    modify_model_output_intermediate_tensors,
)

from edgecnn.bench import bench_models
from edgecnn.data import calibration_samples, resolve_split, resolve_splits
from edgecnn.errors import EdgecnnError
from edgecnn.evaluate import accuracy
from edgecnn.files import atomic_path, refuse_overwrite, write_json
from edgecnn.layout import apply_layouts, input_channels
from edgecnn.quantize import ArrayReader, QuantConfig, config_float_nodes, head_nodes, int8_path, prepare, quantize_prepared, stem_nodes
from edgecnn.runtime import META_QUANTIZATION, Session, load_onnx, read_metadata
from edgecnn.s2dstem import find_s2d_stem

MAX_FLOAT_LAYERS = 6  # past this many float layers int8 rarely pays; the search stops
FLOAT_HEAD_MAX_BYTES = 1 << 20  # fp32 dense weights a core's cache holds: int8 saves them no memory traffic
SPEED_TIE = 0.02  # speed scores this close are a shared machine's noise: the smaller file is kept


def decision_path_for(out: Path) -> Path:
    """model.int8.onnx → quantize-decision.json; model.pruned.int8.onnx → quantize-decision.pruned.json."""
    stem = out.name.removesuffix(".onnx").removesuffix(".int8")
    if stem == "model" or stem.startswith("model."):
        return out.with_name(f"quantize-decision{stem.removeprefix('model')}.json")
    return out.with_name(f"{stem}.quantize-decision.json")


def candidate_configs(prepared: onnx.ModelProto) -> list[QuantConfig]:
    """ORT's defaults, S8S8, for a thin-input first conv the float-stem variants, for a conv → pool
    stem the int8 space-to-depth stem, for a 2- or 3-channel input (RGB) its channels padded to 4
    (a 1-channel input padded runs slower than fp32), and where the dense head's fp32 weights fit
    a core's cache, each U8S8 candidate again with that head in float."""
    configs = [QuantConfig(), QuantConfig(types="s8s8")]
    if stem_nodes(prepared):
        configs += [QuantConfig(float_stem=True), QuantConfig(float_stem=True, keep_float_pool=True)]
    with contextlib.suppress(EdgecnnError):  # only where the first conv block fits the rewrite
        find_s2d_stem(prepared)
        configs.append(QuantConfig(s2d_stem=True))
    channels = input_channels(prepared)
    if channels > 1 and channels % 4:
        configs.append(QuantConfig(pad_input=True))
    if 0 < head_weight_bytes(prepared) <= FLOAT_HEAD_MAX_BYTES:
        fast = [c for c in configs if c.types == "u8s8" and c.keep_float_pool == c.float_stem]  # not the float stem without its hand-over
        configs += [dataclasses.replace(c, float_head=True) for c in fast]
    return configs


def head_weight_bytes(model: onnx.ModelProto) -> int:
    """The fp32 bytes of the dense head's weights (head_nodes)."""
    head = set(head_nodes(model))
    weights = {i.name: i.dims for i in model.graph.initializer}
    return 4 * sum(int(np.prod(weights.get(n.input[1], [0]))) for n in model.graph.node if n.name in head)


INPUT_SQNR_DB = 100.0  # the model input is exact: treat it as a very clean signal


def layer_errors(fp32_prepared: Path, qdq_model: Path, x: np.ndarray) -> list[dict[str, Any]]:
    """Per layer: how many dB of signal-to-quantization-noise it loses against fp32, worst first.

    A layer's loss is the cross-model SQNR of its input minus that of its output, so error
    inherited from earlier layers is not blamed on it. Nodes whose output has no quantized
    counterpart (a conv fused with its ReLU) count with the layer that follows them.
    """
    model = load_onnx(qdq_model)
    record = json.loads(read_metadata(model).get(META_QUANTIZATION, "{}"))
    if not any(n.op_type == "QuantizeLinear" for n in model.graph.node) or record.get("format") == "qoperator":
        raise EdgecnnError(f"{qdq_model} is not a QDQ-format int8 model; layer errors need one (quantize --format qdq)")
    float_model = onnx.load(str(fp32_prepared))
    input_name = float_model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="edgecnn-debug-") as tmp:
        nhwc = record.get("keep_float_pool") or record.get("s2d_stem")
        if nhwc or record.get("pad_input"):  # the fp32 reference in the int8 model's layout
            apply_layouts(float_model, record["excluded_nodes"], nhwc=nhwc, pad_input=record.get("pad_input"))
            fp32_prepared = Path(tmp) / "float-nhwc.onnx"
            onnx.save(float_model, str(fp32_prepared))
        aug_float, aug_qdq = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        modify_model_output_intermediate_tensors(str(fp32_prepared), str(aug_float))
        modify_model_output_intermediate_tensors(str(qdq_model), str(aug_qdq))
        float_acts = collect_activations(str(aug_float), ArrayReader(input_name, x))
        qdq_acts = collect_activations(str(aug_qdq), ArrayReader(input_name, x))
        weight_err = compute_weight_error(create_weight_matching(str(fp32_prepared), str(qdq_model)))
    matching = create_activation_matching(qdq_acts, float_acts)
    stem_out = find_s2d_stem(float_model).output if record.get("s2d_stem") else None
    if stem_out and stem_out + DEQUANT_OUTPUT_SUFFIX in qdq_acts:  # the int8 stem's output: no float tensor before its quantize
        values = qdq_acts[stem_out + DEQUANT_OUTPUT_SUFFIX]
        matching[stem_out] = {"pre_qdq": values, "post_qdq": values, "float": float_acts[stem_out]}
    both = {name: match for name, match in matching.items() if "float" in match}  # tensors only the int8 model has
    cross = {name: err["xmodel_err"] for name, err in compute_activation_error(both).items() if "xmodel_err" in err}
    producer = {out: node for node in float_model.graph.node for out in node.output}
    rows = []
    for node in float_model.graph.node:
        if not node.output or node.output[0] not in cross:
            continue
        block, tensor = [node], node.input[0]
        while tensor not in cross and tensor in producer:
            block.append(producer[tensor])
            tensor = producer[tensor].input[0]
        sqnr_in = cross.get(tensor, INPUT_SQNR_DB)
        weights = [weight_err[i] for n in block for i in n.input if i in weight_err]
        rows.append(
            {
                "node": node.name,
                "op": "+".join(n.op_type for n in reversed(block)),
                "nodes": [n.name for n in reversed(block)],
                "loss_db": sqnr_in - cross[node.output[0]],
                "output_sqnr_db": cross[node.output[0]],
                "weight_sqnr_db": min(weights) if weights else None,
            }
        )
    return sorted(rows, key=lambda r: -r["loss_db"])


def _trial(config: QuantConfig, path: Path, acc: float, base_acc: float, max_drop: float) -> dict[str, Any]:
    drop = 100 * (base_acc - acc)
    return {
        "config": config.label(),
        "settings": dataclasses.asdict(config),
        "model": path,
        "val_accuracy": acc,
        "drop_points": drop,
        "within_budget": drop <= max_drop,
        "size_bytes": path.stat().st_size,
    }


def auto_quantize(
    model: Path,
    calib: Path | None = None,
    max_drop: float = 0.5,
    provider: str = "cpu",
    batches: list[int] = (1,),
    samples: int = 256,
    runs: int = 200,
    out: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Search int8 configurations within `max_drop` accuracy points; keep the fastest that beats fp32."""
    model = Path(model)
    if max_drop < 0:
        raise EdgecnnError(f"--max-drop must be ≥ 0 accuracy points, got {max_drop}")
    out = Path(out) if out else int8_path(model)
    decision_path = decision_path_for(out)
    refuse_overwrite(out, force)
    refuse_overwrite(decision_path, force)
    props = read_metadata(load_onnx(model))
    (train_split, calib_source), (val, val_source) = resolve_splits(calib, model, "train", "val")
    x = calibration_samples(train_split, samples)
    Session(model).check_input(x)
    base_acc = accuracy(model, val)

    with tempfile.TemporaryDirectory(prefix="edgecnn-auto-") as tmp:
        tmp = Path(tmp)
        prepared = prepare(model, tmp / "prepared.onnx")
        trials: list[dict[str, Any]] = []

        def attempt(config: QuantConfig) -> dict[str, Any]:
            path = tmp / f"trial{len(trials)}.onnx"
            quantize_prepared(prepared, path, config, props, x, calib_source)
            trials.append(_trial(config, path, accuracy(path, val), base_acc, max_drop))
            return trials[-1]

        prepared_model = onnx.load(str(prepared))
        for config in candidate_configs(prepared_model):
            attempt(config)
        ranking: list[dict[str, Any]] = []
        if not any(t["within_budget"] for t in trials):
            best = max(trials, key=lambda t: t["val_accuracy"])
            config = QuantConfig(**{**best["settings"], "exclude": tuple(best["settings"]["exclude"])})
            for method in ("percentile", "entropy"):  # calibration that ignores outliers, before giving up layers
                attempt(dataclasses.replace(config, method=method))
        if not any(t["within_budget"] for t in trials):
            if config.format == "qdq":
                ranking = layer_errors(prepared, best["model"], x[:64])
            present = {n.name for n in prepared_model.graph.node}
            by_config = set(config_float_nodes(prepared_model, config))
            s2d = set(find_s2d_stem(prepared_model).nodes if config.s2d_stem else ())
            layers = 0
            for row in ranking:
                in_float = by_config | set(config.exclude)
                newly = [n for n in row["nodes"] if n in present and n not in in_float]
                if not newly or s2d & set(newly):  # already float (a float stem's block): its error is where int8
                    continue  # begins; the int8 stem's float twin is a candidate of its own, tried already
                config = dataclasses.replace(config, exclude=(*config.exclude, *newly))
                layers += 1
                if attempt(config)["within_budget"] or layers == MAX_FLOAT_LAYERS:
                    break

        fine = [t for t in trials if t["within_budget"]]
        timing = bench_models([model, *(t["model"] for t in fine)], provider=provider, batches=list(batches), runs=runs) if fine else None
        for r in timing["results"] if timing else []:
            trial = next((t for t in fine if t["model"] == Path(r["model"])), None)
            if trial is not None:
                trial.setdefault("p50_ms", {})[r["batch"]] = r["p50_ms"]
                trial.setdefault("speedup", {})[r["batch"]] = r["speedup"]
        for t in fine:
            t["score"] = float(np.exp(np.mean(np.log(list(t["speedup"].values())))))  # geometric mean over batches
        chosen = choose(fine)
        if chosen:
            with atomic_path(out, force=True) as target:
                shutil.copyfile(chosen["model"], target)
        else:
            out.unlink(missing_ok=True)  # (only reached with --force) an older int8 file would contradict the decision
        for t in trials:
            t["model"] = None
            t["chosen"] = t is chosen

    decision = {
        "model": str(model),
        "kept": str(out) if chosen else str(model),
        "kept_variant": chosen["config"] if chosen else "fp32",
        "reason": _reason(chosen, fine, max_drop),
        "max_drop_points": max_drop,
        "fp32_val_accuracy": base_acc,
        "validation": val_source,
        "calibration": calib_source,
        "provider": provider,
        "batches": list(batches),
        "fp32_p50_ms": {r["batch"]: r["p50_ms"] for r in timing["results"] if r["model"] == str(model)} if timing else None,
        "machine": timing["machine"] if timing else None,
        "trials": trials,
        "layer_ranking": ranking,
    }
    write_json(decision_path, decision, force=True)
    return decision


def _beats_fp32(timed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in timed if min(t["speedup"].values()) > 1.0]


def choose(timed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Of the timed trials that beat fp32 at every batch, the smallest file among those within
    SPEED_TIE of the best score; None where none beats fp32."""
    faster = _beats_fp32(timed)
    if not faster:
        return None
    fastest = max(t["score"] for t in faster)
    return min((t for t in faster if t["score"] >= (1 - SPEED_TIE) * fastest), key=lambda t: (t["size_bytes"], -t["score"]))


def _reason(chosen: dict[str, Any] | None, fine: list[dict[str, Any]], max_drop: float) -> str:
    if chosen:
        speedups = ", ".join(f"{s:.2f}× at b{b}" for b, s in chosen["speedup"].items())
        fastest = chosen["score"] == max(t["score"] for t in _beats_fp32(fine))  # a trial slower at some batch is out of the race
        which = "the fastest int8" if fastest else f"the smallest int8 within {SPEED_TIE:.0%} of the fastest and"
        return f"{chosen['config']} is {which} within {max_drop} points: {speedups} vs fp32"
    if fine:
        return "no int8 configuration within budget beats fp32 at every batch on this provider; fp32 kept"
    return f"no int8 configuration stays within {max_drop} accuracy points; fp32 kept"


def debug_layers(int8_model: Path, fp32_model: Path | None = None, data: Path | None = None, samples: int = 64) -> dict[str, Any]:
    """The per-layer quantization error ranking of an int8 QDQ model against its fp32 source."""
    int8_model = Path(int8_model)
    fp32_model = Path(fp32_model) if fp32_model else int8_model.with_name(int8_model.name.replace(".int8", ".fp32"))
    if fp32_model == int8_model or not fp32_model.is_file():
        raise EdgecnnError(f"fp32 model for {int8_model.name} not found at {fp32_model}; pass --fp32 PATH")
    split, source = resolve_split(data, int8_model, "val")
    x = split.x[:samples]
    Session(int8_model).check_input(x)
    with tempfile.TemporaryDirectory(prefix="edgecnn-debug-") as tmp:
        prepared = prepare(fp32_model, Path(tmp) / "prepared.onnx")
        rows = layer_errors(prepared, int8_model, x)
    return {"model": str(int8_model), "fp32": str(fp32_model), "data": source, "samples": len(x), "layers": rows}
