import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.card import ModelCard, Preprocess, Quantization, SessionNeeds, read_card, write_card


def _model() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    return helper.make_model(graph)


def test_a_card_survives_the_round_trip_and_other_tools_keys_stay():
    card = ModelCard(
        labels=("cat", "dog"), preprocess=Preprocess(size=(150, 150), resize="stretch"), output="sigmoid", recipe="catsdogs",
        version="0.2.0", export_parity=1.5e-6,
        quantization=Quantization("qdq", True, "minmax", "u8s8", False, False, False, ("s2d-stem",), ("a",), "digits (train split)", 128),
        session_options=SessionNeeds(disabled_optimizers=("QDQPropagationTransformer",)),
    )
    model = _model()
    model.metadata_props.add(key="author", value="someone else")
    write_card(model, card)
    assert read_card(model) == card
    assert {p.key: p.value for p in model.metadata_props}["author"] == "someone else"
    write_card(model, ModelCard())
    assert [p.key for p in model.metadata_props] == ["author", "edgecnn.task", "edgecnn.output"]


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("edgecnn.lables", '["a"]', r"'edgecnn.lables' is not known \(accepted: edgecnn.labels, edgecnn.preprocess"),
        ("edgecnn.preprocess", json.dumps({"size": [8, 8], "colour": "gray"}), r"preprocess has unknown key\(s\) 'colour' \(accepted: size, color"),
        ("edgecnn.preprocess", json.dumps({"size": [8, 8], "color": "grey"}), r"preprocess color 'grey' is not accepted \(accepted: gray, rgb\)"),
        ("edgecnn.preprocess", json.dumps({"color": "gray"}), "lacks 'size'"),
        ("edgecnn.output", "softmax", r"output 'softmax' is not accepted \(accepted: logits, probabilities, sigmoid\)"),
        ("edgecnn.labels", '{"0": "a"}', "must be a JSON list of class names"),
        ("edgecnn.labels", "[a", "is not valid JSON"),
        ("edgecnn.export_parity", "tiny", "is not a number"),
        ("edgecnn.quantization", json.dumps({"format": "qdq", "float_stem": True}), r"unknown key\(s\) 'float_stem'"),
        ("edgecnn.session_options", json.dumps({"disabled": []}), r"session_options has unknown key\(s\) 'disabled'"),
    ],
)
def test_unknown_keys_and_bad_values_are_refused_in_one_line(key, value, message):
    with pytest.raises(EdgecnnError, match=message):
        ModelCard.from_props({key: value})


def test_output_kinds_decide_predictions_and_probabilities():
    logits, sigmoid, probs = ModelCard(output="logits"), ModelCard(output="sigmoid"), ModelCard(output="probabilities")
    assert logits.predictions(np.array([[0.1, 2.0], [3.0, -1.0]])).tolist() == [1, 0]
    assert logits.predictions(np.array([[0.3], [-0.2]])).tolist() == [1, 0]  # one logit: its sign
    assert sigmoid.predictions(np.array([[0.7], [0.2]])).tolist() == [1, 0]  # one probability: 0.5
    np.testing.assert_allclose(logits.probabilities(np.array([0.0, np.log(3.0)])), [0.25, 0.75])
    np.testing.assert_allclose(sigmoid.probabilities(np.array([0.8])), [0.2, 0.8])
    np.testing.assert_allclose(logits.probabilities(np.array([0.0])), [0.5, 0.5])
    np.testing.assert_allclose(probs.probabilities(np.array([0.1, 0.9])), [0.1, 0.9])


def test_preprocess_checks_its_fields():
    assert Preprocess.from_dict({"size": [28, 28], "mean": [0.5]}).mean == (0.5,)
    assert Preprocess(size=(40,), layout="NCL", color="gray").size == (40,)
    with pytest.raises(EdgecnnError, match="size must be 2 positive integer"):
        Preprocess(size=(40,))
    with pytest.raises(EdgecnnError, match="mean needs 1 or 3 values for rgb"):
        Preprocess(size=(8, 8), mean=(0.1, 0.2))
    with pytest.raises(EdgecnnError, match="std must not contain 0"):
        Preprocess(size=(8, 8), std=(0.0,))
