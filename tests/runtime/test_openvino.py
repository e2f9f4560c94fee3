"""--provider openvino from the route the README gives where the plugin has no device: `make openvino-env`."""

import json
import subprocess
from pathlib import Path

import pytest

OV_EDGECNN = Path(__file__).parents[2] / ".venv-openvino" / "bin" / "edgecnn"


@pytest.mark.slow  # make test-all builds .venv-openvino first (onnxruntime-openvino from PyPI)
def test_bench_and_eval_on_openvino_agree_with_the_cpu(digits_run):
    assert OV_EDGECNN.is_file(), "run `make openvino-env` (make test-all does) to build .venv-openvino"
    for model in (digits_run / "model.fp32.onnx", digits_run / "model.int8.onnx"):
        bench = json.loads(subprocess.run([OV_EDGECNN, "bench", model, "--provider", "openvino", "--batch", "1,8", "--runs", "5", "--json"],
                                          capture_output=True, text=True, check=True).stdout)
        placement = bench["models"][0]["placement"]
        assert placement.get("OpenVINOExecutionProvider", 0) > 0 and bench["provider"] == "openvino"
        assert all(r["p50_ms"] > 0 for r in bench["results"])
        accuracy = {
            provider: json.loads(subprocess.run([OV_EDGECNN, "eval", model, "--provider", provider, "--json"],
                                                capture_output=True, text=True, check=True).stdout)["accuracy"]
            for provider in ("cpu", "openvino")
        }
        assert accuracy["openvino"] == pytest.approx(accuracy["cpu"], abs=0.01)  # int8 rounding may flip a digit of 297
