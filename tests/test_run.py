from pathlib import Path

from edgecnn.run import Run, decision_path, exported_path, file_digest, fp32_sibling, int8_sibling, variant_name


def test_every_artifact_name_comes_from_the_run(tmp_path):
    run = Run(tmp_path / "digits")
    assert run.weights() == tmp_path / "digits" / "model.pt"
    assert run.weights("pruned").name == "model.pruned.pt"
    assert run.onnx("fp32").name == "model.fp32.onnx" and run.onnx("int8", family="pruned").name == "model.pruned.int8.onnx"
    assert run.model("pruned.int8") == run.onnx("int8", family="pruned")
    assert (run.eval_json("pruned.int8").name, run.bench_json("cuda").name, run.prune_json("structured").name) == (
        "eval-pruned.int8.json", "bench-cuda.json", "prune-structured.json")
    assert Run.of(run.onnx("fp32")) is None  # no recipe.json yet
    run.root.mkdir()
    run.recipe_json.write_text("{}")
    assert Run.of(run.onnx("fp32")) == run


def test_variant_and_sibling_names():
    assert variant_name(Path("runs/d/model.fp32.onnx")) == "fp32"
    assert variant_name(Path("runs/d/model.pruned.int8.onnx")) == "pruned.int8"
    assert variant_name(Path("resnet.onnx")) == "resnet"
    assert int8_sibling(Path("r/model.fp32.onnx")) == Path("r/model.int8.onnx")
    assert int8_sibling(Path("r/mine.onnx")) == Path("r/mine.int8.onnx")
    assert fp32_sibling(Path("r/model.pruned.int8.onnx")) == Path("r/model.pruned.fp32.onnx")
    assert exported_path(Path("r/model.pruned.pt")) == Path("r/model.pruned.fp32.onnx")
    assert decision_path(Path("r/model.int8.onnx")) == Path("r/quantize-decision.json")
    assert decision_path(Path("r/model.pruned.int8.onnx")) == Path("r/quantize-decision.pruned.json")
    assert decision_path(Path("r/mine.int8.onnx")) == Path("r/mine.quantize-decision.json")


def test_derived_lists_what_steps_after_training_wrote(tmp_path):
    run = Run(tmp_path)
    for name in ("model.pt", "recipe.json", "history.json", "model.fp32.onnx", "model.pruned.pt", "eval-fp32.json",
                 "bench-cpu.json", "quantize-decision.json", "report.md", "pareto.png"):
        (tmp_path / name).write_text("x")
    assert sorted(p.name for p in run.derived()) == [
        "bench-cpu.json", "eval-fp32.json", "model.fp32.onnx", "model.pruned.pt", "pareto.png", "quantize-decision.json", "report.md"]


def test_file_digest_changes_with_the_content(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"a")
    first = file_digest(path)
    path.write_bytes(b"b")
    assert len(first) == 64 and file_digest(path) != first


def test_a_second_writer_of_one_run_is_refused_in_one_line(digits_run, tmp_path):
    """While one process writes a run (here: holds it), another command that would write there is one line, exit 2."""
    import shutil
    import subprocess
    import sys

    from typer.testing import CliRunner

    from edgecnn.cli import app

    run = tmp_path / "digits"
    shutil.copytree(digits_run, run)
    holder = subprocess.Popen([sys.executable, "-c", f"import sys, time\nfrom edgecnn.run import Run\nwith Run({str(run)!r}).writing():\n"
                               "    print('held', flush=True)\n    sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in run.iterdir())
        for args in (["report", str(run)], ["quantize", str(run / "model.fp32.onnx"), "--force"], ["eval", str(run / "model.fp32.onnx")]):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 2 and "is being written by another edgecnn command" in result.output, (args, result.output)
        assert sorted(p.name for p in run.iterdir()) == before
    finally:
        holder.communicate("", timeout=30)
    assert CliRunner().invoke(app, ["eval", str(run / "model.fp32.onnx")]).exit_code == 0  # free again


def test_a_fresh_run_folder_is_held_from_its_first_moment(tmp_path):
    """Two trainings into one new folder: the second is refused although the folder did not exist; a step
    that fails leaves no folder it made behind."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from edgecnn.cli import app

    run = tmp_path / "runs" / "fresh"
    holder = subprocess.Popen([sys.executable, "-c", f"import sys\nfrom edgecnn.run import Run\nwith Run({str(run)!r}).writing():\n"
                               "    print('held', flush=True)\n    sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(app, ["train", "digits", "--out", str(run), "--epochs", "1"])
        assert result.exit_code == 2 and "is being written by another edgecnn command" in result.output, result.output
    finally:
        holder.communicate("", timeout=30)
    assert not (tmp_path / "runs").exists()  # the holder made it, wrote nothing, and removed it
    result = CliRunner().invoke(app, ["export", str(tmp_path / "new")])
    assert result.exit_code == 2 and not (tmp_path / "new").exists()
