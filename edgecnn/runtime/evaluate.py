"""Accuracy, confusion matrix and per-class precision/recall/F1 through ONNX Runtime.

Runtime half: numpy only, so a Raspberry Pi can evaluate without torch or scikit-learn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.run import file_digest, variant_name
from edgecnn.runtime.openvino import open_session
from edgecnn.runtime.session import Session


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted, as in the seed notebook."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def per_class_scores(matrix: np.ndarray) -> dict[str, list[float]]:
    """Precision, recall, F1 and support per class (0 where undefined, as scikit-learn reports)."""
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.astype(int).tolist(),
    }


def accuracy(model: Path, x: np.ndarray, y: np.ndarray, runtime: str = "onnxruntime") -> float:
    """Top-1 accuracy of an ONNX classifier on samples already in memory, on the CPU of `runtime`."""
    session = open_session(model, runtime, threads=0)
    return float((session.card.predictions(session.predict(x)) == y).mean())


def evaluate_samples(session: Session, x: np.ndarray, y: np.ndarray, source: str, batch_size: int = 256) -> dict[str, Any]:
    """Accuracy, confusion and per-class scores of a session on samples already in memory."""
    outputs = session.predict(x, batch_size=batch_size)
    y_pred = session.card.predictions(outputs)
    n_classes = max(int(y.max()) + 1, int(y_pred.max()) + 1, len(session.card.labels or []))
    labels = list(session.card.labels or [str(i) for i in range(n_classes)])
    matrix = confusion_matrix(y, y_pred, n_classes)
    return {
        "model": str(session.path),
        "model_sha256": file_digest(session.path),
        "variant": variant_name(session.path),
        "data": source,
        "samples": len(y),
        "accuracy": float((y_pred == y).mean()),
        "labels": labels,
        "confusion": matrix.tolist(),
        "per_class": per_class_scores(matrix),
        "provider": session.provider.name,
    }
