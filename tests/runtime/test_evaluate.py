import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from edgecnn.runtime.evaluate import accuracy, confusion_matrix, evaluate_samples, per_class_scores
from edgecnn.runtime.session import Session


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


def test_evaluate_samples_counts_every_prediction(digits_run):
    from edgecnn.data import load_dataset

    test = load_dataset("digits").test
    result = evaluate_samples(Session(digits_run / "model.fp32.onnx"), test.x, test.y, "digits test")
    assert result["variant"] == "fp32" and result["samples"] == 297 and len(result["model_sha256"]) == 64
    assert np.array(result["confusion"]).sum() == 297
    assert np.trace(np.array(result["confusion"])) == round(result["accuracy"] * 297)
    assert result["accuracy"] == pytest.approx(accuracy(digits_run / "model.fp32.onnx", test.x, test.y))
