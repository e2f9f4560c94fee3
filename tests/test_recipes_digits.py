import json

import numpy as np

from edgecnn.data import load_dataset
from edgecnn.train.nets import build_net, count_params
from recipes import get_recipe


def test_digits_net_has_the_seeds_994_parameters():
    assert count_params(build_net("digits_cnn")) == 994


def test_digits_split_follows_the_seed():
    data = load_dataset("digits")
    assert (len(data.train), len(data.val), len(data.test)) == (1350, 150, 297)
    assert data.train.x.shape[1:] == (1, 8, 8) and data.train.x.dtype == np.float32
    assert 0.0 <= data.test.x.min() and data.test.x.max() <= 1.0  # pixels / 16


def test_digits_recipe_is_json_serializable():
    recipe = get_recipe("digits")
    assert json.loads(json.dumps(recipe.to_json()))["net"] == "digits_cnn"
