"""The OpenVINO runtime, as the `openvino` target's users load a model: `openvino.Core` reads the ONNX
file and compiles it for one device at each batch's static shape (LATENCY hint).

ONNX Runtime's OpenVINO EP runs the same plugin underneath, but serves Intel CPUs only as a plugin;
the runtime itself runs on any x86-64 CPU, so the target is timed with it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.providers import ProviderOptions
from edgecnn.runtime.session import Session

INSTALL = "pip install 'edgecnn[openvino]' (x86-64)"


def openvino_core() -> Any:
    """An `openvino.Core`, or one line saying how to install the runtime."""
    try:
        import openvino
    except ImportError:
        raise EdgecnnError(f"the openvino target runs models in the OpenVINO runtime, which is not installed: {INSTALL}") from None
    return openvino.Core()


def openvino_version() -> str:
    """The OpenVINO runtime's version, for the machine line beside a figure."""
    import openvino

    return openvino.get_version().split("-")[0]


def float_precision(device: str = "CPU", core: Any = None) -> str:
    """The precision OpenVINO computes float parts in on `device`: by default bf16 where the CPU has it."""
    return (core or openvino_core()).get_property(device, "INFERENCE_PRECISION_HINT").to_string()


class OpenVinoSession(Session):
    """A model compiled by the OpenVINO runtime, with a Session's card, input spec and checks (read
    through ONNX Runtime's CPU EP, which never runs it)."""

    def __init__(self, path: Path, threads: int | None = 1, options: ProviderOptions = ProviderOptions()):
        core = openvino_core()
        super().__init__(path, provider="cpu", threads=threads, card_options=False)
        try:
            self.network = core.read_model(str(self.path))
        except RuntimeError as exc:
            raise EdgecnnError(f"OpenVINO cannot read {self.path}: {str(exc).splitlines()[0]}") from None
        self.core = core
        self.device = options.openvino_device
        self.config = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
        self.requests: dict[int, Any] = {}

    def _request(self, batch: int) -> Any:
        if batch not in self.requests:
            if not all(isinstance(d, int) for d in self.sample_shape()):
                raise EdgecnnError(f"{self.path.name} has symbolic input dims {self.sample_shape()}; OpenVINO compiles static shapes here, only the batch may vary")
            network = self.network.clone()
            network.reshape([batch, *self.sample_shape()])
            try:
                compiled = self.core.compile_model(network, self.device, self.config)
            except RuntimeError as exc:
                raise EdgecnnError(f"OpenVINO cannot compile {self.path} for {self.device}: {str(exc).splitlines()[0]}") from None
            self.requests[batch] = compiled.create_infer_request()
        return self.requests[batch]

    def run(self, x: np.ndarray) -> np.ndarray:
        """The first output for one batch, compiled for its size on first use."""
        request = self._request(len(x))
        return request.infer({0: x.astype(self.input_dtype, copy=False)})[0]

    def placement(self) -> dict[str, int]:
        """Every node on the OpenVINO device (the runtime has no fallback), and its float precision."""
        return {f"OpenVINO {self.device} ({float_precision(self.device, self.core)} float)": len(self.network.get_ops())}

    def fallen_back(self) -> list[str]:
        return []


RUNTIMES = ("onnxruntime", "openvino")


def open_session(path: Path, runtime: str = "onnxruntime", provider: str = "cpu", threads: int | None = 1,
                 options: ProviderOptions = ProviderOptions(), card_options: bool = False) -> Session:
    """A session on `path` in the named runtime: ONNX Runtime on `provider`, or the OpenVINO runtime."""
    if runtime == "openvino":
        return OpenVinoSession(path, threads=threads, options=options)
    if runtime != "onnxruntime":
        raise EdgecnnError(f"unknown runtime {runtime!r} (accepted: {', '.join(RUNTIMES)})")
    return Session(path, provider=provider, threads=threads, options=options, card_options=card_options)
