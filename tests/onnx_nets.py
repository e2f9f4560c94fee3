"""Tiny CNNs built in code with onnx.helper (random, seeded weights), and ONNX Runtime to run them.

The graph and quantization tests need no training framework and no trained run: each rewrite is
checked by running a model before and after it on random inputs, as ONNX Runtime's own
quantization tests do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass(frozen=True)
class Block:
    """Conv (stride 1) → ReLU → optional max pool of kernel and stride `pool`."""

    filters: int
    kernel: int = 3
    pads: int | tuple[int, ...] = 0  # one value for every side, or ONNX's begins then ends
    pool: int = 0  # 0: no pool


def cnn(
    shape: tuple[int, ...],
    blocks: tuple[Block, ...] = (Block(8, pool=2), Block(8)),
    classes: int = 4,
    seed: int = 0,
) -> onnx.ModelProto:
    """conv → relu → [maxpool] per block, then flatten → gemm, on an input of `shape` (channels,
    then 1 or 2 spatial sizes) with a symbolic batch. Nodes are named conv1, relu1, pool1, …,
    flatten, gemm; every bias is distinct and nonzero."""
    rng = np.random.default_rng(seed)
    channels, spatial = shape[0], list(shape[1:])
    rank = len(spatial)
    nodes, weights, tensor = [], {}, "input"
    for i, block in enumerate(blocks, 1):
        pads = [block.pads] * 2 * rank if isinstance(block.pads, int) else list(block.pads)
        fan_in = channels * block.kernel**rank
        weights[f"conv{i}_w"] = (rng.standard_normal((block.filters, channels, *[block.kernel] * rank)) * np.sqrt(2 / fan_in)).astype(np.float32)
        weights[f"conv{i}_b"] = rng.normal(0.0, 0.1, block.filters).astype(np.float32)
        nodes += [
            helper.make_node("Conv", [tensor, f"conv{i}_w", f"conv{i}_b"], [f"conv{i}_out"], name=f"conv{i}", kernel_shape=[block.kernel] * rank, pads=pads),
            helper.make_node("Relu", [f"conv{i}_out"], [f"relu{i}_out"], name=f"relu{i}"),
        ]
        tensor, channels = f"relu{i}_out", block.filters
        spatial = [n + pads[d] + pads[d + rank] - block.kernel + 1 for d, n in enumerate(spatial)]
        if block.pool:
            nodes.append(helper.make_node("MaxPool", [tensor], [f"pool{i}_out"], name=f"pool{i}", kernel_shape=[block.pool] * rank, strides=[block.pool] * rank))
            tensor, spatial = f"pool{i}_out", [n // block.pool for n in spatial]
    features = channels * int(np.prod(spatial))
    weights["gemm_w"] = (rng.standard_normal((classes, features)) / np.sqrt(features)).astype(np.float32)
    weights["gemm_b"] = rng.normal(0.0, 0.1, classes).astype(np.float32)
    nodes += [
        helper.make_node("Flatten", [tensor], ["features"], name="flatten", axis=1),
        helper.make_node("Gemm", ["features", "gemm_w", "gemm_b"], ["logits"], name="gemm", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def inputs(n: int, shape: tuple[int, ...], seed: int = 0, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """`n` samples uniform in [low, high)."""
    return np.random.default_rng(seed).uniform(low, high, (n, *shape)).astype(np.float32)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def save_with_data(model: onnx.ModelProto, folder: Path, samples: int = 96, seed: int = 1) -> tuple[Path, Path]:
    """The model as net.fp32.onnx and data.npz: inputs labelled by the model's own fp32 predictions,
    so fp32 scores 100% and an accuracy drop is int8's disagreement."""
    path = save(model, folder / "net.fp32.onnx")
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:])
    x = inputs(samples, shape, seed)
    np.savez(folder / "data.npz", x=x, y=run(model, x)[0].argmax(1))
    return path, folder / "data.npz"


def calibration_file(path: Path, x: np.ndarray) -> Path:
    """An .npz with the samples as x and made-up labels as y, what quantize_model's calib= reads."""
    np.savez(path, x=x, y=np.zeros(len(x), np.int64))
    return path


def run(model: onnx.ModelProto | Path, x: np.ndarray, outputs: list[str] | None = None, disabled_optimizers: tuple[str, ...] = ()) -> list[np.ndarray]:
    """The model's outputs (or the named tensors, exposed as outputs) on `x`, one ORT session on one thread."""
    model = onnx.load(str(model)) if isinstance(model, Path | str) else onnx.ModelProto.FromString(model.SerializeToString())
    for name in outputs or []:
        if name not in {o.name for o in model.graph.output}:
            model.graph.output.append(helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"],
        **({"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}),
    )
    return session.run(outputs, {session.get_inputs()[0].name: x})
