"""Quantization's graph passes: each a named rewrite that makes ONNX Runtime's int8 kernels pay on a CNN.

A configuration is an ordered tuple of pass names. Each pass says when it fits a model, which
nodes it keeps in float, what it rewrites in the fp32 graph before the quantizer runs and in the
int8 graph after, which passes it needs or excludes, and what a runtime needs to run its result
(operator domains, session options). The search enumerates combinations from this list alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from edgecnn.errors import EdgecnnError
from edgecnn.graph.layout import fold_quantized_pad, nhwc_flatten, nhwc_handover, pad_input_channels
from edgecnn.graph.nodes import attribute, input_channels, input_crop, tensor_consumers
from edgecnn.graph.s2dstem import find_s2d_stem, int8_s2d_stem
from edgecnn.runtime.card import SessionNeeds
from edgecnn.runtime.targets import TARGETS, Target

QDQ_PROPAGATION = "QDQPropagationTransformer"
FLOAT_HEAD_MAX_BYTES = 1 << 20  # fp32 dense weights a core's cache holds: int8 saves them no memory traffic
# ops that follow a conv inside one block; a float stem keeps them in float with their conv
_STEM_FOLLOWERS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "MaxPool", "AveragePool", "BatchNormalization"}


def stem_nodes(model: onnx.ModelProto) -> list[str]:
    """Convs reading 1-4 channels and the activation/pooling nodes that follow each one.

    A grouped conv reads its weight's input channels times its groups: a depthwise conv reads
    many channels and runs well in int8, so it is no stem.
    """
    weights = {i.name: i.dims for i in model.graph.initializer}
    consumers = tensor_consumers(model)
    crop = input_crop(model)
    names = []
    for node in model.graph.node:
        dims = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        group = attribute(node, "group", 1)
        if dims is None or len(dims) < 2 or dims[1] * group > 4:
            continue
        names += [crop.name] if crop is not None and node.input[0] == crop.output[0] else []  # the crop stays float with it
        names.append(node.name)
        current = node
        while len(nxt := consumers.get(current.output[0], [])) == 1 and nxt[0].op_type in _STEM_FOLLOWERS:
            current = nxt[0]
            names.append(current.name)
    return names


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """The Gemm and MatMul nodes after the last conv: a CNN's dense head (none without a conv)."""
    nodes = list(model.graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    return [n.name for n in nodes[convs[-1] + 1 :] if n.op_type in ("Gemm", "MatMul")] if convs else []


def head_weight_bytes(model: onnx.ModelProto) -> int:
    """The fp32 bytes of the dense head's weights."""
    head = set(head_nodes(model))
    weights = {i.name: i.dims for i in model.graph.initializer}
    return 4 * sum(int(np.prod(weights.get(n.input[1], [0]))) for n in model.graph.node if n.name in head)


def _s2d_misfit(model: onnx.ModelProto) -> str | None:
    try:
        find_s2d_stem(model)
    except EdgecnnError as exc:
        return str(exc)
    return None


def _int8_s2d_stem(quantized: onnx.ModelProto, fp32: onnx.ModelProto, x: np.ndarray, per_channel: bool, reduce_range: bool) -> None:
    int8_s2d_stem(quantized, fp32, find_s2d_stem(fp32), x, per_channel, reduce_range)


def _float_pool_handover(model: onnx.ModelProto, in_float: list[str]) -> list[str]:
    added = nhwc_handover(model, in_float)
    nhwc_flatten(model)
    return added


def _nhwc_dense(model: onnx.ModelProto, in_float: list[str]) -> list[str]:  # noqa: ARG001
    nhwc_flatten(model)
    return []


def _pad_channels(model: onnx.ModelProto, in_float: list[str]) -> list[str]:  # noqa: ARG001
    pad_input_channels(model)
    return []


def _fold_pad(quantized: onnx.ModelProto, *_) -> None:
    fold_quantized_pad(quantized)


def _nothing(*_) -> None:
    return None


@dataclass(frozen=True)
class GraphPass:
    """One named rewrite of a quantization configuration."""

    name: str
    summary: str
    misfit: Callable[[onnx.ModelProto], str | None]  # why the pass cannot apply to a model; None where it can
    pays: Callable[[onnx.ModelProto], bool] = lambda _: True  # whether the search tries it on a model that fits
    float_nodes: Callable[[onnx.ModelProto], list[str]] = lambda _: []  # nodes it keeps in float (recorded)
    replaced_nodes: Callable[[onnx.ModelProto], list[str]] = lambda _: []  # float nodes the quantizer skips because `after` rewrites them
    before: Callable[[onnx.ModelProto, list[str]], list[str]] = lambda model, float_nodes: []  # fp32 rewrite; returns float nodes it adds
    after: Callable[..., None] = _nothing  # int8 rewrite: (quantized, fp32 rewritten, calibration x, per_channel, reduce_range)
    requires: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()  # operator domains beyond ONNX's own that the result uses
    session: SessionNeeds = SessionNeeds()  # session options the result's speed depends on
    static_types: tuple[str, ...] = ()  # where set: the only activation/weight types it works with, static only
    providers: tuple[str, ...] | None = None  # the execution providers that run its result (None: every one)
    onnxruntime_gain: bool = False  # True: what it wins is an ONNX Runtime kernel's, nothing a runtime reading standard ONNX gets


def _no_stem(model: onnx.ModelProto) -> str | None:
    return None if stem_nodes(model) else "no conv reads 1-4 input channels"


def _no_head(model: onnx.ModelProto) -> str | None:
    return None if head_nodes(model) else "the model has no Gemm or MatMul after a conv"


def _channels_fit(model: onnx.ModelProto) -> str | None:
    channels = input_channels(model)
    if not channels:
        return "no ungrouped conv reads the model's input"
    return None if channels % 4 else f"the first conv already reads {channels} channels, a multiple of 4"


PASSES: dict[str, GraphPass] = {
    p.name: p
    for p in (
        GraphPass(
            "float-stem",
            "convs on 1-4 input channels and their block stay fp32: ORT's int8 kernels run them slower",
            misfit=_no_stem,
            float_nodes=stem_nodes,
        ),
        GraphPass(
            "float-pool",
            "the float stem hands over to int8 in NHWC, and ORT is kept from moving its quantize above the pool",
            misfit=_no_stem,
            before=_float_pool_handover,
            requires=("float-stem",),
            session=SessionNeeds(disabled_optimizers=(QDQ_PROPAGATION,)),
        ),
        GraphPass(
            "s2d-stem",
            "the first conv → 2×2 max pool in int8 as a space-to-depth conv over the pool's four phases",
            misfit=_s2d_misfit,
            replaced_nodes=lambda model: list(find_s2d_stem(model).nodes),
            before=_nhwc_dense,
            after=_int8_s2d_stem,
            excludes=("float-stem", "float-pool", "pad-input"),
            domains=("com.microsoft",),
            static_types=("u8s8", "s8s8"),
            providers=("cpu",),  # ORT's NHWC int8 contrib ops exist in its CPU EP only
        ),
        GraphPass(
            "pad-input",
            "an RGB input zero-padded to 4 channels, so the first conv runs on ORT's symmetric int8 kernel",
            misfit=_channels_fit,
            pays=lambda model: input_channels(model) > 1,  # a 1-channel input padded runs slower than fp32
            before=_pad_channels,
            after=_fold_pad,
            excludes=("float-stem",),  # the conv it pads would stay float
            providers=("cpu",),
            onnxruntime_gain=True,  # the kernel it reaches is ORT's CPU EP's; OpenVINO runs the added Pad as such (Lite0: 6% slower at b1)
        ),
        GraphPass(
            "float-head",
            "the dense layers after the last conv stay fp32: a small int8 Gemm costs more than it saves",
            misfit=_no_head,
            pays=lambda model: 0 < head_weight_bytes(model) <= FLOAT_HEAD_MAX_BYTES,
            float_nodes=head_nodes,
        ),
    )
}


def check_passes(names: tuple[str, ...], types: str, dynamic: bool) -> tuple[str, ...]:
    """The passes in PASSES order, or one line naming an unknown pass, a missing or excluded partner."""
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise EdgecnnError(f"unknown quantization pass(es) {', '.join(map(repr, unknown))} (accepted: {', '.join(PASSES)})")
    chosen = tuple(n for n in PASSES if n in names)
    for name in chosen:
        graph_pass = PASSES[name]
        missing = [r for r in graph_pass.requires if r not in chosen]
        if missing:
            raise EdgecnnError(f"pass {name} needs pass {', '.join(missing)} too")
        clash = [e for e in graph_pass.excludes if e in chosen]
        if clash:
            raise EdgecnnError(f"pass {name} cannot be combined with {', '.join(clash)}")
        if graph_pass.static_types and (dynamic or types not in graph_pass.static_types):
            raise EdgecnnError(f"pass {name} quantizes with static {' or '.join(graph_pass.static_types)} types only, not {'dynamic ' if dynamic else ''}{types}")
    return chosen


def refuse_misfits(model: onnx.ModelProto, names: tuple[str, ...]) -> None:
    """One line for the first pass that does not fit the model, with why."""
    for name in names:
        reason = PASSES[name].misfit(model)
        if reason:
            raise EdgecnnError(f"pass {name} does not fit this model: {reason}")


def valid_for(name: str, target: Target) -> bool:
    """Whether the pass's result runs, at the speed it was kept for, where `target` loads it: its
    session options need edgecnn's session, its operator domains a runtime beyond standard ONNX, its
    kernels the providers it names, and a gain only ONNX Runtime gives a target that ONNX Runtime
    reads (the `onnx` target is timed in ONNX Runtime here, but its users run other runtimes)."""
    graph_pass = PASSES[name]
    return (
        (not graph_pass.session.disabled_optimizers or target.card_options)
        and (not (graph_pass.domains or graph_pass.onnxruntime_gain) or not target.standard_ops)
        and (graph_pass.providers is None or target.provider in graph_pass.providers)
    )


def pass_targets(name: str) -> list[str]:
    """The targets a pass is valid for."""
    return [t for t, target in TARGETS.items() if valid_for(name, target)]


COMPUTE_OPS = ("Conv", "Gemm", "MatMul")  # what int8 is for; a model with none of them quantized is fp32 with overhead


def quantized_compute(model: onnx.ModelProto, in_float: set[str]) -> list[str]:
    """The Conv, Gemm and MatMul nodes that are not left in float."""
    return [n.name for n in model.graph.node if n.op_type in COMPUTE_OPS and n.name not in in_float]


def pass_sets(model: onnx.ModelProto, target: Target) -> list[tuple[str, ...]]:
    """Every combination of passes that fit the model, pay on it, are valid for `target`, go together
    and leave some conv or dense layer in int8, smallest first."""
    fitting = [n for n, p in PASSES.items() if p.misfit(model) is None and p.pays(model) and valid_for(n, target)]
    sets: list[tuple[str, ...]] = [()]
    for name in fitting:
        sets += [(*s, name) for s in sets]
    valid = []
    for names in sorted(sets, key=len):
        with contextlib.suppress(EdgecnnError):
            checked = check_passes(names, "u8s8", dynamic=False)
            if quantized_compute(model, set(float_nodes(model, checked))):
                valid.append(checked)
    return valid


def float_nodes(model: onnx.ModelProto, names: tuple[str, ...]) -> list[str]:
    """The nodes the passes keep in float, in graph order of the passes."""
    return list(dict.fromkeys(n for name in names for n in PASSES[name].float_nodes(model)))


def rewrite_float(model: onnx.ModelProto, names: tuple[str, ...], in_float: list[str]) -> list[str]:
    """Apply the passes' fp32 rewrites in place; returns the float nodes they add."""
    return [n for name in names for n in PASSES[name].before(model, in_float)]


def session_needs(names: tuple[str, ...]) -> SessionNeeds:
    """The session options the passes' result needs to run at its speed."""
    return SessionNeeds(disabled_optimizers=tuple(dict.fromkeys(o for n in names for o in PASSES[n].session.disabled_optimizers)))
