"""The model card: what an ONNX file carries in `metadata_props` so that a runtime needs nothing else.

One typed record, read and written here only. Keys under `edgecnn.` that the card does not know,
and values of the wrong kind, are refused in one line; other tools' keys are left alone. What an
output kind means (logits, probabilities, a sigmoid unit) is decided here too.
Runtime half: onnx and numpy only.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import numpy as np
import onnx

from edgecnn.errors import EdgecnnError

PREFIX = "edgecnn."
OUTPUT_KINDS = ("logits", "probabilities", "sigmoid")
TASKS = ("classification",)
COLORS = ("gray", "rgb")
RESIZE_RULES = ("center_crop", "stretch", "digit")
LAYOUTS = ("NCHW", "NHWC", "NCL")


def _refuse_unknown(what: str, data: Any, cls: type) -> dict[str, Any]:
    """`data` as a dict whose keys are all fields of `cls`, or one line naming the stray keys."""
    if not isinstance(data, dict):
        raise EdgecnnError(f"model card {what} must be a JSON object, got {type(data).__name__}")
    accepted = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(accepted))
    if unknown:
        raise EdgecnnError(f"model card {what} has unknown key(s) {', '.join(map(repr, unknown))} (accepted: {', '.join(accepted)})")
    return data


def _check_choice(what: str, value: Any, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise EdgecnnError(f"{what} {value!r} is not accepted (accepted: {', '.join(accepted)})")


@dataclass(frozen=True)
class Preprocess:
    """How one frame becomes one input sample (`edgecnn.preprocess`)."""

    size: tuple[int, ...]  # height, width (a sequence model: its length)
    color: str = "rgb"
    resize: str = "center_crop"
    crop_pct: float = 0.875  # center_crop: the crop is this share of the resized shorter side (ImageNet eval)
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    invert: bool = False  # dark ink on paper becomes bright ink on black, as digit datasets are
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        for name in ("size", "mean", "std"):  # JSON gives lists; the record holds tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_choice("preprocess color", self.color, COLORS)
        _check_choice("preprocess resize", self.resize, RESIZE_RULES)
        _check_choice("preprocess layout", self.layout, LAYOUTS)
        want = 1 if self.layout == "NCL" else 2
        if len(self.size) != want or not all(isinstance(d, int) and d >= 1 for d in self.size):
            raise EdgecnnError(f"preprocess size must be {want} positive integer(s) for layout {self.layout}, got {list(self.size)}")
        if not 0 < self.crop_pct <= 1:
            raise EdgecnnError(f"preprocess crop_pct must be in (0, 1], got {self.crop_pct}")
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, self.channels):
                raise EdgecnnError(f"preprocess {name} needs 1 or {self.channels} values for {self.color}, got {list(getattr(self, name))}")
        if 0 in self.std:
            raise EdgecnnError("preprocess std must not contain 0")

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocess":
        data = _refuse_unknown("preprocess", data, cls)
        if "size" not in data:
            raise EdgecnnError("model card preprocess lacks 'size'")
        try:
            return cls(**data)
        except TypeError as exc:
            raise EdgecnnError(f"model card preprocess is malformed ({exc})") from None

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Quantization:
    """How an int8 model was made (`edgecnn.quantization`): settings, graph passes, nodes left float."""

    format: str
    per_channel: bool
    method: str
    types: str
    reduce_range: bool
    dynamic: bool
    symmetric: bool
    passes: tuple[str, ...]
    excluded_nodes: tuple[str, ...]
    calibration: str | None
    samples: int
    targets: tuple[str, ...] = ()  # where its passes run at the speed they were chosen for
    kept_for: str | None = None  # the target quantize-search timed it on and kept it for
    rounding: str = "nearest"  # how weights became integers: nearest, or gptq (edgecnn.quantize.rounding)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Quantization":
        data = _refuse_unknown("quantization", data, cls)
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
        if missing:
            raise EdgecnnError(f"model card quantization lacks {', '.join(missing)}")
        return cls(**{**data, "passes": tuple(data["passes"]), "excluded_nodes": tuple(data["excluded_nodes"]), "targets": tuple(data.get("targets", ()))})


@dataclass(frozen=True)
class SessionNeeds:
    """Session options a model's speed depends on (`edgecnn.session_options`); edgecnn applies them."""

    disabled_optimizers: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SessionNeeds":
        data = _refuse_unknown("session_options", data, cls)
        return cls(disabled_optimizers=tuple(data.get("disabled_optimizers", ())))


