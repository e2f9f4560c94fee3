"""Fixtures for the quantization tests: in-code nets, no torch."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx_nets import Block, cnn, save_with_data


@pytest.fixture
def small_net(tmp_path) -> tuple[Path, Path]:
    """A 1-channel 16×16 conv net and its data: fast to quantize, too small for int8 to pay."""
    return save_with_data(cnn((1, 16, 16), (Block(8, pool=2), Block(8)), classes=10), tmp_path)
