"""Parameters and multiply-accumulates of an ONNX graph, float or quantized. No torch."""

from __future__ import annotations

import numpy as np
import onnx

# inputs that carry scales and zero points, not parameters, per quantized op
_QUANT_PARAM_INPUTS = {
    "QuantizeLinear": {1, 2},
    "DequantizeLinear": {1, 2},
    "QLinearConv": {1, 2, 4, 5, 6, 7},
    "QLinearMatMul": {1, 2, 4, 5, 6, 7},
    "QGemm": {1, 2, 4, 5, 7, 8},
    "QLinearAdd": {1, 2, 4, 5, 6, 7},
    "ConvInteger": {2, 3},
    "MatMulInteger": {2, 3},
}


def count_params(model: onnx.ModelProto) -> int:
    """Weights and biases in the graph, leaving out quantization scales and zero points, and the
    int64 shapes, indices and pads of reshapes, slices and pads."""
    quant_params = {
        name
        for node in model.graph.node
        for i, name in enumerate(node.input)
        if i in _QUANT_PARAM_INPUTS.get(node.op_type, ())
    }
    return int(
        sum(
            np.prod(i.dims)
            for i in model.graph.initializer
            if i.name not in quant_params and i.data_type != onnx.TensorProto.INT64
        )
    )


def count_macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates for one sample in Conv, Gemm and MatMul nodes (float or quantized)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference fails on some contrib ops; MACs are then unknown
        return 0
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)
    }
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    weight_index = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "Gemm": 1, "MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3, "QGemm": 3}
    macs = 0
    for node in model.graph.node:
        if node.op_type not in weight_index:
            continue
        weight = shapes.get(node.input[weight_index[node.op_type]])
        out = shapes.get(node.output[0])
        if out and not out[0]:  # a batch left symbolic (a shape written into the model): one sample
            out = [1, *out[1:]]
        if not weight or not out or 0 in out:
            continue
        if "Conv" in node.op_type:
            macs += int(np.prod(out)) * int(np.prod(weight[1:]))  # per output: in/groups × kernel
        else:
            transposed = any(a.name == "transB" and a.i for a in node.attribute)
            macs += int(np.prod(out)) * (weight[1] if transposed else weight[0])
    return macs


def non_finite_weights(model: onnx.ModelProto) -> list[str]:
    """The float initializers holding NaN or Inf: a model with any of them computes nothing meaningful."""
    from onnx import numpy_helper

    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    return [i.name for i in model.graph.initializer if i.data_type in floats and not np.isfinite(numpy_helper.to_array(i).astype(np.float64)).all()]
