import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.runtime.agreement import output_agreement
from edgecnn.runtime.card import ModelCard


def test_agreement_counts_flips_near_ties_and_lost_confidence():
    """Four samples: one identical, one confident and kept, one near-tie flipped, one decisive flip."""
    reference = np.log(np.array([[0.7, 0.2, 0.1], [0.9, 0.05, 0.05], [0.41, 0.40, 0.19], [0.8, 0.1, 0.1]]))
    model = np.log(np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.40, 0.41, 0.19], [0.3, 0.6, 0.1]]))
    result = output_agreement(reference, model, ModelCard())
    assert result["samples"] == 4 and result["top1_agreement"] == 0.5 and result["flipped"] == 2
    assert result["decisive_share"] == 0.75 and result["decisive_agreement"] == pytest.approx(2 / 3)
    assert result["flipped_widest_lead"] == pytest.approx(0.7)
    p = np.exp(reference)
    expected_kl = np.mean((p * (reference - model)).sum(axis=1))
    assert result["mean_kl"] == pytest.approx(expected_kl) and result["mean_kl"] > 0
    assert result["reference_top1_probability"] == pytest.approx(np.mean([0.7, 0.9, 0.41, 0.8]))
    assert result["top1_probability"] == pytest.approx(np.mean([0.7, 0.6, 0.41, 0.6]))
    assert result["reference_top1_in_top5"] == 1.0


def test_a_sigmoid_unit_compares_as_two_classes():
    card = ModelCard(output="logits")
    same = output_agreement(np.array([[2.0], [-1.0]]), np.array([[2.0], [-1.0]]), card)
    assert same["top1_agreement"] == 1.0 and same["mean_kl"] == pytest.approx(0.0, abs=1e-12)
    flipped = output_agreement(np.array([[2.0], [-1.0]]), np.array([[-2.0], [-1.0]]), card)
    assert flipped["flipped"] == 1 and flipped["mean_kl"] > 0
    p, q = 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(2.0))  # the unit's probabilities, not a softmax over them
    assert flipped["mean_kl"] == pytest.approx((p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))) / 2)
    assert flipped["reference_top1_probability"] == pytest.approx((p + 1 / (1 + np.exp(-1.0))) / 2)


def test_agree_reports_how_int8_follows_fp32(digits_run):
    runner = CliRunner()
    int8, fp32 = digits_run / "model.int8.onnx", digits_run / "model.fp32.onnx"
    result = runner.invoke(app, ["agree", str(int8), str(fp32), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["samples"] > 100 and data["top1_agreement"] >= 0.97 and 0 < data["mean_kl"] < 0.05
    assert data["reference"] == str(fp32) and "test split" in data["data"]
    itself = json.loads(runner.invoke(app, ["agree", str(fp32), str(fp32), "--json"]).output)
    assert itself["top1_agreement"] == 1.0 and itself["mean_kl"] == pytest.approx(0.0, abs=1e-9) and itself["flipped_widest_lead"] is None
    text = runner.invoke(app, ["agree", str(int8), str(fp32)]).output
    assert "top-1 agreement" in text and "mean KL(reference ‖ model)" in text
