"""Accuracy, confusion matrix and per-class precision/recall/F1 through ONNX Runtime.

Runtime half: numpy only, so a Raspberry Pi can evaluate without torch or scikit-learn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import Split, resolve_split
from edgecnn.runtime import Session, class_predictions


def variant_name(model: Path) -> str:
    """The variant a file name says: model.fp32.onnx → fp32, model.pruned.int8.onnx → pruned.int8."""
    name = Path(model).name.removesuffix(".onnx")
    return name.removeprefix("model.") if name.startswith("model.") else name


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


def accuracy(model: Path, split: Split) -> float:
    """Top-1 accuracy of an ONNX classifier on samples already in memory."""
    session = Session(model, threads=0)
    return float((class_predictions(session.predict(split.x), session.meta.output) == split.y).mean())


def evaluate_model(
    model: Path,
    data: Path | None = None,
    split: str = "test",
    provider: str = "cpu",
    threads: int | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Evaluate an ONNX classifier on labelled data; returns accuracy, confusion and per-class scores."""
    session = Session(model, provider=provider, threads=threads)
    samples, source = resolve_split(data, model, split)
    return evaluate_samples(session, samples, source, batch_size)


def evaluate_samples(session: Session, samples: Split, source: str, batch_size: int = 256) -> dict[str, Any]:
    """Accuracy, confusion and per-class scores of a session on samples already in memory."""
    outputs = session.predict(samples.x, batch_size=batch_size)
    y_pred = class_predictions(outputs, session.meta.output)
    n_classes = max(int(samples.y.max()) + 1, int(y_pred.max()) + 1, len(session.meta.labels or []))
    labels = session.meta.labels or [str(i) for i in range(n_classes)]
    matrix = confusion_matrix(samples.y, y_pred, n_classes)
    return {
        "model": str(session.path),
        "variant": variant_name(session.path),
        "data": source,
        "samples": len(samples),
        "accuracy": float((y_pred == samples.y).mean()),
        "labels": labels,
        "confusion": matrix.tolist(),
        "per_class": per_class_scores(matrix),
        "provider": session.provider.name,
    }
