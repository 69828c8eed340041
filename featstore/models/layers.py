"""Layer discovery: every module and graph node of a network with its output shape.

Shapes come from one forward of a dummy batch with the parameters on PyTorch's meta
device (no memory, no weights needed); architectures that cannot run on meta fall back
to a CPU forward with random weights. Results are cached per network and input size.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from featstore.errors import UnknownLayerError
from featstore.models.registry import get_spec, torch_seeded
from featstore.models.spec import ModelSpec
from featstore.models.tokens import TokenLayout

PROBE_BATCH = 2  # a batch of 2 tells activations (leading 2) from parameters


@dataclass(frozen=True)
class LayerInfo:
    """One capturable place in a network.

    kind: "module" (a named submodule, captured with a forward hook), "node" (a
    torch.fx graph node, for values that exist only inside forward functions) or "tap"
    (an output of a source's own multi-layer forward: timm, Hugging Face, OpenCLIP).
    shape: per-sample output shape at the probed input size (None: not a tensor).
    calls: how often a module runs per forward (a module used twice is ambiguous
    by name and captured through its graph nodes instead).
    """

    name: str
    kind: str
    type: str
    shape: tuple[int, ...] | None
    calls: int = 1
    tokens: TokenLayout | None = None  # token layers: prefix tokens and axis order

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            "shape": list(self.shape) if self.shape is not None else None,
            "calls": self.calls,
        }
        if self.tokens is not None:
            out["tokens"] = self.tokens.to_dict()
        return out


@contextlib.contextmanager
def meta_params() -> Iterator[None]:
    """Create every parameter and buffer registered inside this block on the meta device.

    Unlike ``torch.device("meta")`` this leaves other tensor maths on the CPU, so
    builders that compute their widths with torch ops (regnet) still work, and random
    initialisation of large networks costs nothing.
    """
    orig_param = nn.Module.register_parameter
    orig_buffer = nn.Module.register_buffer

    def register_parameter(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
        orig_param(self, name, param)

    def register_buffer(
        self: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True
    ) -> None:
        if tensor is not None and tensor.device.type != "meta":
            tensor = tensor.to("meta")
        orig_buffer(self, name, tensor, persistent=persistent)

    nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
    nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = orig_param  # type: ignore[method-assign]
        nn.Module.register_buffer = orig_buffer  # type: ignore[method-assign]


def build_meta(spec: ModelSpec) -> nn.Module:
    """The architecture with parameters on the meta device, in eval mode."""
    with meta_params():
        module = spec.builder()
    return module.eval()


def _per_sample(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == PROBE_BATCH:
        return tuple(int(s) for s in value.shape[1:])
    return None


def probe_modules(
    module: nn.Module, input_hw: tuple[int, int], device: str | torch.device = "meta"
) -> list[LayerInfo]:
    """Run one dummy forward with a hook on every submodule; record shapes and call counts."""
    seen: dict[str, list[Any]] = {}
    handles = []
    for name, sub in module.named_modules():
        if not name:
            continue

        def hook(_m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
            rec = seen.setdefault(name, [None, 0])
            if rec[1] == 0:
                rec[0] = _per_sample(out)
            rec[1] += 1

        handles.append(sub.register_forward_hook(hook))
    try:
        x = torch.zeros(PROBE_BATCH, 3, *input_hw, device=device)
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    infos = []
    for name, sub in module.named_modules():
        if name and name in seen:
            shape, calls = seen[name]
            infos.append(LayerInfo(name, "module", type(sub).__name__, shape, calls))
    return infos


def trace_eval(module: nn.Module) -> tuple[torch.fx.GraphModule, dict[str, str]]:
    """One torch.fx trace in eval mode, as torchvision's feature extraction does it.

    Returns the graph module and {fx node name: torchvision node name} (the names
    ``get_graph_node_names`` lists for eval mode). One trace instead of the four that
    ``get_graph_node_names`` plus ``create_feature_extractor`` cost.
    """
    from torchvision.models import feature_extraction as fe

    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracer = fe.NodePathTracer(**fe._set_default_tracer_kwargs(None))
            graph = tracer.trace(module)
            gm = torch.fx.GraphModule(tracer.root, graph, type(module).__name__)
    finally:
        module.train(was_training)
    return gm, {node.name: qual for node, qual in tracer.node_to_qualname.items()}


def probe_nodes(
    module: nn.Module, input_hw: tuple[int, int], device: str | torch.device = "meta"
) -> list[LayerInfo]:
    """Every torch.fx graph node (eval mode) whose value is an activation, with its shape."""
    from torch.fx.passes.shape_prop import ShapeProp

    gm, names = trace_eval(module)
    x = torch.zeros(PROBE_BATCH, 3, *input_hw, device=device)
    with torch.no_grad():
        ShapeProp(gm).propagate(x)
    infos = []
    for node in gm.graph.nodes:
        qual = names.get(node.name)
        if qual is None or node.op in ("get_attr", "placeholder", "output"):
            continue
        meta = node.meta.get("tensor_meta")
        shape = getattr(meta, "shape", None)
        if shape is None or len(shape) < 1 or shape[0] != PROBE_BATCH:
            continue
        target = node.target
        kind = getattr(target, "__name__", None) or str(target)
        infos.append(LayerInfo(qual, "node", kind, tuple(int(s) for s in shape[1:]), 1))
    return infos


@functools.lru_cache(maxsize=128)
def _module_table(spec: ModelSpec, input_hw: tuple[int, int]) -> tuple[LayerInfo, ...]:
    if spec.adapter is not None:  # timm / Hugging Face / OpenCLIP: the source's own taps
        return tuple(spec.adapter.layer_table(input_hw))
    try:
        return tuple(probe_modules(build_meta(spec), input_hw, "meta"))
    except Exception:  # some ops have no meta kernel: run it for real
        with torch_seeded(0):
            module = spec.builder().eval()
        return tuple(probe_modules(module, input_hw, "cpu"))


@functools.lru_cache(maxsize=128)
def _node_table(spec: ModelSpec, input_hw: tuple[int, int]) -> tuple[LayerInfo, ...]:
    if spec.adapter is not None:
        return ()
    try:
        return tuple(probe_nodes(build_meta(spec), input_hw, "meta"))
    except Exception:
        try:
            with torch_seeded(0):
                module = spec.builder().eval()
            return tuple(probe_nodes(module, input_hw, "cpu"))
        except Exception:  # not traceable by torch.fx: modules only
            return ()


def _spec(model: ModelSpec | str) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else get_spec(model)


def list_layers(
    model: ModelSpec | str, input_size: tuple[int, int] | int | None = None, nodes: bool = False
) -> list[LayerInfo]:
    """Modules (and with ``nodes`` graph nodes) of a network with output shapes.

    Shapes are per sample, at ``input_size`` (default: the network's own input size).
    """
    spec = _spec(model)
    hw = _hw(spec, input_size)
    infos = list(_module_table(spec, hw))
    if nodes:
        names = {i.name for i in infos}
        infos += [i for i in _node_table(spec, hw) if i.name not in names]
    return infos


def _hw(spec: ModelSpec, input_size: tuple[int, int] | int | None) -> tuple[int, int]:
    if input_size is None:
        return spec.input_size
    if isinstance(input_size, int):
        return (input_size, input_size)
    return (int(input_size[0]), int(input_size[1]))


def resolve_layer(
    model: ModelSpec | str, layer: str, input_size: tuple[int, int] | int | None = None
) -> LayerInfo:
    """The module or graph node a layer name (or alias such as ``penultimate``) refers to.

    A module that runs more than once per forward is resolved to its first graph node
    ``name`` (torch.fx names later calls ``name_1``, ``name_2`` ...). Unknown names raise
    UnknownLayerError with close matches.
    """
    spec = _spec(model)
    hw = _hw(spec, input_size)
    target = spec.aliases.get(layer, layer)
    modules = {i.name: i for i in _module_table(spec, hw)}
    info = modules.get(target)
    if info is not None and info.calls == 1 and info.shape is not None:
        return info
    nodes = {i.name: i for i in _node_table(spec, hw)}
    if target in nodes:
        return nodes[target]
    if info is not None:
        why = (
            "its output is not a single tensor"
            if info.shape is None
            else f"it runs {info.calls} times per forward"
        )
        raise UnknownLayerError(
            f"layer {layer!r} of {spec.name} cannot be captured by name: {why}. Pick one of its graph "
            f"nodes instead (see `featstore models layers {spec.name} --nodes`)"
        )
    candidates = list(spec.aliases) + list(modules) + list(nodes)
    close = difflib.get_close_matches(layer, candidates, n=6, cutoff=0.5)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise UnknownLayerError(
        f"{spec.name} has no layer {layer!r}.{hint} List them with `featstore models layers {spec.name}`"
    )
