"""EfficientNet-Lite0 (edgecnn/lite0.py) and its recipes: strict weights, TF padding, ImageNet top-1 in torch and ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from image_folders import write_image_folder

from edgecnn.train.lite0 import Conv2dSame, EfficientNetLite0, imagenet_state_dict, load_imagenet_weights
from edgecnn.train.nets import build_net, count_params

BACKBONE = 3_371_008


def test_every_published_key_matches_name_and_shape():
    published = imagenet_state_dict()
    ours = EfficientNetLite0().state_dict()
    assert list(ours) == list(published)
    assert all(ours[k].shape == v.shape for k, v in published.items())
    net = load_imagenet_weights(build_net("efficientnet_lite0"))  # strict=True inside
    assert torch.equal(net._fc.weight, published["_fc.weight"])
    assert count_params(net) == 4_652_008


def test_tensorflow_same_padding():
    stem = Conv2dSame(3, 32, 3, 2, 224)
    assert stem.same_pad == (0, 1, 0, 1) and stem.padding == (0, 0)  # one more pixel right and bottom
    assert Conv2dSame(144, 144, 5, 2, 56, groups=144).same_pad == (1, 2, 1, 2)
    odd = Conv2dSame(8, 8, 3, 2, 225)
    assert odd.same_pad == (0, 0, 0, 0) and odd.padding == (1, 1)
    assert Conv2dSame(8, 8, 5, 1, 14).padding == (2, 2)
    assert EfficientNetLite0(10)(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_frozen_backbone_trains_only_the_head():
    net = load_imagenet_weights(build_net("efficientnet_lite0_frozen", num_classes=3))
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert count_params(net) - trainable == BACKBONE and trainable == 1280 * 3 + 3
    before = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("_fc.")}
    net.train()
    assert not net._bn0.training and not net._blocks[3]._bn1.training and net._dropout.training
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    loss = net(torch.rand(2, 3, 64, 64)).sum()  # any size runs; 224 is only where the padding is exact
    loss.backward()
    opt.step()
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and batch-norm statistics alike


def _top1(outputs: np.ndarray, labels: list[str]) -> list[str]:
    return [labels[i] for i in outputs.argmax(1)]


def test_lite0_imagenet_says_palace_and_daisy_in_torch_and_onnx(tmp_path):
    from edgecnn.data import load_dataset
    from edgecnn.runtime.session import Session
    from edgecnn.train.export import export_run
    from edgecnn.train.fit import load_trained, train

    run = tmp_path / "lite0"
    summary = train("lite0_imagenet", run, show_progress=False)  # 0 epochs: writes the published weights
    assert summary["params"] == 4_652_008 and summary["epochs"] == 0 and summary["torch_test_accuracy"] == 1.0
    net, recipe = load_trained(run)
    photos = load_dataset(recipe.dataset, **recipe.dataset_options).test
    with torch.no_grad():
        assert _top1(net(torch.from_numpy(photos.x)).numpy(), recipe.labels) == ["palace", "daisy"]
    result = export_run(run)
    assert result["parity_max_abs_diff"] < 1e-4
    # the ONNX file alone: scikit-learn's photos prepared as its metadata says, as the camera does
    from sklearn.datasets import load_sample_image

    from edgecnn.runtime.preprocess import prepare, resolve_preprocess

    session = Session(result["model"])
    spec = resolve_preprocess(session.card.preprocess, session.input_shape, {})
    frames = [load_sample_image(name)[:, :, ::-1] for name in ("china.jpg", "flower.jpg")]  # RGB → BGR, as a camera gives
    x = np.concatenate([prepare(np.ascontiguousarray(f), spec) for f in frames])
    assert _top1(session.predict(x), session.card.labels) == ["palace", "daisy"]


@pytest.mark.slow
def test_lite0_transfer_takes_the_folders_classes_and_keeps_the_backbone(tmp_path):
    from edgecnn.runtime.session import Session
    from edgecnn.train.export import export_run
    from edgecnn.train.fit import load_trained, train

    root = write_image_folder(tmp_path / "pets", {"birds": 3, "cats": 3, "dogs": 3}, size=(64, 64))
    run = tmp_path / "transfer"
    summary = train("lite0_transfer", run, epochs=1, show_progress=False, dataset_options={"data_dir": str(root)})
    assert summary["labels"] == ["birds", "cats", "dogs"] and summary["params"] == BACKBONE + 1280 * 3 + 3
    assert json.loads((run / "recipe.json").read_text())["labels"] == ["birds", "cats", "dogs"]
    net, _ = load_trained(run)
    published = imagenet_state_dict()
    assert all(torch.equal(v, published[k]) for k, v in net.state_dict().items() if not k.startswith("_fc."))
    session = Session(export_run(run)["model"])
    assert session.card.labels == ("birds", "cats", "dogs") and session.card.output == "logits"


@pytest.mark.slow
def test_the_lite0_pipeline_reports_int8_against_fp32_on_unseen_photos(tmp_path):
    """The pipeline compares int8 with fp32 on the photo set's check views and the report says how closely
    it follows; fp32 carries no comparison with itself."""
    from edgecnn.pipeline import run_pipeline

    run = tmp_path / "lite0"
    report = run_pipeline("lite0_imagenet", out=run, batches=[1], runs=3, show_progress=False)
    agreement = json.loads((run / "eval-int8.json").read_text())["agreement"]
    assert agreement["reference"] == str(run / "model.fp32.onnx") and "check views" in agreement["data"]
    assert agreement["samples"] >= 100 and agreement["top1_agreement"] >= 0.85 and 0 < agreement["mean_kl"] < 0.02
    assert "agreement" not in json.loads((run / "eval-fp32.json").read_text())
    from edgecnn.runtime.card import read_card
    from edgecnn.runtime.session import load_onnx

    assert read_card(load_onnx(run / "model.int8.onnx")).quantization.method == "percentile"  # the recipe's calibration
    assert any("int8 against model.fp32.onnx" in n and "photos that did not calibrate it" in n for n in report["notes"])
