"""ONNX Runtime sessions: provider names to execution providers, the model card, clear errors.

Runtime half: imports onnx, onnxruntime and numpy only, never torch.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgecnn.errors import EdgecnnError
from edgecnn.graph.count import non_finite_weights
from edgecnn.runtime.card import read_card
from edgecnn.runtime.providers import PROVIDERS, ProviderOptions, configure, resolve_provider


def load_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX file, with one clear line when it is missing, not ONNX, or keeps weights
    outside its own folder (external data must be a relative path beside or below the model)."""
    path = Path(path)
    if path.is_dir():
        raise EdgecnnError(f"{path} is a folder; give an .onnx model file")
    if not path.is_file():
        raise EdgecnnError(f"model file {path} not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError or its own types
        raise EdgecnnError(f"{path} is not an ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:  # an empty file parses as an empty model
        raise EdgecnnError(f"{path} is not an ONNX model (no graph: {path.stat().st_size} bytes)")
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        folder = path.resolve().parent
        if Path(location).is_absolute():
            raise EdgecnnError(f"{path}: weight {tensor.name!r} points to an absolute path {location!r}; external data must be a relative path inside {folder}")
        target = (folder / location).resolve()
        if not target.is_relative_to(folder):
            raise EdgecnnError(f"{path}: weight {tensor.name!r} points outside the model's folder ({location!r}); external data must stay inside {folder}")
        if not target.is_file():
            raise EdgecnnError(f"{path}: weight {tensor.name!r} points to {location!r}, which is missing")
    if external:
        try:
            onnx.load_external_data_for_model(model, str(path.resolve().parent))
        except Exception as exc:
            raise EdgecnnError(f"{path}: its external data cannot be read ({type(exc).__name__}: {exc})") from None
    return model


def refuse_non_finite_weights(model: onnx.ModelProto, path: Path) -> None:
    """One line when weights hold NaN or Inf: such a model classifies nothing, wherever it goes."""
    bad = non_finite_weights(model)
    if bad:
        raise EdgecnnError(f"{path} has NaN or Inf weights ({', '.join(bad[:5])}); it would classify nothing")


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
    opts.add_session_config_entry("session.record_ep_graph_assignment_info", "1")  # where each node runs
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class Session:
    """An ONNX Runtime session on one model with its metadata, input spec and output kind."""

    def __init__(
        self, path: Path, provider: str = "cpu", threads: int | None = 1, spinning: bool = True,
        options: ProviderOptions = ProviderOptions(), profile: Path | None = None, card_options: bool = True,
    ):
        """`card_options=False` loads the model as any ONNX Runtime program does: the session options its
        card asks for (disabled optimizers) are not applied, so a timing holds outside edgecnn."""
        self.path = Path(path)
        model = load_onnx(self.path)
        self.card = read_card(model)
        self.non_finite = non_finite_weights(model)
        self.provider = resolve_provider(provider)
        disabled = list(self.card.session_options.disabled_optimizers) if card_options else []
        opts = session_options(threads, spinning)
        if profile is not None:  # onnxruntime's profiler: every node's time and provider
            opts.enable_profiling = True
            opts.profile_file_prefix = str(profile)
        chain = configure(opts, self.provider, options)
        try:
            self.session = ort.InferenceSession(
                model.SerializeToString(),
                sess_options=opts,
                **({"providers": chain} if chain is not None else {}),
                **({"disabled_optimizers": disabled} if disabled else {}),
            )
        except Exception as exc:  # onnxruntime wraps graph errors in several exception types
            first = str(exc).splitlines()[0]
            if options.strict and "fallback" in first.lower():
                raise EdgecnnError(f"{self.path} has nodes {provider!r} cannot run and --strict refuses the CPU for them: {first}") from None
            raise EdgecnnError(f"onnxruntime cannot load {self.path}: {first}") from None
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

    def placement(self) -> dict[str, int]:
        """How many of the model's nodes each execution provider was given."""
        return dict(Counter(g.ep_name for g in self.session.get_provider_graph_assignment_info() for _ in g.get_nodes()))

    def fallen_back(self) -> list[str]:
        """The nodes the CPU runs although another provider was asked for (empty on the CPU)."""
        if self.provider.name == "cpu":
            return []
        cpu = PROVIDERS["cpu"].ep
        return [n.name for g in self.session.get_provider_graph_assignment_info() if g.ep_name == cpu for n in g.get_nodes()]

    def classes(self) -> int | None:
        """How many classes the first output scores (a single unit: two), None when its size is symbolic."""
        units = self.session.get_outputs()[0].shape[-1]
        return (2 if units == 1 else units) if isinstance(units, int) else None

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
        """Raw outputs for all of `x`, in batches; NaN or Inf among them is one line, not a prediction."""
        self.check_input(x)
        outs = [self.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        outputs = np.concatenate(outs) if outs else np.zeros((0,))
        self.refuse_non_finite(outputs)
        return outputs

    def refuse_non_finite(self, outputs: np.ndarray) -> None:
        """One line when outputs hold NaN or Inf, naming the non-finite weights where there are any."""
        bad = ~np.isfinite(outputs.reshape(len(outputs), -1)).all(axis=1) if outputs.size else np.zeros(0, bool)
        if bad.any():
            cause = f"; non-finite weights: {', '.join(self.non_finite[:5])}" if self.non_finite else ""
            raise EdgecnnError(f"{self.path.name} outputs NaN or Inf on {int(bad.sum())} of {len(bad)} samples{cause}")

    def random_input(self, batch: int, seed: int = 0) -> np.ndarray:
        """A batch of random input of the model's shape; symbolic dims other than batch are refused."""
        dims = self.sample_shape()
        if not all(isinstance(d, int) for d in dims):
            raise EdgecnnError(f"{self.path.name} has symbolic input dims {dims}; only the batch may be dynamic")
        need, limit = batch * int(np.prod(dims)) * np.dtype(self.input_dtype).itemsize, available_memory() // 2
        if need > limit:  # before numpy tries: a MemoryError, or the machine swapping, is no answer
            raise EdgecnnError(f"a batch of {batch} inputs of shape {dims} needs {need / 2**30:.1f} GiB; "
                               f"half the memory available here is {limit / 2**30:.1f} GiB")
        return np.random.default_rng(seed).random((batch, *dims), dtype=np.float32).astype(self.input_dtype)


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux's MemAvailable; all physical memory elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