_JSON_RECORDS = {"preprocess": Preprocess, "quantization": Quantization, "session_options": SessionNeeds}


@dataclass(frozen=True)
class ModelCard:
    """Everything edgecnn reads from or writes into an ONNX file's metadata."""

    labels: tuple[str, ...] | None = None
    preprocess: Preprocess | None = None
    task: str = "classification"
    output: str = "logits"
    recipe: str | None = None
    version: str | None = None
    export_parity: float | None = None
    quantization: Quantization | None = None
    session_options: SessionNeeds = field(default_factory=SessionNeeds)

    def __post_init__(self) -> None:
        _check_choice(f"model card {PREFIX}output", self.output, OUTPUT_KINDS)
        _check_choice(f"model card {PREFIX}task", self.task, TASKS)
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelCard":
        """The card from metadata_props; keys outside `edgecnn.` belong to other tools and are ignored."""
        accepted = [f.name for f in fields(cls)]
        values: dict[str, Any] = {}
        for key, text in props.items():
            if not key.startswith(PREFIX):
                continue
            name = key.removeprefix(PREFIX)
            if name not in accepted:
                raise EdgecnnError(f"model card key {key!r} is not known (accepted: {', '.join(PREFIX + a for a in accepted)})")
            values[name] = _parse(key, name, text)
        return cls(**values)

    def to_props(self) -> dict[str, str]:
        props = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name == "session_options" and value == SessionNeeds()):
                continue
            if f.name == "preprocess":
                props[PREFIX + f.name] = json.dumps(value.to_dict())
            elif f.name in _JSON_RECORDS or f.name == "labels":
                props[PREFIX + f.name] = json.dumps(asdict(value) if f.name in _JSON_RECORDS else list(value))
            elif f.name == "export_parity":
                props[PREFIX + f.name] = f"{value:.3e}"
            else:
                props[PREFIX + f.name] = str(value)
        return props

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """Class indices from a batch of raw outputs: argmax, or a threshold on a single unit."""
        if outputs.ndim == 2 and outputs.shape[1] == 1:
            threshold = 0.0 if self.output == "logits" else 0.5
            return (outputs[:, 0] > threshold).astype(np.int64)
        return outputs.reshape(len(outputs), -1).argmax(axis=1)

    def probabilities(self, output: np.ndarray) -> np.ndarray:
        """Class probabilities from one sample's raw output: softmax of logits, or both sides of a single unit."""
        return np.exp(self.log_probabilities(np.asarray(output).reshape(1, -1))[0])

    def log_probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Log class probabilities of a batch of raw outputs: log-softmax of logits, both sides of a single
        unit, or the probabilities themselves (at least 1e-12, so a KL divergence stays finite)."""
        v = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
        if v.shape[1] == 1:  # a single unit: both sides of its probability, whatever its kind
            p = 1 / (1 + np.exp(-v[:, 0])) if self.output == "logits" else v[:, 0]
            return np.log(np.clip(np.stack([1 - p, p], axis=1), 1e-12, None))
        if self.output != "logits":
            return np.log(np.clip(v, 1e-12, None))
        z = v - v.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _parse(key: str, name: str, text: str) -> Any:
    if name in ("task", "output", "recipe", "version"):
        return text
    if name == "export_parity":
        try:
            return float(text)
        except ValueError:
            raise EdgecnnError(f"model card {key} is not a number: {text[:80]!r}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise EdgecnnError(f"model card {key} is not valid JSON: {text[:80]!r}") from None
    if name == "labels":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise EdgecnnError(f"model card {key} must be a JSON list of class names, got {text[:80]!r}")
        return value
    return _JSON_RECORDS[name].from_dict(value)


def read_card(model: onnx.ModelProto) -> ModelCard:
    """The card an ONNX model carries (an empty one for a model edgecnn did not export)."""
    return ModelCard.from_props({p.key: p.value for p in model.metadata_props})


def write_card(model: onnx.ModelProto, card: ModelCard) -> None:
    """Replace the model's `edgecnn.` metadata with `card`; other tools' keys stay."""
    foreign = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in [*foreign, *card.to_props().items()]:
        model.metadata_props.add(key=key, value=value)
