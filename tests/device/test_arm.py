"""edgecnn verify-arm: its prerequisite errors, and (slow) a real QEMU run, its arm64 cache built on first use."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.device import arm

TOOLS = all(shutil.which(t) for t in ("qemu-aarch64-static", "mmdebstrap"))


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def arm_cache(request) -> Path:
    """edgecnn's arm64 cache (rootfs and aarch64 wheels), built here when missing: a fresh machine (CI)
    gets it from the Debian mirror and PyPI, as `verify-arm --setup` would; later runs reuse it."""
    cache = arm.cache_dir()
    rootfs, site = arm._paths(cache)
    if rootfs.is_dir() and site.is_dir():
        return cache
    if not TOOLS:
        pytest.skip("needs qemu-user-static and mmdebstrap (make arm-deps)")
    if not rootfs.is_dir() and os.geteuid() != 0:
        pytest.skip(f"no arm64 rootfs in {cache}, and mmdebstrap needs root: edgecnn verify-arm MODEL --setup, once as root")
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the setup's steps and timings show in the test log
        reporter.write("\n")  # off the line of progress dots
        arm.setup_arm(cache, log=reporter.write_line)
    return cache


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    return result.output


def test_missing_qemu_and_mmdebstrap_are_named_with_the_fix(digits_run, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither tool on PATH
    out = one_line_error(invoke("verify-arm", digits_run / "model.fp32.onnx", "--cache", tmp_path / "cache"))
    assert "needs qemu-aarch64-static and mmdebstrap: as root, `make arm-deps`" in out
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(not TOOLS, reason="needs qemu-user-static and mmdebstrap (make arm-deps)")
def test_without_a_cache_the_setup_is_asked_for_and_needs_root(digits_run, tmp_path, monkeypatch):
    model = digits_run / "model.fp32.onnx"
    out = one_line_error(invoke("verify-arm", model, "--cache", tmp_path / "cache"))
    assert "add --setup to build it once" in out and "mmdebstrap bookworm arm64 python3.11" in out
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    out = one_line_error(invoke("verify-arm", model, "--cache", tmp_path / "cache", "--setup"))
    assert "mmdebstrap needs root here" in out and "run verify-arm --setup once as root" in out


def test_bad_options_name_the_value(digits_run):
    out = one_line_error(invoke("verify-arm", digits_run / "model.fp32.onnx", "--cpu", "pi3"))
    assert "unknown --cpu 'pi3' (accepted: pi4, pi5)" in out
    out = one_line_error(invoke("verify-arm", digits_run / "model.fp32.onnx", "--samples", "0"))
    assert "Invalid value for '--samples': Input should be greater than or equal to 1" in out


def test_quantized_models_are_recognized(digits_run):
    assert arm.is_quantized(digits_run / "model.int8.onnx") and not arm.is_quantized(digits_run / "model.fp32.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("variant, cpu", [("fp32", "pi4"), ("int8", "pi5")])
def test_aarch64_onnxruntime_under_qemu_matches_the_host(digits_run, arm_cache, variant, cpu):
    result = invoke("verify-arm", digits_run / f"model.{variant}.onnx", "--cpu", cpu, "--samples", 64, "--cache", arm_cache, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["arm"]["machine"] == "aarch64" and report["arm"]["onnxruntime"] == report["host"]["onnxruntime"]
    assert report["top1_agreement"] == 1.0 and report["passed"]
    if variant == "int8":
        assert report["bit_exact"]
    else:
        assert report["max_abs_diff"] <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["digits", "catsdogs", "convnet"])
def test_the_int8_s2d_stem_is_bit_exact_on_aarch64(digits_run, arm_cache, tmp_path, recipe):
    """The space-to-depth stem is written with ORT's NHWC contrib ops; aarch64 runs them to the same bits,
    on one channel (reshape and transpose), on RGB (SpaceToDepth) and behind the input crop (convnet)."""
    import numpy as np

    from edgecnn.quantize.model import QuantConfig, quantize_model
    from edgecnn.train.export import export_onnx
    from edgecnn.train.nets import build_net
    from recipes import get_recipe

    if recipe == "digits":
        fp32, data = digits_run / "model.fp32.onnx", digits_run
    else:
        net, shape = {"catsdogs": ("catsdogs_cnn", (8, 3, 150, 150)), "convnet": ("convnet", (8, 1, 28, 28))}[recipe]
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        fp32, data = tmp_path / "model.onnx", tmp_path / "data.npz"
        export_onnx(build_net(net), get_recipe(recipe), fp32, x[:2])
        np.savez(data, x=x, y=np.zeros(8, np.int64))
    out = quantize_model(fp32, QuantConfig(passes=("s2d-stem",)), calib=data, samples=8, out=tmp_path / "s2d.int8.onnx")
    result = invoke("verify-arm", out.model, "--cpu", "pi4", "--data", data, "--samples", 8, "--cache", arm_cache, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["bit_exact"] and report["top1_agreement"] == 1.0
