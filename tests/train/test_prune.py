import shutil

import pytest
import torch

from edgecnn.errors import EdgecnnError
from edgecnn.train.nets import build_net, count_params, resize_to_state_dict
from edgecnn.train.prune import fitting_round_to, prune_channels, prune_run


@pytest.fixture()
def run_copy(digits_run, tmp_path):
    run = tmp_path / "digits"
    shutil.copytree(digits_run, run)
    return run


def test_structured_pruning_shrinks_the_onnx_graph(run_copy):
    result = prune_run(run_copy, ratio=0.5, finetune_epochs=2, batches=[1], runs=5)
    assert result["channels"] == {"before": [8, 8, 10], "after": [4, 4, 10]}
    assert result["after"]["params"] < result["before"]["params"]
    assert result["macs_reduction"] > 2.5
    assert result["after"]["size_bytes"] < result["before"]["size_bytes"]
    assert (run_copy / "model.pruned.pt").is_file() and (run_copy / "prune-structured.json").is_file()
    from edgecnn.train.export import export_run

    again = export_run(run_copy / "model.pruned.pt", out=run_copy / "again.onnx")  # the pruned weights reload
    assert again["parity_max_abs_diff"] <= 1e-4


def test_magnitude_pruning_compresses_but_keeps_shapes(run_copy):
    result = prune_run(run_copy, method="magnitude", ratio=0.6, finetune_epochs=1, batches=[1], runs=5)
    assert result["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert result["after"]["params"] == result["before"]["params"]
    assert result["after"]["gzip_bytes"] < result["before"]["gzip_bytes"]
    assert "dense" in result["note"]


def test_bad_pruning_requests(run_copy):
    with pytest.raises(EdgecnnError, match="unknown pruning method 'random'"):
        prune_run(run_copy, method="random")
    with pytest.raises(EdgecnnError, match="between 0 and 1"):
        prune_run(run_copy, ratio=1.0)
    with pytest.raises(EdgecnnError, match="removes no channel"):
        prune_channels(build_net("digits_cnn"), (1, 8, 8), 0.5, round_to=16)


def test_round_to_fits_thin_layers():
    assert fitting_round_to(build_net("digits_cnn"), 0.5) == 4


def test_resize_to_state_dict_loads_pruned_weights():
    small = prune_channels(build_net("digits_cnn"), (1, 8, 8), 0.5, round_to=4)
    fresh = resize_to_state_dict(build_net("digits_cnn"), small.state_dict())
    fresh.load_state_dict(small.state_dict())
    assert count_params(fresh) == count_params(small) < 994
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(fresh.eval()(x), small.eval()(x))


def test_a_pruned_model_beyond_the_budget_is_reported_and_not_kept(run_copy):
    """Digits pruned by 0.875 with no fine-tuning loses far more than 0.5 points: nothing is written but the record."""
    result = prune_run(run_copy, ratio=0.875, finetune_epochs=0, batches=[1], runs=5, max_drop=0.5)
    assert not result["kept"] and result["model"] is None and result["tried"][0]["val_drop_points"] > 0.5
    assert "no ratio tried stays within 0.5 points" in result["note"]
    assert not (run_copy / "model.pruned.pt").exists() and not (run_copy / "model.pruned.fp32.onnx").exists()
    assert (run_copy / "prune-structured.json").is_file()


def test_search_keeps_the_largest_ratio_within_the_budget(run_copy):
    """Ratios are tried largest first, one per distinct channel count after rounding; the first within budget is kept."""
    result = prune_run(run_copy, finetune_epochs=0, batches=[1], runs=5, max_drop=60.0, search=True)  # unpruned by fine-tuning: 72, 71, 57 points lost
    ratios = [t["ratio"] for t in result["tried"]]
    assert ratios == sorted(ratios, reverse=True) and len({tuple(t["channels"]) for t in result["tried"]}) == len(ratios)
    assert result["kept"] and result["ratio"] == ratios[-1] and result["tried"][-1]["within_budget"]
    assert all(not t["within_budget"] for t in result["tried"][:-1])
    assert result["trained_epochs"] == 12 and result["finetune_epochs"] == 0
    with pytest.raises(EdgecnnError, match="--search looks for the largest structured ratio within --max-drop"):
        prune_run(run_copy, search=True, force=True)
