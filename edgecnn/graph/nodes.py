"""Reading an ONNX graph: node attributes, who reads a tensor, inferred shapes, the model's first layer."""

from __future__ import annotations

from typing import Any

import onnx
from onnx import helper

INPUT_CROP = "input_crop"  # the Slice node export puts after the input where rows go unread (crop.py)


def attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
    """A node's attribute value (ints as a list, a string decoded), or `default` where it is not set."""
    found = next((a for a in node.attribute if a.name == name), None)
    if found is None:
        return default
    value = helper.get_attribute_value(found)
    return value.decode() if isinstance(value, bytes) else list(value) if isinstance(value, (list, tuple)) else value


def tensor_consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name → the nodes that read it."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def tensor_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Tensor name → its inferred shape (0 for a dimension not known statically)."""
    inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred}


def input_crop(model: onnx.ModelProto) -> onnx.NodeProto | None:
    """The Slice export puts after the model's input to drop rows no output reads, if there is one."""
    source = model.graph.input[0].name
    return next((n for n in model.graph.node if n.name == INPUT_CROP and n.op_type == "Slice" and n.input[0] == source), None)


def first_layer_input(model: onnx.ModelProto) -> str:
    """The tensor the first layer reads: the model's input, or its crop."""
    crop = input_crop(model)
    return crop.output[0] if crop is not None else model.graph.input[0].name


def input_conv(model: onnx.ModelProto) -> tuple[onnx.NodeProto, onnx.TensorProto] | None:
    """The ungrouped conv reading the model's 4-D input (directly or through the input crop), with
    its weight, if there is one."""
    source = first_layer_input(model)
    weights = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        group = attribute(node, "group", 1)
        weight = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if weight is not None and node.input[0] == source and group == 1 and len(weight.dims) == 4:
            return node, weight
    return None


def input_channels(model: onnx.ModelProto) -> int:
    """The input channels the first conv reads, or 0 without one."""
    found = input_conv(model)
    return found[1].dims[1] if found else 0
