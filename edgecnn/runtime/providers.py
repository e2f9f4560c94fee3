"""Execution providers as ONNX Runtime documents them: the chain each name stands for, its options,
and where its library comes from.

`tensorrt` is TensorRT → CUDA → CPU, `cuda` is CUDA → CPU, `openvino` is OpenVINO → CPU: a node the
first cannot run falls to the next. `strict` turns that fallback to the CPU into an error.
OpenVINO also comes as a plugin library next to the base onnxruntime (`pip install
'edgecnn[openvino]'`), registered here on first use.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from edgecnn.errors import EdgecnnError

CUDNN_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
OPENVINO_DEVICES = ("CPU", "GPU", "NPU", "AUTO")


@dataclass(frozen=True)
class Provider:
    """A short provider name, its chain of ONNX Runtime execution providers, and where a user gets it."""

    name: str
    ep: str
    package: str
    falls_back_to: tuple[str, ...] = ("cpu",)  # the providers after it, in order
    plugin: str | None = None  # a Python module shipping the EP as a plugin library


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("cpu", "CPUExecutionProvider", "onnxruntime", falls_back_to=()),
        Provider("cuda", "CUDAExecutionProvider", "onnxruntime-gpu (with CUDA 12 and cuDNN 9)"),
        Provider("tensorrt", "TensorrtExecutionProvider", "onnxruntime-gpu (with TensorRT 10)", falls_back_to=("cuda", "cpu")),
        Provider("openvino", "OpenVINOExecutionProvider", "edgecnn[openvino] (the onnxruntime-ep-openvino plugin)", plugin="onnxruntime_ep_openvino"),
        Provider("xnnpack", "XnnpackExecutionProvider", "an onnxruntime build with --use_xnnpack"),
        Provider("acl", "ACLExecutionProvider", "an onnxruntime build with --use_acl (Arm Compute Library)"),
    )
}


@dataclass(frozen=True)
class ProviderOptions:
    """The options of the providers in a chain that users need; each goes to the EP that reads it."""

    device_id: int = 0  # CUDA and TensorRT: which GPU
    cudnn_search: str = "EXHAUSTIVE"  # CUDA: cuDNN's conv algorithm search (the first runs pay for it)
    trt_fp16: bool = False  # TensorRT: build fp16 engines
    trt_int8: bool = False  # TensorRT: int8 engines from a symmetric S8S8 QDQ model's own scales
    cache_dir: Path | None = None  # TensorRT: engine and timing caches here, so a second run skips the build
    cuda_graph: bool = False  # CUDA and TensorRT: replay the whole run as one CUDA graph (every node on the GPU, IO binding)
    openvino_device: str = "CPU"
    openvino_threads: int | None = None
    strict: bool = False  # refuse to run a node on the CPU when another provider was asked for

    def __post_init__(self) -> None:
        if self.device_id < 0:
            raise EdgecnnError(f"device id must be 0 or more, got {self.device_id}")
        if self.cudnn_search not in CUDNN_SEARCH:
            raise EdgecnnError(f"cuDNN search {self.cudnn_search!r} is not accepted (accepted: {', '.join(CUDNN_SEARCH)})")
        if self.openvino_device not in OPENVINO_DEVICES:
            raise EdgecnnError(f"OpenVINO device {self.openvino_device!r} is not accepted (accepted: {', '.join(OPENVINO_DEVICES)})")
        if self.openvino_threads is not None and self.openvino_threads < 1:
            raise EdgecnnError(f"OpenVINO threads must be 1 or more, got {self.openvino_threads}")


def parse_provider_options(pairs: list[str], device_id: int = 0, strict: bool = False) -> ProviderOptions:
    """KEY=VALUE pairs (trt_fp16=1, cache_dir=PATH, openvino_device=GPU …) into ProviderOptions."""
    fields = {f.name: f for f in dataclasses.fields(ProviderOptions)}
    accepted = [n for n in fields if n not in ("device_id", "strict")]
    values: dict[str, Any] = {"device_id": device_id, "strict": strict}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in accepted:
            raise EdgecnnError(f"provider option {pair!r} is not KEY=VALUE with a known KEY (accepted: {', '.join(accepted)})")
        default = fields[key].default
        if isinstance(default, bool):
            if text not in ("0", "1", "true", "false"):
                raise EdgecnnError(f"provider option {key} takes 0 or 1, got {text!r}")
            values[key] = text in ("1", "true")
        elif key == "cache_dir":
            values[key] = Path(text)
        elif key == "openvino_threads":
            if not text.isdigit():
                raise EdgecnnError(f"provider option {key} takes a whole number, got {text!r}")
            values[key] = int(text)
        else:
            values[key] = text
    return ProviderOptions(**values)


def ep_options(name: str, options: ProviderOptions) -> dict[str, str]:
    """The provider options ONNX Runtime documents for one EP of the chain, as strings."""
    if name == "cuda":
        return {"device_id": str(options.device_id), "cudnn_conv_algo_search": options.cudnn_search,
                **({"enable_cuda_graph": "1"} if options.cuda_graph else {})}
    if name == "tensorrt":
        found = {
            "device_id": str(options.device_id),
            "trt_fp16_enable": str(int(options.trt_fp16)),
            "trt_int8_enable": str(int(options.trt_int8)),
            **({"trt_cuda_graph_enable": "1"} if options.cuda_graph else {}),
        }
        if options.cache_dir is not None:
            cache = str(Path(options.cache_dir).resolve())
            found.update({"trt_engine_cache_enable": "1", "trt_engine_cache_path": cache,
                          "trt_timing_cache_enable": "1", "trt_timing_cache_path": cache})
        return found
    if name == "openvino":
        return {"device_type": options.openvino_device, **({"num_of_threads": str(options.openvino_threads)} if options.openvino_threads else {})}
    return {}


def known_provider(name: str) -> Provider:
    """The provider of a short name, whether or not this machine runs it; one line for an unknown name."""
    if name not in PROVIDERS:
        raise EdgecnnError(f"unknown provider {name!r} (accepted: {', '.join(PROVIDERS)})")
    return PROVIDERS[name]


def resolve_provider(name: str) -> Provider:
    """Map a short provider name to its execution provider, or explain what is missing."""
    provider = known_provider(name)
    if provider.ep in ort.get_available_providers() or plugin_devices(provider):
        return provider
    if plugin_module(provider) is not None:
        raise EdgecnnError(
            f"provider {name!r}: the {provider.plugin} plugin is installed but offers no device on this machine "
            f"(it serves Intel CPUs, GPUs and NPUs only; this CPU: {cpu_vendor()})"
        )
    have = ", ".join(n for n, p in PROVIDERS.items() if p.ep in ort.get_available_providers() or plugin_devices(p))
    raise EdgecnnError(
        f"provider {name!r} ({provider.ep}) is not in this onnxruntime {ort.__version__} build "
        f"(available: {have}); install {provider.package}"
    )


def cpu_vendor() -> str:
    """The CPU vendor ONNX Runtime sees (AMD, Intel …)."""
    return next((d.device.vendor for d in ort.get_ep_devices() if d.device.type == ort.OrtHardwareDeviceType.CPU), "unknown")


def plugin_module(provider: Provider) -> Any | None:
    """The provider's plugin package, where it is installed."""
    if provider.plugin is None:
        return None
    try:
        return importlib.import_module(provider.plugin)
    except ImportError:
        return None


