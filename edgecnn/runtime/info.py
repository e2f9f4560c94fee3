"""What `edgecnn info` shows of a model: its tensors, opsets, operators, size, counts and card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from edgecnn.graph.count import count_macs, count_params, non_finite_weights
from edgecnn.runtime.card import read_card
from edgecnn.runtime.providers import ProviderOptions
from edgecnn.runtime.session import Session, load_onnx


def describe_model(path: Path) -> dict[str, Any]:
    """Inputs, outputs, opset, operator counts, parameter count, size and metadata of an ONNX file."""
    model = load_onnx(path)
    card = read_card(model)  # an unknown or malformed edgecnn key is refused here, as eval and camera refuse it
    initializers = {i.name for i in model.graph.initializer}

    def tensors(values) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
                "type": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower(),
                "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            }
            for v in values
            if v.name not in initializers
        ]

    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {
        "model": str(path),
        "size_bytes": Path(path).stat().st_size,
        "opset": {  # the domains the graph uses; quantization tools declare many more
            (o.domain or "ai.onnx"): o.version
            for o in model.opset_import
            if (o.domain or "ai.onnx") in {"ai.onnx", *(n.domain for n in model.graph.node if n.domain)}
        },
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": tensors(model.graph.input),
        "outputs": tensors(model.graph.output),
        "params": count_params(model),
        "macs": count_macs(model),
        "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
        "metadata": {p.key: p.value for p in model.metadata_props},
        "non_finite_weights": non_finite_weights(model),
        "targets": list(card.quantization.targets) if card.quantization else [],
        "kept_for": card.quantization.kept_for if card.quantization else None,
        "session_needs": list(card.session_options.disabled_optimizers),
    }


def placement(path: Path, provider: str, options: ProviderOptions = ProviderOptions()) -> dict[str, Any]:
    """Where `provider`'s chain runs each node of the model: node counts per execution provider, and
    the nodes that fell back to the CPU."""
    session = Session(path, provider=provider, options=options)
    return {"provider": provider, "nodes": session.placement(), "fallen_back": session.fallen_back()}
