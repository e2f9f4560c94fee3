"""Seed 003's cats-vs-dogs recipes: the net, and train → export on a tiny generated image folder."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from image_folders import write_image_folder
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.train.nets import build_net, count_params, summarize
from recipes import get_recipe


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """4 cats and 4 dogs (red and blue disks), one unreadable file among the cats."""
    return write_image_folder(tmp_path_factory.mktemp("data") / "pets", {"cats": 4, "dogs": 4}, corrupt={"cats": 1}, size=(120, 160))


def test_catsdogs_net_is_the_seeds():
    net = build_net("catsdogs_cnn")
    assert count_params(net) == 4_894_913
    assert net(torch.zeros(2, 3, 150, 150)).shape == (2, 1)
    shapes = [layer["output_shape"] for layer in summarize(net, (3, 150, 150))["layers"] if layer["type"] == "MaxPool2d"]
    assert shapes == [[None, 32, 74, 74], [None, 64, 36, 36], [None, 128, 17, 17]]


def test_catsdogs_aug_is_catsdogs_with_the_seeds_augmentation():
    plain, aug = asdict(get_recipe("catsdogs")), asdict(get_recipe("catsdogs_aug"))
    assert aug["augment"] == "shift_shear_zoom" and plain["augment"] == ""
    assert {k for k in plain if plain[k] != aug[k]} == {"name", "augment", "reference", "notes"}
    assert plain["output"] == "sigmoid" and plain["labels"] == ["cats", "dogs"] and plain["input_shape"] == (3, 150, 150)


def test_catsdogs_without_data_dir_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["train", "catsdogs", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "--data-dir" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_catsdogs_trains_and_exports_a_probability(tmp_path, pets):
    from edgecnn.measure import evaluate_model
    from edgecnn.runtime.session import Session
    from edgecnn.train.export import export_run

    run = tmp_path / "catsdogs"
    result = CliRunner().invoke(app, ["train", "catsdogs", "--data-dir", str(pets), "--epochs", "1", "--out", str(run), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "recipe.json").read_text())
    assert summary["params"] == 4_894_913 and summary["samples"] == {"train": 6, "val": 2, "test": 2}
    assert summary["dataset_options"]["data_dir"] == str(pets) and "1 unreadable image(s) skipped" in summary["dataset_source"]
    exported = export_run(run)
    assert exported["output"] == "probability"
    session = Session(exported["model"])
    assert session.card.output == "sigmoid" and session.card.labels == ("cats", "dogs")
    assert session.card.preprocess.size == (150, 150)
    p = session.predict(np.random.default_rng(0).random((3, 3, 150, 150), dtype=np.float32))
    assert p.shape == (3, 1) and ((0 <= p) & (p <= 1)).all()
    assert evaluate_model(exported["model"], run)["samples"] == 2


@pytest.mark.slow
def test_catsdogs_aug_training_repeats_under_the_seed(tmp_path, pets):
    from edgecnn.train.fit import train

    weights = []
    for name in ("a", "b"):
        train("catsdogs_aug", tmp_path / name, epochs=1, show_progress=False, dataset_options={"data_dir": str(pets)})
        weights.append(torch.load(tmp_path / name / "model.pt", weights_only=True))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
