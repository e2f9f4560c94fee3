import json
import math

import numpy as np
import pytest
import torch

from edgecnn.data import Dataset, Split, load_run_dataset
from edgecnn.measure import evaluate_model
from edgecnn.quantize.model import quantize_model
from edgecnn.train.export import export_onnx, export_run
from edgecnn.train.fit import train
from edgecnn.train.nets import build_net, count_params
from recipes import get_recipe, list_recipes

# the documents' parameter counts (model.summary() totals; seq1d: seed 002's net on 1 channel, 10 classes)
DOCUMENT_PARAMS = {
    "digits": 994,
    "mnist_dense": 101_770,
    "mnist_cnn": 515_146,
    "convnet": 93_322,
    "fashion_dense": 101_770,
    "fashion_cnn": 93_322,
    "seq1d": 87_882,
}
# (optimizer, epochs, batch) as the documents train them
DOCUMENT_SETTINGS = {
    "mnist_dense": ("adam", 5, 32),
    "mnist_cnn": ("adam", 20, 32),
    "convnet": ("rmsprop", 5, 64),
    "fashion_dense": ("adam", 5, 32),
    "fashion_cnn": ("rmsprop", 5, 64),
    "seq1d": ("rmsprop", 10, 16),
}


def _net(recipe):
    return build_net(recipe.net, num_classes=len(recipe.labels))


@pytest.mark.parametrize("name", sorted(DOCUMENT_PARAMS))
def test_recipe_builds_with_the_documents_parameter_count(name):
    recipe = get_recipe(name)
    net = _net(recipe).eval()
    assert count_params(net) == DOCUMENT_PARAMS[name]
    assert net(torch.zeros(3, *recipe.input_shape)).shape == (3, len(recipe.labels))
    assert json.loads(json.dumps(recipe.to_json()))["name"] == name


def test_every_registered_recipe_is_covered():
    assert {r.name for r in list_recipes()} >= set(DOCUMENT_PARAMS)


@pytest.mark.parametrize("name", sorted(DOCUMENT_SETTINGS))
def test_recipe_trains_as_its_document_does(name):
    recipe = get_recipe(name)
    assert (recipe.optimizer, recipe.epochs, recipe.batch_size) == DOCUMENT_SETTINGS[name]
    assert recipe.schedule == "constant" and recipe.lr == 1e-3 and recipe.label_smoothing == 0.0  # Keras defaults
    assert recipe.reference


def test_seq1d_is_a_sequence_model():
    recipe = get_recipe("seq1d")
    assert recipe.dataset == "mnist1d" and recipe.input_shape == (1, 40)
    assert recipe.preprocess.layout == "NCL"


def _random_dataset(shape: tuple[int, ...], n: int = 48, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    split = lambda k: Split(rng.random((k, *shape), dtype=np.float32), rng.integers(0, 10, k))  # noqa: E731
    return Dataset(split(n), split(16), split(16), [str(i) for i in range(10)], "generated for a test")


@pytest.mark.parametrize("name", sorted(DOCUMENT_SETTINGS))
def test_one_short_epoch_trains_and_writes_the_run(name, tmp_path):
    recipe = get_recipe(name)
    result = train(name, tmp_path / name, epochs=1, dataset=_random_dataset(recipe.input_shape), show_progress=False)
    assert result["params"] == DOCUMENT_PARAMS[name] and result["dataset_source"] == "generated for a test"
    history = json.loads((tmp_path / name / "history.json").read_text())
    assert len(history) == 1 and math.isfinite(history[0]["loss"])
    assert (tmp_path / name / "model.pt").is_file()


def test_data_dir_is_recorded_so_every_later_step_reads_the_same_data(mnist_like_dir, tmp_path):
    run = tmp_path / "convnet"
    result = train("convnet", run, epochs=4, show_progress=False, dataset_options={"data_dir": str(mnist_like_dir)})
    assert result["dataset_options"] == {"data_dir": str(mnist_like_dir)}
    assert result["samples"] == {"train": 180, "val": 20, "test": 50}
    assert str(mnist_like_dir) in load_run_dataset(run).source
    export_run(run)
    quantize_model(run / "model.fp32.onnx", calib=run, samples=64)
    for variant in ("fp32", "int8"):
        evaluation = evaluate_model(run / f"model.{variant}.onnx")
        assert evaluation["samples"] == 50 and str(mnist_like_dir) in evaluation["data"]
    assert evaluate_model(run / "model.fp32.onnx")["accuracy"] > 0.5  # the bars are easy to tell apart


def test_seq1d_exports_and_quantizes_its_1d_convolutions(tmp_path):
    recipe = get_recipe("seq1d")
    data = _random_dataset(recipe.input_shape, n=64)
    train("seq1d", tmp_path / "run", epochs=1, dataset=data, show_progress=False)
    net = _net(recipe)
    net.load_state_dict(torch.load(tmp_path / "run" / "model.pt", weights_only=True))
    fp32 = tmp_path / "seq1d.fp32.onnx"
    exported = export_onnx(net, recipe, fp32, data.test.x)
    assert exported["parity_max_abs_diff"] < 1e-4
    npz = tmp_path / "test.npz"
    np.savez(npz, x=data.test.x, y=data.test.y)
    int8 = quantize_model(fp32, calib=npz, out=tmp_path / "seq1d.int8.onnx").model
    result = evaluate_model(int8, npz)
    assert result["samples"] == 16 and 0.0 <= result["accuracy"] <= 1.0