_registered: dict[str, list[Any]] = {}


def plugin_devices(provider: Provider) -> list[Any]:
    """The devices of a provider's plugin library, registered with ONNX Runtime once; [] without it."""
    module = plugin_module(provider)
    if module is None:
        return []
    if provider.plugin not in _registered:
        ort.register_execution_provider_library(provider.name, module.get_library_path())
        _registered[provider.plugin] = [d for d in ort.get_ep_devices() if d.ep_name == module.get_ep_name()]
    return _registered[provider.plugin]


def configure(opts: ort.SessionOptions, provider: Provider, options: ProviderOptions) -> list[tuple[str, dict[str, str]]] | None:
    """Put the chain into `opts` (plugin EPs) or return it for InferenceSession(providers=...)."""
    if options.strict and provider.name != "cpu":
        opts.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if provider.plugin is not None and provider.ep not in ort.get_available_providers():  # its devices go into the options
        devices = [d for d in plugin_devices(provider) if d.ep_metadata.get("ov_device", options.openvino_device) == options.openvino_device]
        if not devices:
            raise EdgecnnError(f"provider {provider.name!r} has no {options.openvino_device} device here "
                               f"(found: {', '.join(d.ep_metadata.get('ov_device', '?') for d in plugin_devices(provider)) or 'none'})")
        opts.add_provider_for_devices(devices, ep_options(provider.name, options))
        return None
    return provider_chain(provider, options, ort.get_available_providers())


def provider_chain(provider: Provider, options: ProviderOptions, available: list[str]) -> list[tuple[str, dict[str, str]]]:
    """The provider and those it falls back to, each with its options, as far as this build has them."""
    chain = [provider.name, *provider.falls_back_to]
    return [(PROVIDERS[n].ep, ep_options(n, options)) for n in chain if PROVIDERS[n].ep in available]
