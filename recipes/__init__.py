"""Recipes: one file per trained model, each a `Recipe` registered by name.

A recipe names its net, dataset, input and training settings; every default carries its reason.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.card import Preprocess


@dataclass(frozen=True)
class Recipe:
    name: str
    net: str
    dataset: str
    input_shape: tuple[int, ...]  # one sample, channels first
    labels: list[str]  # empty: the dataset's class names (a recipe for any image folder)
    preprocess: Preprocess  # written into the model card for runtimes and the camera
    epochs: int
    batch_size: int
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "onecycle"  # or "constant"
    label_smoothing: float = 0.0
    shift_pixels: int = 0  # augmentation: shift a batch by up to this many pixels, zero fill
    shift_probability: float = 0.0  # share of batches shifted
    augment: str = ""  # a batch augmentation from edgecnn.augment.AUGMENTS, applied to every training batch
    pretrained: str = ""  # published weights the net starts from (edgecnn.nets.PRETRAINED); epochs=0 keeps them as they are
    ema_decay: float = 0.0  # keep an exponential moving average of the weights (0: off)
    seed: int = 0
    output: str = "logits"  # or "sigmoid" for a single-unit binary head
    dataset_options: dict[str, Any] = field(default_factory=dict)
    int8_method: str = "minmax"  # the calibration quantize and quantize-search start from on its runs (minmax, entropy, percentile)
    reference: str = ""  # what the seed document reached, for the reader
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "input_shape": list(self.input_shape), "preprocess": self.preprocess.to_dict()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipe:
        """A recipe as recipe.json records it (the training summary's other keys are not the recipe's)."""
        known = {f.name for f in fields(cls)}
        recipe = {k: v for k, v in data.items() if k in known}
        return cls(**{**recipe, "input_shape": tuple(recipe["input_shape"]), "preprocess": Preprocess.from_dict(recipe["preprocess"])})


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is registered twice")
    RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    """A registered recipe by name, or one line listing the known ones."""
    _load_all()
    if name not in RECIPES:
        raise EdgecnnError(f"unknown recipe {name!r} (accepted: {', '.join(sorted(RECIPES))})")
    return RECIPES[name]


def list_recipes() -> list[Recipe]:
    _load_all()
    return [RECIPES[k] for k in sorted(RECIPES)]


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
