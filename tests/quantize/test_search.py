import json
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from onnx_nets import Block, cnn, save_with_data

from edgecnn.errors import EdgecnnError
from edgecnn.quantize.model import QuantConfig
from edgecnn.quantize.search import SPEED_TIE, Trial, _reason, auto_quantize, candidate_configs, choose
from edgecnn.run import decision_path
from edgecnn.runtime.card import read_card
from edgecnn.runtime.targets import TARGETS


def test_a_budget_int8_cannot_meet_keeps_fp32_and_leaves_the_users_int8_alone(tmp_path):
    """Two classes whose dense rows differ by 1e-6 (and biases not at all): any int8 layer flips predictions, so no configuration
    stays within a 0-point budget, and leaving every conv and dense layer in float is no int8 model.
    fp32 is kept; an int8 file already there (the user's) is neither deleted nor replaced."""
    model = cnn((1, 16, 16), (Block(4, pool=2), Block(4)), classes=2)
    dense = next(i for i in model.graph.initializer if i.name == "gemm_w")
    rows = onnx.numpy_helper.to_array(dense).copy()
    rows[1] = rows[0] + 1e-6 * np.random.default_rng(0).standard_normal(rows.shape[1])
    dense.CopyFrom(onnx.numpy_helper.from_array(rows.astype(np.float32), "gemm_w"))
    bias = next(i for i in model.graph.initializer if i.name == "gemm_b")
    bias.CopyFrom(onnx.numpy_helper.from_array(np.zeros(2, np.float32), "gemm_b"))
    fp32, data = save_with_data(model, tmp_path)
    users = tmp_path / "net.int8.onnx"
    users.write_bytes(b"the user's own file")
    decision = auto_quantize(fp32, data, max_drop=0, batches=[1], runs=10, force=True)
    assert decision["kept"] == str(fp32) and decision["kept_variant"] == "fp32" and decision["kept_passes"] == []
    assert decision["reason"] == "no int8 configuration stays within 0 accuracy points; fp32 kept"
    assert decision["left_alone"] == str(users) and users.read_bytes() == b"the user's own file"
    assert decision["layer_ranking"] and all(t["drop_points"] > 0 for t in decision["trials"])
    saved = json.loads(decision_path(users).read_text())
    assert not any(t["chosen"] for t in saved["trials"])


def test_a_wide_net_keeps_the_fastest_int8_that_beats_fp32_at_every_batch(tmp_path):
    """64 channels: int8 convs run several times faster; the kept model is the one choose() picks, in budget."""
    fp32, data = save_with_data(cnn((1, 24, 24), (Block(64, pool=2), Block(64)), classes=10), tmp_path, samples=64)
    decision = auto_quantize(fp32, data, max_drop=25, batches=[1, 8], runs=30)
    kept = tmp_path / "net.int8.onnx"
    assert decision["kept"] == str(kept) and kept.is_file() and decision["left_alone"] is None
    chosen = [t for t in decision["trials"] if t["chosen"]]
    assert len(chosen) == 1 and chosen[0]["config"] == decision["kept_variant"] and chosen[0]["within_budget"]
    assert min(chosen[0]["speedup"].values()) > 1.0 and set(chosen[0]["speedup"]) == {1, 8}
    assert "val" not in decision["calibration"] or decision["validation"] == str(data)  # an .npz serves both
    assert read_card(onnx.load(str(kept))).quantization.passes == tuple(decision["kept_passes"])
    assert {t["config"] for t in decision["trials"]} >= {"qdq/u8s8/pc/minmax/gptq", "qdq/s8s8/pc/minmax/gptq", "qdq/u8s8/pc/minmax/gptq+s2d-stem"}


def test_search_refuses_before_any_work(digits_run, tmp_path):
    with pytest.raises(EdgecnnError, match="--max-drop must be ≥ 0"):
        auto_quantize(digits_run / "model.fp32.onnx", max_drop=-1)
    with pytest.raises(EdgecnnError, match="--force"):  # the session run's int8 exists
        auto_quantize(digits_run / "model.fp32.onnx")


def test_candidates_are_the_defaults_and_every_fitting_pass_set():
    labels = [c.label() for c in candidate_configs(cnn((1, 16, 16), (Block(8, pool=2), Block(8)), classes=10), TARGETS["host"])]
    assert labels[:2] == ["qdq/u8s8/pc/minmax/gptq", "qdq/s8s8/pc/minmax/gptq"]
    assert {"qdq/u8s8/pc/minmax/gptq+float-stem+float-pool", "qdq/u8s8/pc/minmax/gptq+s2d-stem+float-head"} <= set(labels)
    assert not any("pad-input" in label for label in labels)


