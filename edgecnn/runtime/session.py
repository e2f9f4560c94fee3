"""ONNX Runtime sessions: provider names to execution providers, the model card, clear errors.

Runtime half: imports onnx, onnxruntime and numpy only, never torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.card import read_card


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
        self.card = read_card(model)
        self.provider = resolve_provider(provider)
        disabled = list(self.card.session_options.disabled_optimizers)
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
