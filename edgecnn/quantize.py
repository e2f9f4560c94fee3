"""int8 through onnxruntime.quantization: static QDQ/QOperator or dynamic, metadata carried over."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgecnn.data import calibration_samples, resolve_split
from edgecnn.errors import EdgecnnError
from edgecnn.files import atomic_path, refuse_overwrite
from edgecnn.runtime import META_QUANTIZATION, META_SESSION, Session, load_onnx, read_metadata

FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
TYPES = {
    "u8s8": (QuantType.QUInt8, QuantType.QInt8),
    "s8s8": (QuantType.QInt8, QuantType.QInt8),
    "u8u8": (QuantType.QUInt8, QuantType.QUInt8),
}
QDQ_PROPAGATION = "QDQPropagationTransformer"
# ops that follow a conv inside one block; a float stem keeps them in float with their conv
_STEM_FOLLOWERS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "MaxPool", "AveragePool", "BatchNormalization"}


@dataclass(frozen=True)
class QuantConfig:
    """One int8 configuration; the defaults are ONNX Runtime's recommended CNN settings."""

    format: str = "qdq"
    per_channel: bool = True
    method: str = "minmax"
    types: str = "u8s8"  # activations uint8, weights int8: the fast pair on x86 VNNI CPUs
    reduce_range: bool = False
    dynamic: bool = False
    exclude: tuple[str, ...] = field(default_factory=tuple)
    float_stem: bool = False  # keep convs on 1-4 input channels (and their block) in float: slower in int8
    keep_float_pool: bool = False  # stop ORT moving the stem's quantize step above its pooling; hand over in NHWC

    def label(self) -> str:
        """A short name for tables: qdq/u8s8/pc/minmax+stem…"""
        if self.dynamic:
            return f"dynamic/{self.types}" + ("/rr" if self.reduce_range else "")
        parts = [self.format, self.types, "pc" if self.per_channel else "pt", self.method]
        parts += ["rr"] if self.reduce_range else []
        label = "/".join(parts)
        label += "+stem" if self.float_stem else ""
        label += "+pool" if self.keep_float_pool else ""
        return label + (f"+{len(self.exclude)}float" if self.exclude else "")

    def check(self) -> None:
        for value, accepted, what in (
            (self.format, FORMATS, "format"),
            (self.method, METHODS, "method"),
            (self.types, TYPES, "types"),
        ):
            if value not in accepted:
                raise EdgecnnError(f"unknown {what} {value!r} (accepted: {', '.join(accepted)})")
        if self.keep_float_pool and not self.float_stem:
            raise EdgecnnError("--keep-float-pool (keep_float_pool) applies to a float stem; add --float-stem (float_stem=True)")


def int8_path(model: Path) -> Path:
    """model.fp32.onnx → model.int8.onnx; other.onnx → other.int8.onnx."""
    name = Path(model).name
    stem = name.removesuffix(".onnx").removesuffix(".fp32")
    return Path(model).with_name(f"{stem}.int8.onnx")


