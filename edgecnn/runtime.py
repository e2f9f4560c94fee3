"""ONNX Runtime sessions: provider names to execution providers, model metadata, clear errors.

Runtime half: imports onnx, onnxruntime and numpy only, never torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from edgecnn.errors import EdgecnnError

META_LABELS = "edgecnn.labels"
META_PREPROCESS = "edgecnn.preprocess"
META_TASK = "edgecnn.task"
META_OUTPUT = "edgecnn.output"
META_RECIPE = "edgecnn.recipe"
META_VERSION = "edgecnn.version"
META_PARITY = "edgecnn.export_parity"
META_QUANTIZATION = "edgecnn.quantization"
META_SESSION = "edgecnn.session_options"

OUTPUT_KINDS = ("logits", "probabilities", "sigmoid")


@dataclass(frozen=True)
class Provider:
    """A short provider name, the ONNX Runtime execution provider and where a user gets it."""

    name: str
    ep: str
    package: str


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("cpu", "CPUExecutionProvider", "onnxruntime"),
        Provider("cuda", "CUDAExecutionProvider", "onnxruntime-gpu (with CUDA 12 and cuDNN 9)"),
        Provider("tensorrt", "TensorrtExecutionProvider", "onnxruntime-gpu (with TensorRT 10)"),
        Provider("openvino", "OpenVINOExecutionProvider", "onnxruntime-openvino"),
        Provider("xnnpack", "XnnpackExecutionProvider", "an onnxruntime build with --use_xnnpack"),
        Provider("acl", "ACLExecutionProvider", "an onnxruntime build with --use_acl (Arm Compute Library)"),
    )
}


def resolve_provider(name: str) -> Provider:
    """Map a short provider name to its execution provider, or explain what is missing."""
    if name not in PROVIDERS:
        raise EdgecnnError(f"unknown provider {name!r} (accepted: {', '.join(PROVIDERS)})")
    provider = PROVIDERS[name]
    available = ort.get_available_providers()
    if provider.ep not in available:
        have = ", ".join(n for n, p in PROVIDERS.items() if p.ep in available)
        raise EdgecnnError(
            f"provider {name!r} ({provider.ep}) is not in this onnxruntime {ort.__version__} build "
            f"(available: {have}); install {provider.package}"
        )
    return provider


def load_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX file, with one clear line when it is missing or not ONNX."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"model file {path} not found")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError or its own types
        raise EdgecnnError(f"{path} is not an ONNX model ({type(exc).__name__})") from None


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's metadata_props as a plain dict."""
    return {p.key: p.value for p in model.metadata_props}


@dataclass(frozen=True)
class ModelMeta:
    """What edgecnn needs from a model's metadata to use it; flags fill what is missing."""

    labels: list[str] | None
    preprocess: dict[str, Any] | None
    output: str
    recipe: str | None
    session_options: dict[str, Any]

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelMeta":
        output = props.get(META_OUTPUT, "logits")
        if output not in OUTPUT_KINDS:
            raise EdgecnnError(f"metadata {META_OUTPUT}={output!r} is not one of {', '.join(OUTPUT_KINDS)}")
        return cls(
            labels=_json_prop(props, META_LABELS),
            preprocess=_json_prop(props, META_PREPROCESS),
            output=output,
            recipe=props.get(META_RECIPE),
            session_options=_json_prop(props, META_SESSION) or {},
        )


def _json_prop(props: dict[str, str], key: str) -> Any:
    if key not in props:
        return None
    try:
        return json.loads(props[key])
    except json.JSONDecodeError:
        raise EdgecnnError(f"metadata {key} is not valid JSON: {props[key][:80]!r}") from None


def model_meta(path: Path) -> ModelMeta:
    """Read the edgecnn metadata of an ONNX file (empty fields for a foreign model)."""
    return ModelMeta.from_props(read_metadata(load_onnx(path)))


