"""Input rows and columns no output depends on, cropped away at export.

An unpadded conv or a floor-mode pool whose windows do not reach its input's last rows leaves them
unread, and then so is everything that feeds only them. convnet (28 → conv 26 → pool 13 → conv 11
→ pool 5) never reads its input's last two rows and columns: cropped to 26×26, every layer
computes only what a later one reads (its second conv 10×10 outputs instead of 11×11).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecnn.graph.nodes import INPUT_CROP, attribute, tensor_consumers

# per-position ops: each output position reads its own input position only
_POINTWISE = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "BatchNormalization"}


def _window(node: onnx.NodeProto, rank: int) -> tuple[list[int], list[int]] | None:
    """The (dilated) kernel and strides of an unpadded conv or floor-mode pool; None for anything else."""
    if node.op_type not in ("Conv", "MaxPool", "AveragePool") or len(node.output) != 1:
        return None
    if attribute(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID") or any(attribute(node, "pads", [])) or attribute(node, "ceil_mode", 0):
        return None
    kernel = attribute(node, "kernel_shape", [])
    if len(kernel) != rank:  # a conv without kernel_shape takes it from its weight; not worth guessing
        return None
    dilations = attribute(node, "dilations", [1] * rank)
    return [(k - 1) * d + 1 for k, d in zip(kernel, dilations)], attribute(node, "strides", [1] * rank)


def read_extent(model: onnx.ModelProto) -> list[int] | None:
    """The leading rows (and columns) of the input that the first chain of convs and pools reads,
    where that is less than the whole input; None where every position is read or the model's
    start is not such a chain."""
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    spatial = dims[2:]
    if len(spatial) not in (1, 2) or 0 in spatial:
        return None
    consumers = tensor_consumers(model)
    windows = []
    tensor = model.graph.input[0].name
    while len(readers := consumers.get(tensor, [])) == 1 and len(readers[0].output) == 1:
        node = readers[0]
        if node.op_type not in _POINTWISE:
            window = _window(node, len(spatial))
            if window is None:
                break
            windows.append(window)
        tensor = node.output[0]
    sizes = [spatial]
    for kernel, strides in windows:
        sizes.append([(n - k) // s + 1 for n, k, s in zip(sizes[-1], kernel, strides)])
    if min(sizes[-1]) < 1:
        return None
    needed = sizes[-1]
    for kernel, strides in reversed(windows):
        needed = [(n - 1) * s + k for n, k, s in zip(needed, kernel, strides)]
    return needed if needed != spatial else None


def crop_unread_input(model: onnx.ModelProto) -> list[int] | None:
    """Slice the input to what the model reads, before its first layer; returns the kept extent.

    The model's input shape is unchanged, so callers feed it as before; its output is the same
    to the bit, since only positions no output depends on are dropped.
    """
    extent = read_extent(model)
    if extent is None:
        return None
    source = model.graph.input[0].name
    axes = list(range(2, 2 + len(extent)))
    inits = {
        f"{INPUT_CROP}_starts": np.zeros(len(extent), np.int64),
        f"{INPUT_CROP}_ends": np.array(extent, np.int64),
        f"{INPUT_CROP}_axes": np.array(axes, np.int64),
    }
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    for node in model.graph.node:
        node.input[:] = [f"{INPUT_CROP}_output" if i == source else i for i in node.input]
    crop = helper.make_node("Slice", [source, *inits], [f"{INPUT_CROP}_output"], name=INPUT_CROP)
    nodes = [crop, *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.value_info[:]  # inner shapes shrink; onnxruntime infers them again
    return extent

