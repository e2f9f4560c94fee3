"""Layers of an int8 QDQ model ranked by the signal-to-quantization-noise they lose against fp32.

The search leaves the worst in float first; `edgecnn quantize-layers` shows the ranking.
"""

from __future__ import annotations

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

from edgecnn.data import resolve_split
from edgecnn.errors import EdgecnnError
from edgecnn.graph.s2dstem import find_s2d_stem
from edgecnn.quantize.model import ArrayReader, prepare
from edgecnn.quantize.passes import rewrite_float
from edgecnn.run import fp32_sibling
from edgecnn.runtime.card import read_card
from edgecnn.runtime.session import Session, load_onnx

INPUT_SQNR_DB = 100.0  # the model input is exact: treat it as a very clean signal


def layer_errors(fp32_prepared: Path, qdq_model: Path, x: np.ndarray) -> list[dict[str, Any]]:
    """Per layer: how many dB of signal-to-quantization-noise it loses against fp32, worst first.

    A layer's loss is the cross-model SQNR of its input minus that of its output, so error
    inherited from earlier layers is not blamed on it. Nodes whose output has no quantized
    counterpart (a conv fused with its ReLU) count with the layer that follows them.
    """
    model = load_onnx(qdq_model)
    record = read_card(model).quantization
    if record is None or record.format != "qdq" or record.dynamic or not any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        raise EdgecnnError(f"{qdq_model} is not a static QDQ-format int8 model made by edgecnn; the layer ranking needs one")
    float_model = onnx.load(str(fp32_prepared))
    input_name = float_model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="edgecnn-debug-") as tmp:
        if record.passes:  # the fp32 reference in the int8 model's layout
            rewrite_float(float_model, record.passes, list(record.excluded_nodes))
            fp32_prepared = Path(tmp) / "float-nhwc.onnx"
            onnx.save(float_model, str(fp32_prepared))
        aug_float, aug_qdq = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        modify_model_output_intermediate_tensors(str(fp32_prepared), str(aug_float))
        modify_model_output_intermediate_tensors(str(qdq_model), str(aug_qdq))
        float_acts = collect_activations(str(aug_float), ArrayReader(input_name, x))
        qdq_acts = collect_activations(str(aug_qdq), ArrayReader(input_name, x))
        weight_err = compute_weight_error(create_weight_matching(str(fp32_prepared), str(qdq_model)))
    matching = create_activation_matching(qdq_acts, float_acts)
    stem_out = find_s2d_stem(float_model).output if "s2d-stem" in record.passes else None
    if stem_out and stem_out + DEQUANT_OUTPUT_SUFFIX in qdq_acts:  # the int8 stem's output: no float tensor before its quantize
        values = qdq_acts[stem_out + DEQUANT_OUTPUT_SUFFIX]
        matching[stem_out] = {"pre_qdq": values, "post_qdq": values, "float": float_acts[stem_out]}
    for output in (o.name for o in model.graph.output if o.name in qdq_acts and o.name in float_acts):  # outputs stay float
        matching.setdefault(output, {"pre_qdq": qdq_acts[output], "post_qdq": qdq_acts[output], "float": float_acts[output]})
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


def rank_layers(int8_model: Path, fp32_model: Path | None = None, data: Path | None = None, samples: int = 64) -> dict[str, Any]:
    """The per-layer quantization error ranking of an int8 QDQ model against its fp32 source."""
    int8_model = Path(int8_model)
    fp32_model = Path(fp32_model) if fp32_model else fp32_sibling(int8_model)
    if fp32_model == int8_model or not fp32_model.is_file():
        raise EdgecnnError(f"fp32 model for {int8_model.name} not found at {fp32_model}; pass --fp32 PATH")
    split, source = resolve_split(data, int8_model, "val")
    x = split.x[:samples]
    Session(int8_model).check_input(x)
    with tempfile.TemporaryDirectory(prefix="edgecnn-debug-") as tmp:
        prepared = prepare(fp32_model, Path(tmp) / "prepared.onnx")
        rows = layer_errors(prepared, int8_model, x)
    return {"model": str(int8_model), "fp32": str(fp32_model), "data": source, "samples": len(x), "layers": rows}