def session_options(threads: int | None, spinning: bool = True) -> ort.SessionOptions:
    """Session options with full graph optimization and a fixed intra-op thread count.

    `spinning=False` lets idle intra-op threads sleep, for a loop whose other threads (a camera's
    capture) need the cores between runs.
    """
    if threads is not None and threads < 0:
        raise EdgecnnError(f"threads must be 0 (onnxruntime default) or a positive count, got {threads}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or 0
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class Session:
    """An ONNX Runtime session on one model with its metadata, input spec and output kind."""

    def __init__(self, path: Path, provider: str = "cpu", threads: int | None = 1, spinning: bool = True):
        self.path = Path(path)
        model = load_onnx(self.path)
        self.meta = ModelMeta.from_props(read_metadata(model))
        self.provider = resolve_provider(provider)
        disabled = list(self.meta.session_options.get("disabled_optimizers", []))
        opts = session_options(threads, spinning)
        try:
            self.session = ort.InferenceSession(
                model.SerializeToString(),
                sess_options=opts,
                providers=list(dict.fromkeys([self.provider.ep, "CPUExecutionProvider"])),
                **({"disabled_optimizers": disabled} if disabled else {}),
            )
        except Exception as exc:  # onnxruntime wraps graph errors in several exception types
            raise EdgecnnError(f"onnxruntime cannot load {self.path}: {str(exc).splitlines()[0]}") from None
        if self.provider.ep not in self.session.get_providers():
            raise EdgecnnError(
                f"provider {provider!r} is installed but failed to start for {self.path} "
                f"(onnxruntime fell back to {', '.join(self.session.get_providers())}); "
                "check the CUDA/cuDNN or TensorRT libraries it needs"
            )
        self.threads = threads
        self.disabled_optimizers = disabled
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise EdgecnnError(f"{self.path} has {len(inputs)} inputs; edgecnn runs single-input classifiers")
        self.input_name = inputs[0].name
        self.input_shape = list(inputs[0].shape)
        self.input_dtype = _ORT_TYPES.get(inputs[0].type)
        if self.input_dtype is None:
            raise EdgecnnError(f"{self.path} input type {inputs[0].type} is not a float tensor")

    def sample_shape(self) -> list[int | str]:
        """The input shape without its batch dimension (symbolic dims stay strings)."""
        return self.input_shape[1:]

    def check_input(self, x: np.ndarray) -> None:
        """Raise when `x` (a batch) does not fit the model's input shape."""
        want = self.sample_shape()
        got = list(x.shape[1:])
        fits = len(want) == len(got) and all(not isinstance(w, int) or w == g for w, g in zip(want, got))
        if not fits:
            raise EdgecnnError(
                f"data samples have shape {got} but {self.path.name} input {self.input_name!r} "
                f"expects {['batch', *want]}"
            )

    def run(self, x: np.ndarray) -> np.ndarray:
        """The first output for one batch."""
        return self.session.run(None, {self.input_name: x.astype(self.input_dtype, copy=False)})[0]

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Raw outputs for all of `x`, in batches."""
        self.check_input(x)
        outs = [self.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0,))

    def random_input(self, batch: int, seed: int = 0) -> np.ndarray:
        """A batch of random input of the model's shape; symbolic dims other than batch are refused."""
        dims = self.sample_shape()
        if not all(isinstance(d, int) for d in dims):
            raise EdgecnnError(f"{self.path.name} has symbolic input dims {dims}; only the batch may be dynamic")
        return np.random.default_rng(seed).random((batch, *dims), dtype=np.float32).astype(self.input_dtype)


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def class_predictions(outputs: np.ndarray, output_kind: str) -> np.ndarray:
    """Class indices from raw outputs: argmax, or a 0.5 threshold for a single sigmoid unit."""
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        threshold = 0.5 if output_kind in ("sigmoid", "probabilities") else 0.0
        return (outputs[:, 0] > threshold).astype(np.int64)
    return outputs.reshape(len(outputs), -1).argmax(axis=1)


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


def describe_model(path: Path) -> dict[str, Any]:
    """Inputs, outputs, opset, operator counts, parameter count, size and metadata of an ONNX file."""
    model = load_onnx(path)
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
        "metadata": read_metadata(model),
    }
