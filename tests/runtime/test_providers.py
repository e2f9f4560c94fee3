import numpy as np
import onnxruntime as ort
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.bench import bound_runner
from edgecnn.runtime.providers import PROVIDERS, ProviderOptions, configure, cpu_vendor, ep_options, parse_provider_options, provider_chain, resolve_provider
from edgecnn.runtime.session import Session

EVERY_EP = [p.ep for p in PROVIDERS.values()]


def test_chains_are_the_documented_fallback_order():
    options = ProviderOptions(device_id=1, trt_fp16=True, cache_dir="/tmp/engines")
    tensorrt = provider_chain(PROVIDERS["tensorrt"], options, EVERY_EP)
    assert [ep for ep, _ in tensorrt] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert tensorrt[0][1] == {"device_id": "1", "trt_fp16_enable": "1", "trt_int8_enable": "0", "trt_engine_cache_enable": "1",
                              "trt_engine_cache_path": "/tmp/engines", "trt_timing_cache_enable": "1", "trt_timing_cache_path": "/tmp/engines"}
    assert tensorrt[1][1] == {"device_id": "1", "cudnn_conv_algo_search": "EXHAUSTIVE"}
    assert [ep for ep, _ in provider_chain(PROVIDERS["openvino"], options, EVERY_EP)] == ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert provider_chain(PROVIDERS["cuda"], options, ["CPUExecutionProvider"]) == [("CPUExecutionProvider", {})]  # as far as the build goes
    assert ep_options("openvino", ProviderOptions(openvino_device="GPU", openvino_threads=4)) == {"device_type": "GPU", "num_of_threads": "4"}


def test_strict_turns_the_cpu_fallback_into_an_error():
    opts = ort.SessionOptions()
    assert configure(opts, PROVIDERS["cpu"], ProviderOptions(strict=True)) == [("CPUExecutionProvider", {})]
    with pytest.raises(RuntimeError, match="does not have configuration"):  # the CPU asked for is no fallback
        opts.get_session_config_entry("session.disable_cpu_ep_fallback")
    opts = ort.SessionOptions()
    assert configure(opts, PROVIDERS["cuda"], ProviderOptions(strict=True)) == [("CPUExecutionProvider", {})]
    assert opts.get_session_config_entry("session.disable_cpu_ep_fallback") == "1"


def test_provider_options_parse_from_key_value_pairs(tmp_path):
    options = parse_provider_options(["trt_fp16=1", f"cache_dir={tmp_path}", "openvino_threads=2"], device_id=3, strict=True)
    assert (options.trt_fp16, options.cache_dir, options.openvino_threads, options.device_id, options.strict) == (True, tmp_path, 2, 3, True)
    with pytest.raises(EdgecnnError, match=r"'fp16' is not KEY=VALUE with a known KEY \(accepted: cudnn_search, trt_fp16"):
        parse_provider_options(["fp16"])
    with pytest.raises(EdgecnnError, match="trt_int8 takes 0 or 1"):
        parse_provider_options(["trt_int8=yes"])
    with pytest.raises(EdgecnnError, match=r"cuDNN search 'FAST' is not accepted \(accepted: EXHAUSTIVE, HEURISTIC, DEFAULT\)"):
        parse_provider_options(["cudnn_search=FAST"])
    with pytest.raises(EdgecnnError, match="OpenVINO device 'TPU'"):
        parse_provider_options(["openvino_device=TPU"])


def test_a_provider_this_build_lacks_names_its_package():
    with pytest.raises(EdgecnnError, match=r"provider 'cuda' \(CUDAExecutionProvider\) is not in this onnxruntime .* install onnxruntime-gpu"):
        resolve_provider("cuda")


def test_the_openvino_plugin_serves_intel_devices_only():
    """The onnxruntime-ep-openvino plugin (edgecnn[openvino]) offers Intel devices; elsewhere it is one line."""
    if cpu_vendor().lower().startswith("intel"):
        assert resolve_provider("openvino").name == "openvino"
    else:
        with pytest.raises(EdgecnnError, match=rf"plugin is installed but offers no device on this machine .*this CPU: {cpu_vendor()}"):
            resolve_provider("openvino")


def test_placement_counts_every_node_on_the_cpu(digits_run):
    session = Session(digits_run / "model.fp32.onnx")
    assert session.placement() == {"CPUExecutionProvider": 8} and session.fallen_back() == []


def test_io_binding_runs_what_a_plain_run_computes(digits_run):
    session = Session(digits_run / "model.int8.onnx")
    x = session.random_input(4)
    run, binding = bound_runner(session, x, "cpu")
    run()
    assert np.array_equal(binding.copy_outputs_to_cpu()[0], session.run(x))


def test_cuda_graphs_are_refused_off_the_gpu(digits_run):
    from edgecnn.runtime.bench import bench_models

    with pytest.raises(EdgecnnError, match="cuda_graph replays runs on a GPU: it takes provider cuda or tensorrt, not 'cpu'"):
        bench_models([digits_run / "model.fp32.onnx"], options=ProviderOptions(cuda_graph=True))
    assert ep_options("cuda", ProviderOptions(cuda_graph=True))["enable_cuda_graph"] == "1"
    assert ep_options("tensorrt", ProviderOptions(cuda_graph=True))["trt_cuda_graph_enable"] == "1"