def _trial(name: str, speedups: tuple[float, float], size: int) -> Trial:
    trial = Trial(QuantConfig(), None, 0.9, 0.0, True, size, speedup=dict(zip((1, 64), speedups)))
    trial.score = float(np.sqrt(np.prod(speedups)))
    trial.name = name
    return trial


def test_choose_keeps_a_clearly_smaller_file_when_speeds_tie():
    small, big, slow = _trial("s2d", (1.30, 2.05), 100), _trial("s2d+fhead", (1.31, 2.06), 200), _trial("plain", (1.02, 1.10), 50)
    assert choose([small, big, slow]) is small  # 0.6% apart: noise, so the file half the size
    alike = _trial("stem+pool", (1.29, 2.05), 198)
    assert choose([alike, big]) is big  # 1% smaller is no reason: the fastest stays
    faster_big = _trial("s2d+fhead", (1.40, 2.30), 200)
    assert faster_big.score > (1 + SPEED_TIE) * small.score and choose([small, faster_big]) is faster_big
    assert choose([_trial("int8", (0.97, 1.8), 10)]) is None  # slower than fp32 at batch 1: never kept
    ahead_but_slower_at_b1 = _trial("int8", (0.97, 3.0), 10)
    reason = _reason(choose([small, ahead_but_slower_at_b1]), [small, ahead_but_slower_at_b1], 0.5)
    assert reason.startswith("qdq/u8s8/pc/minmax/gptq is the fastest int8")  # the b1 loser is no rival


def test_candidates_follow_what_the_provider_runs():
    """The s2d stem writes ORT CPU-only ops: no GPU candidate has it; TensorRT gets symmetric S8S8 QDQ only."""
    model = cnn((1, 16, 16), (Block(8, pool=2), Block(8)), classes=10)
    cuda = [c.label() for c in candidate_configs(model, TARGETS["cuda"])]
    assert "qdq/u8s8/pc/minmax/gptq" in cuda and not any("s2d-stem" in label for label in cuda)
    tensorrt = candidate_configs(model, TARGETS["tensorrt"])
    assert tensorrt and all(c.types == "s8s8" and c.symmetric and "s2d-stem" not in c.passes for c in tensorrt)
    assert tensorrt[0].label() == "qdq/s8s8/pc/minmax/sym/gptq"


def test_a_device_target_is_decided_on_the_devices_own_timings(tmp_path):
    """pi4: candidates written for the device, timed there (here: `bench --json` on them), read back by
    SHA-256; a candidate whose emulated parity fails is not kept; the card records the target."""
    from edgecnn.runtime.bench import bench_models

    fp32, data = save_with_data(cnn((1, 24, 24), (Block(64, pool=2), Block(64)), classes=10), tmp_path, samples=64)
    with pytest.raises(EdgecnnError, match="target pi4 is timed on the device itself"):
        auto_quantize(fp32, data, max_drop=25, target="pi4")
    folder = tmp_path / "candidates"
    written = auto_quantize(fp32, data, max_drop=25, target="pi4", candidates=folder)["candidates"]
    assert len(written) >= 3 and not any("float-pool" in Path(p).name for p in written)
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps(bench_models([Path(p) for p in written], batches=[1, 8], runs=10)))
    refused = []

    def parity(model: Path) -> str | None:
        if not refused:
            refused.append(model)
            return "top-1 agreement 99.0%"
        return None

    decision = auto_quantize(fp32, data, max_drop=25, target="pi4", batches=[1, 8], timings=timings, parity=parity)
    assert decision["target"] == "pi4" and decision["timed"].startswith("on the device") and len(decision["parity_failures"]) == 1
    if decision["kept_variant"] != "fp32":
        card = read_card(onnx.load(decision["kept"]))
        assert card.quantization.kept_for == "pi4" and "pi4" in card.quantization.targets
    with pytest.raises(EdgecnnError, match="the timings lack"):
        timings.write_text(json.dumps({"results": []}))
        auto_quantize(fp32, data, max_drop=25, target="pi4", batches=[1, 8], timings=timings, parity=parity, force=True)


def test_the_ort_target_times_as_a_plain_session_loads(tmp_path):
    fp32, data = save_with_data(cnn((1, 24, 24), (Block(64, pool=2), Block(64)), classes=10), tmp_path, samples=64)
    decision = auto_quantize(fp32, data, max_drop=25, batches=[1], runs=20)
    assert decision["target"] == "ort" and decision["timed"] == "as any ONNX Runtime program loads it"
    assert not any("float-pool" in t["config"] for t in decision["trials"])