class ArrayReader(CalibrationDataReader):
    """Feeds an array to onnxruntime's calibrators in fixed-size batches."""

    def __init__(self, input_name: str, samples: np.ndarray, batch_size: int = 32):
        self._batches = iter(
            [{input_name: samples[i : i + batch_size]} for i in range(0, len(samples), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_model(
    model: Path,
    config: QuantConfig = QuantConfig(),
    calib: Path | None = None,
    samples: int = 256,
    out: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Quantize an fp32 ONNX model to int8; calibration samples come from the training split."""
    config.check()
    model = Path(model)
    source = load_onnx(model)
    props = read_metadata(source)
    out = Path(out) if out else int8_path(model)
    if out.resolve() == model.resolve():
        raise EdgecnnError(f"output {out} would overwrite the input model; pass another --out")
    refuse_overwrite(out, force)
    session = Session(model)  # proves the model loads and gives its input name and shape
    calib_source = None
    if not config.dynamic:
        split, calib_source = resolve_split(calib, model, "train")
        x = calibration_samples(split, samples)
        session.check_input(x)

    with tempfile.TemporaryDirectory(prefix="edgecnn-quant-") as tmp:
        prepared = prepare(model, Path(tmp) / "prepared.onnx")
        with atomic_path(out, force=True) as target:
            quantize_prepared(prepared, target, config, props, None if config.dynamic else x, calib_source)
    return {
        "model": str(out),
        "source": str(model),
        "config": asdict(config),
        "calibration": calib_source,
        "size_bytes": out.stat().st_size,
        "source_size_bytes": model.stat().st_size,
    }


def prepare(model: Path, out: Path) -> Path:
    """ONNX Runtime's pre-processing (shape inference, folding) that quantization expects first."""
    quant_pre_process(str(model), str(out), skip_symbolic_shape=True)
    return out


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name → the nodes that read it."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Tensor name → its inferred shape (0 for a dimension not known statically)."""
    inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred}


def stem_nodes(model: onnx.ModelProto) -> list[str]:
    """Convs reading 1-4 channels and the activation/pooling nodes that follow each one."""
    weights = {i.name: i.dims for i in model.graph.initializer}
    consumers = _consumers(model)
    names = []
    for node in model.graph.node:
        dims = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if dims is None or len(dims) < 2 or dims[1] > 4:
            continue
        names.append(node.name)
        current = node
        while len(nxt := consumers.get(current.output[0], [])) == 1 and nxt[0].op_type in _STEM_FOLLOWERS:
            current = nxt[0]
            names.append(current.name)
    return names


def nhwc_handover(model: onnx.ModelProto, float_nodes: list[str]) -> list[str]:
    """After the float stem, where quantized nodes take over: a transpose to NHWC and back, a no-op
    reshape between them. Returns the float nodes added (the first transpose, the reshape).

    The reshape keeps ONNX Runtime from cancelling the pair. It then folds the first transpose
    into the reorder out of its blocked fp32 layout and cancels the second against the one it
    puts before its NHWC int8 convs: the hand-over to int8 skips a reorder to NCHW and a transpose.
    """
    in_float = set(float_nodes)
    consumers, shapes = _consumers(model), _shapes(model)
    inputs = {i.name for i in model.graph.input}
    ends = []
    for node in model.graph.node:  # the stem: a float block reading the model's input, to its last float node
        if node.name in in_float and node.op_type == "Conv" and node.input[0] in inputs:
            while len(nxt := consumers.get(node.output[0], [])) == 1 and nxt[0].name in in_float:
                node = nxt[0]
            ends.append(node)
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
    shapes, uses = _shapes(model), _consumers(model)
    weights = {i.name: i for i in model.graph.initializer}
    nodes, rewritten = list(model.graph.node), 0
    for flatten in [n for n in nodes if n.op_type == "Flatten"]:
        shape = shapes.get(flatten.input[0], [])
        axis = next((a.i for a in flatten.attribute if a.name == "axis"), 1)
        gemm = uses.get(flatten.output[0], [None])
        if axis != 1 or len(shape) != 4 or 0 in shape[1:] or len(gemm) != 1 or gemm[0] is None or gemm[0].op_type != "Gemm":
            continue
        gemm = gemm[0]
        trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
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


def nhwc_layout(model: onnx.ModelProto, float_nodes: list[str]) -> list[str]:
    """The float stem's NHWC hand-over and the dense layer's NHWC weights; returns the float nodes added."""
    added = nhwc_handover(model, float_nodes)
    nhwc_flatten(model)
    return added


def quantize_prepared(
    prepared: Path,
    target: Path,
    config: QuantConfig,
    props: dict[str, str],
    x: np.ndarray | None,
    calib_source: str | None,
) -> None:
    """Quantize a pre-processed model into `target` and write edgecnn's metadata into it."""
    model = onnx.load(str(prepared))
    exclude = list(config.exclude) + (stem_nodes(model) if config.float_stem else [])
    if config.keep_float_pool:
        exclude += nhwc_layout(model, exclude)
        prepared = prepared.with_name(f"{prepared.stem}.nhwc.onnx")
        onnx.save(model, str(prepared))
    input_name = model.graph.input[0].name
    with contextlib.redirect_stdout(io.StringIO()):  # entropy/percentile calibrators print progress
        _run_quantizer(prepared, target, config, input_name, x, exclude)
    quantized = onnx.load(str(target))
    record = {
        **asdict(config),
        "excluded_nodes": exclude,
        "calibration": calib_source,
        "samples": 0 if x is None else len(x),
    }
    session = {"disabled_optimizers": [QDQ_PROPAGATION]} if config.keep_float_pool else None
    _carry_metadata(quantized, props, record, session)
    onnx.save(quantized, str(target))


def _run_quantizer(
    prepared: Path, target: Path, config: QuantConfig, input_name: str, x: np.ndarray | None, exclude: list[str]
) -> None:
    activation, weight = TYPES[config.types]
    if config.dynamic:
        quantize_dynamic(
            str(prepared),
            str(target),
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            weight_type=weight,
            nodes_to_exclude=exclude,
        )
        return
    quantize_static(
        str(prepared),
        str(target),
        ArrayReader(input_name, x),
        quant_format=FORMATS[config.format],
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        activation_type=activation,
        weight_type=weight,
        calibrate_method=METHODS[config.method],
        nodes_to_exclude=exclude,
    )


def _carry_metadata(
    model: onnx.ModelProto, props: dict[str, str], record: dict[str, Any], session: dict[str, Any] | None
) -> None:
    """The fp32 model's metadata, the quantization record, and any session option speed depends on."""
    props = {k: v for k, v in props.items() if k not in (META_QUANTIZATION, META_SESSION)}
    props[META_QUANTIZATION] = json.dumps(record)
    if session:
        props[META_SESSION] = json.dumps(session)
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
