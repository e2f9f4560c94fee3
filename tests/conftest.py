"""Shared fixtures: one small digits run, trained once per test session on real data."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A digits run folder with model.pt, model.fp32.onnx and model.int8.onnx (a few epochs)."""
    from edgecnn.export import export_run
    from edgecnn.quantize import quantize_model
    from edgecnn.train import train

    run = tmp_path_factory.mktemp("runs") / "digits"
    train("digits", run, epochs=12, show_progress=False)
    export_run(run)
    quantize_model(run / "model.fp32.onnx", calib=run, samples=128)
    return run
