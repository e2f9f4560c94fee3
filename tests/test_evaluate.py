import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from edgecnn.errors import EdgecnnError
from edgecnn.evaluate import confusion_matrix, evaluate_model, per_class_scores, variant_name


def test_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 5, 300))
    y_pred[y_pred == 4] = 3  # class 4 never predicted: precision is undefined, reported as 0
    matrix = confusion_matrix(y_true, y_pred, 5)
    assert (matrix == sk_confusion(y_true, y_pred, labels=range(5))).all()
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(5), zero_division=0)
    ours = per_class_scores(matrix)
    np.testing.assert_allclose(ours["precision"], p)
    np.testing.assert_allclose(ours["recall"], r)
    np.testing.assert_allclose(ours["f1"], f)
    assert ours["support"] == s.tolist()


def test_evaluate_run_model_on_its_test_split(digits_run):
    result = evaluate_model(digits_run / "model.fp32.onnx")
    assert result["variant"] == "fp32" and result["samples"] == 297
    assert result["accuracy"] > 0.85  # 12 epochs; the full recipe reaches the seed's 95.96%
    assert np.trace(np.array(result["confusion"])) == round(result["accuracy"] * 297)


def test_evaluate_npz_and_bad_data(digits_run, tmp_path):
    from edgecnn.data import load_dataset

    test = load_dataset("digits").test
    npz = tmp_path / "d.npz"
    np.savez(npz, x=test.x[:50], y=test.y[:50])
    assert evaluate_model(digits_run / "model.int8.onnx", npz)["samples"] == 50
    np.savez(tmp_path / "nolabels.npz", x=test.x[:5])
    with pytest.raises(EdgecnnError, match="lacks arrays \\['y'\\]"):
        evaluate_model(digits_run / "model.int8.onnx", tmp_path / "nolabels.npz")
    with pytest.raises(EdgecnnError, match="unknown split 'dev'"):
        evaluate_model(digits_run / "model.int8.onnx", split="dev")


def test_variant_names():
    assert variant_name("runs/d/model.fp32.onnx") == "fp32"
    assert variant_name("runs/d/model.pruned.int8.onnx") == "pruned.int8"
    assert variant_name("resnet.onnx") == "resnet"
