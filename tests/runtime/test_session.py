import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.session import PROVIDERS, Session, resolve_provider


def _foreign_model(path, shape=("n", 3)):
    """A metadata-free ONNX model as a user's own tool would write it: y = x * 2."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "g", [x], [y], [two])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_foreign_model_runs_without_metadata(tmp_path):
    session = Session(_foreign_model(tmp_path / "mine.onnx"))
    assert session.card.labels is None and session.card.output == "logits"
    assert session.predict(np.ones((2, 3), np.float32)).tolist() == [[2, 2, 2], [2, 2, 2]]


def test_unknown_and_missing_providers_name_the_alternatives():
    with pytest.raises(EdgecnnError, match=r"unknown provider 'gpu' \(accepted: cpu, cuda, tensorrt"):
        resolve_provider("gpu")
    missing = [n for n, p in PROVIDERS.items() if p.ep not in ort.get_available_providers()]
    assert missing, "this test needs one provider absent from the installed onnxruntime"
    name = missing[0]
    with pytest.raises(EdgecnnError, match=rf"provider '{name}'.*not in this onnxruntime.*available: cpu.*install"):
        resolve_provider(name)


def test_bad_files_give_one_line(tmp_path):
    with pytest.raises(EdgecnnError, match="not found"):
        Session(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not protobuf at all \x00\xff")
    with pytest.raises(EdgecnnError, match="junk.onnx is not an ONNX model"):
        Session(junk)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(EdgecnnError, match=r"empty.onnx is not an ONNX model \(no graph: 0 bytes\)"):
        Session(empty)


def test_input_shape_mismatch_is_explained(digits_run):
    session = Session(digits_run / "model.fp32.onnx")
    with pytest.raises(EdgecnnError, match=r"samples have shape \[3, 8, 8\].*expects \['batch', 1, 8, 8\]"):
        session.predict(np.zeros((2, 3, 8, 8), np.float32))


def test_an_input_too_large_for_memory_is_refused_before_allocating(tmp_path):
    huge = _foreign_model(tmp_path / "huge.onnx", shape=("n", 1, 100_000, 100_000))
    with pytest.raises(EdgecnnError, match=r"a batch of 1 inputs of shape \[1, 100000, 100000\] needs 37.3 GiB; half the memory available here is"):
        Session(huge).random_input(1)


def test_nan_weights_are_named_and_their_outputs_refused(digits_run, tmp_path):
    from onnx import numpy_helper

    from edgecnn.runtime.info import describe_model

    model = onnx.load(str(digits_run / "model.fp32.onnx"))
    weight = next(i for i in model.graph.initializer if len(i.dims) == 4)
    array = numpy_helper.to_array(weight).copy()
    array[0, 0, 0, 0] = np.nan
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    path = tmp_path / "nan.onnx"
    onnx.save(model, str(path))
    assert describe_model(path)["non_finite_weights"] == [weight.name]
    with pytest.raises(EdgecnnError, match=rf"nan.onnx outputs NaN or Inf on \d+ of 4 samples; non-finite weights: {weight.name}"):
        Session(path).predict(np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32))
