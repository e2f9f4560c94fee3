import numpy as np
import onnx
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.card import read_card
from edgecnn.runtime.session import Session
from edgecnn.train.export import OPSET, export_run


def test_exported_model_is_checked_self_describing_and_batch_dynamic(digits_run):
    model = onnx.load(str(digits_run / "model.fp32.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == OPSET
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    card = read_card(model)
    assert card.labels == tuple(str(i) for i in range(10))
    assert card.preprocess.size == (8, 8) and card.preprocess.resize == "digit" and card.preprocess.invert
    assert card.output == "logits" and card.recipe == "digits" and card.quantization is None
    assert card.export_parity <= 1e-4


def test_exported_model_matches_torch_at_any_batch(digits_run):
    import torch

    from edgecnn.train.fit import load_trained

    net, _ = load_trained(digits_run)
    x = np.random.default_rng(0).random((7, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = Session(digits_run / "model.fp32.onnx").predict(x)
    assert np.max(np.abs(got - expected)) <= 1e-4


def test_export_refuses_overwrite_and_missing_weights(digits_run, tmp_path):
    with pytest.raises(EdgecnnError, match="--force"):
        export_run(digits_run)
    with pytest.raises(EdgecnnError, match="not found"):
        export_run(tmp_path / "nothing-here")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgecnnError, match="model.pt not found"):
        export_run(empty)
