"""Deployment targets: where a model will run and how its users load it there.

A speed claim holds only where it was measured the way the target loads the model. `ort` is any
ONNX Runtime program on a CPU (a plain `InferenceSession`, default options), `host` is this
machine's ONNX Runtime with every session option edgecnn's model card carries, `onnx` is any runtime
that reads standard ONNX. The Pi targets run ONNX Runtime's aarch64 build: their timings come from
the device itself, and emulation proves parity only. `openvino` runs in the OpenVINO runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecnn.errors import EdgecnnError


@dataclass(frozen=True)
class Target:
    """One place a model is deployed to."""

    name: str
    summary: str
    provider: str  # the execution provider its users run
    card_options: bool = False  # True: loaded with the model card's session options (edgecnn's own session)
    standard_ops: bool = False  # True: ONNX's own operator domains only
    arm_cpu: str | None = None  # the CPU verify-arm emulates for it
    timed_here: bool = True  # False: its timings are measured on the device (`edgecnn bench --json` there)
    runtime: str = "onnxruntime"  # what runs the model: onnxruntime, or openvino (the OpenVINO runtime itself)

    def loaded_as(self) -> str:
        """How its timings load a model, for decisions and reports."""
        if self.runtime == "openvino":
            return "in the OpenVINO runtime"
        return "in edgecnn's session" if self.card_options else "as any ONNX Runtime program loads it"


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("ort", "any ONNX Runtime program on a CPU: its own operators allowed, default session options", "cpu"),
        Target("onnx", "any runtime that reads standard ONNX (OpenCV DNN, OpenVINO): ONNX's own operators only", "cpu", standard_ops=True),
        Target("host", "this machine's ONNX Runtime CPU EP with every session option edgecnn applies", "cpu", card_options=True),
        Target("pi4", "Raspberry Pi 4 (Cortex-A72), ONNX Runtime's aarch64 build", "cpu", arm_cpu="pi4", timed_here=False),
        Target("pi5", "Raspberry Pi 5 (Cortex-A76, dot-product instructions), ONNX Runtime's aarch64 build", "cpu", arm_cpu="pi5", timed_here=False),
        Target("openvino", "the OpenVINO runtime on an x86-64 CPU (openvino.Core reads the ONNX file; ONNX Runtime's OpenVINO EP runs the same plugin)",
               "openvino", standard_ops=True, runtime="openvino"),
        Target("cuda", "ONNX Runtime's CUDA EP on an NVIDIA GPU", "cuda"),
        Target("tensorrt", "ONNX Runtime's TensorRT EP on an NVIDIA GPU (symmetric S8S8 QDQ)", "tensorrt", standard_ops=True),
    )
}
DEFAULT_TARGET = "ort"  # what a user deploying a model wants: speed that holds in any ONNX Runtime program


def resolve_target(name: str) -> Target:
    """The target of a name, or one line listing the accepted ones."""
    if name not in TARGETS:
        raise EdgecnnError(f"unknown target {name!r} (accepted: {', '.join(TARGETS)})")
    return TARGETS[name]
