"""The seed documents' architectures as nn.Modules, registered by name."""

from __future__ import annotations

from collections.abc import Callable

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
