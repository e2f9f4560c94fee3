"""Graph rewrites that let ONNX Runtime's int8 kernels pay on a CNN, each leaving the numbers as they are.

ORT runs int8 convs in NHWC and fp32 convs in its blocked NCHWc layout; its symmetric int8 conv
kernel wants input channels in multiples of 4. These rewrites meet both where a float stem hands
over to int8, where a dense layer reads conv features, and where an RGB input meets the first conv.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecnn.graph.nodes import attribute, first_layer_input, input_channels, input_conv, tensor_consumers, tensor_shapes

INPUT_PAD = "input_channel_pad"  # the Pad node pad_input_channels adds


def nhwc_handover(model: onnx.ModelProto, float_nodes: list[str]) -> list[str]:
    """After the float stem, where quantized nodes take over: a transpose to NHWC and back, a no-op
    reshape between them. Returns the float nodes added (the first transpose, the reshape).

    The reshape keeps ONNX Runtime from cancelling the pair. It then folds the first transpose
    into the reorder out of its blocked fp32 layout and cancels the second against the one it
    puts before its NHWC int8 convs: the hand-over to int8 skips a reorder to NCHW and a transpose.
    """
    in_float = set(float_nodes)
    consumers = tensor_consumers(model)
    source = first_layer_input(model)
    ends = []
    for node in model.graph.node:  # the stem: a float block reading the model's input, to its last float node
        if node.name in in_float and node.op_type == "Conv" and node.input[0] == source:
            while len(nxt := consumers.get(node.output[0], [])) == 1 and nxt[0].name in in_float:
                node = nxt[0]
            ends.append(node)
    if not ends:  # no float stem (the int8 s2d stem, a reference model): nothing to hand over, no shape inference
        return []
    shapes = tensor_shapes(model)
    added: list[str] = []
    nodes = list(model.graph.node)
    for node in ends:
        out = node.output[0]
        quantized = [c for c in consumers.get(out, []) if c.name not in in_float]
        if not quantized or len(shapes.get(out, [])) != 4:  # images only: a Conv1d stem hands over as it is
            continue
        shape = f"{out}_hold_shape"
        model.graph.initializer.append(numpy_helper.from_array(np.zeros(4, np.int64), shape))  # 0: keep that dim
        block = [
            helper.make_node("Transpose", [out], [f"{out}_nhwc"], perm=[0, 2, 3, 1], name=f"{node.name}_to_nhwc"),
            helper.make_node("Reshape", [f"{out}_nhwc", shape], [f"{out}_hold"], name=f"{node.name}_nhwc_hold"),
            helper.make_node("Transpose", [f"{out}_hold"], [f"{out}_nchw"], perm=[0, 3, 1, 2], name=f"{node.name}_to_nchw"),
        ]
        for consumer in quantized:
            consumer.input[:] = [f"{out}_nchw" if i == out else i for i in consumer.input]
        at = nodes.index(node) + 1
        nodes[at:at] = block
        added += [block[0].name, block[1].name]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return added


def nhwc_flatten(model: onnx.ModelProto) -> int:
    """Flatten → Gemm on a 4-D tensor becomes transpose to NHWC → Flatten → Gemm with its weight
    columns permuted to match: the same numbers. Returns how many were rewritten.

    ONNX Runtime runs int8 convs in NHWC and transposes back to NCHW before a Flatten; the
    transpose added here cancels that one, so the dense layer reads the NHWC features as they are.
    """
    shapes, uses = tensor_shapes(model), tensor_consumers(model)
    weights = {i.name: i for i in model.graph.initializer}
    nodes, rewritten = list(model.graph.node), 0
    for flatten in [n for n in nodes if n.op_type == "Flatten"]:
        shape = shapes.get(flatten.input[0], [])
        axis = attribute(flatten, "axis", 1)
        gemm = uses.get(flatten.output[0], [None])
        if axis != 1 or len(shape) != 4 or 0 in shape[1:] or len(gemm) != 1 or gemm[0] is None or gemm[0].op_type != "Gemm":
            continue
        gemm = gemm[0]
        trans_b = attribute(gemm, "transB", 0)
        weight = weights.get(gemm.input[1])
        if weight is None or len(uses[weight.name]) != 1:
            continue
        _, c, h, w = shape
        order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)  # NHWC position → NCHW feature
        array = numpy_helper.to_array(weight)
        weight.CopyFrom(numpy_helper.from_array(array[:, order] if trans_b else array[order], weight.name))
        name = f"{flatten.name}_nhwc"
        nodes.insert(nodes.index(flatten), helper.make_node("Transpose", [flatten.input[0]], [name], perm=[0, 2, 3, 1], name=name))
        flatten.input[0] = name
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return rewritten


def pad_input_channels(model: onnx.ModelProto) -> bool:
    """Zero channels after the input, zero weights in the first conv, to a multiple of 4 channels.

    ORT's symmetric int8 conv kernel takes input channels in fours; an RGB stem otherwise falls
    back to a slower im2col path. Returns False where the first conv already fits (or is absent).
    """
    if input_channels(model) % 4 == 0:
        return False
    conv, weight = input_conv(model)
    array = numpy_helper.to_array(weight)
    extra = -array.shape[1] % 4
    padded = np.concatenate([array, np.zeros((array.shape[0], extra, *array.shape[2:]), array.dtype)], axis=1)
    weight.CopyFrom(numpy_helper.from_array(padded, weight.name))
    pads = f"{INPUT_PAD}_pads"
    model.graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64), pads))
    nodes = list(model.graph.node)
    nodes.insert(nodes.index(conv), helper.make_node("Pad", [conv.input[0], pads], [f"{INPUT_PAD}_output"], name=INPUT_PAD))
    conv.input[0] = f"{INPUT_PAD}_output"
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return True


def fold_quantized_pad(model: onnx.ModelProto) -> bool:
    """DequantizeLinear → input Pad → QuantizeLinear with the same scale and zero point becomes the
    Pad on the quantized tensor itself, padding with the zero point: ORT would pad in float."""
    pad = next((n for n in model.graph.node if n.name == INPUT_PAD), None)
    if pad is None:
        return False
    producers = {out: n for n in model.graph.node for out in n.output}
    consumers = tensor_consumers(model)
    dequantize, after = producers.get(pad.input[0]), consumers.get(pad.output[0], [])
    if dequantize is None or dequantize.op_type != "DequantizeLinear" or len(after) != 1 or after[0].op_type != "QuantizeLinear":
        return False
    quantize = after[0]
    params = {*dequantize.input[1:3], *quantize.input[1:3]}  # scales and zero points: not the weights
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name in params}
    if any(not np.array_equal(values[a], values[b]) for a, b in zip(dequantize.input[1:3], quantize.input[1:3])):
        return False
    pad.input[:] = [dequantize.input[0], pad.input[1], dequantize.input[2]]  # the zero point is the padded value
    pad.output[0] = quantize.output[0]
    drop = [quantize] + ([dequantize] if len(consumers[dequantize.output[0]]) == 1 else [])
    kept = [n for n in model.graph.node if all(n is not d for d in drop)]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return True
