"""Capture many layers of a network in ONE forward pass.

Modules are captured with forward hooks; values that exist only inside forward
functions (graph nodes) through a torch.fx feature extractor. Either way each captured
tensor is cloned the moment it is produced: an in-place op later in the network
(``nn.ReLU(inplace=True)`` after alexnet's first conv) would otherwise change what
was captured. Clones are contiguous, so channels_last activations come out in
standard layout. Once every requested layer is captured the forward stops.
Networks of the timm, Hugging Face and OpenCLIP sources ("tap" layers) bring their own
multi-layer forward (``forward_taps``), which returns all requested layers from one call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from featstore.errors import UnknownLayerError
from featstore.models.layers import LayerInfo, trace_eval


class _StopForward(BaseException):
    """Raised from the last hook to skip the rest of the network.

    A BaseException, so a model's own ``except Exception`` cannot swallow it.
    """


def _copy(value: torch.Tensor) -> torch.Tensor:
    return value.detach().clone(memory_format=torch.contiguous_format)


class LayerCapture:
    """Callable returning {layer name: activation} for a batch, one forward per call.

    ``layers`` are LayerInfo records from :func:`featstore.models.resolve_layer` (their
    ``kind`` says module or graph node). ``forward_calls`` counts network forwards.
    """

    def __init__(
        self, module: nn.Module, layers: Sequence[LayerInfo], early_stop: bool = True
    ) -> None:
        if not layers:
            raise UnknownLayerError("no layers to capture: give at least one layer name")
        self.module = module
        self.layers = list(dict.fromkeys(info.name for info in layers))
        self.early_stop = early_stop
        self.forward_calls = 0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._store: dict[str, torch.Tensor] = {}
        self._fx: nn.Module | None = None
        if all(info.kind == "tap" for info in layers):
            if not hasattr(module, "forward_taps"):
                raise UnknownLayerError("tap layers need the network their source loaded")
            self.mode = "taps"
        elif any(info.kind == "tap" for info in layers):
            raise UnknownLayerError("tap layers cannot be mixed with module or node layers")
        elif all(info.kind == "module" for info in layers):
            self.mode = "hooks"
            self._install_hooks()
        else:
            self.mode = "fx"
            self._fx = self._build_fx()

    # --- hooks --------------------------------------------------------------------------
    def _install_hooks(self) -> None:
        modules = dict(self.module.named_modules())
        wanted = set(self.layers)
        for name in self.layers:
            if name not in modules:
                raise UnknownLayerError(f"the network has no module {name!r}")

            def hook(_m: nn.Module, _inp: object, out: object, name: str = name) -> None:
                if not isinstance(out, torch.Tensor):
                    raise UnknownLayerError(f"module {name!r} does not return a single tensor")
                self._store[name] = _copy(out)
                if self.early_stop and wanted.issubset(self._store):
                    raise _StopForward

            self._handles.append(modules[name].register_forward_hook(hook))

    # --- torch.fx -------------------------------------------------------------------------
    def _build_fx(self) -> nn.Module:
        """A traced copy of the network that returns clones of the wanted nodes and stops there."""
        gm, names = trace_eval(self.module)
        graph = gm.graph
        nodes = [n for n in graph.nodes if n.name in names]
        wanted: dict[str, torch.fx.Node] = {}
        for layer in self.layers:
            depth = layer.count(".")
            # a node of that name, or the last node inside a module of that name
            # (torchvision's create_feature_extractor rule)
            match = [n for n in nodes if ".".join(names[n.name].split(".")[: depth + 1]) == layer]
            if not match:
                raise UnknownLayerError(f"the network has no graph node or module {layer!r}")
            wanted[layer] = match[-1]
        for node in list(graph.nodes):
            if node.op == "output":
                graph.erase_node(node)
        outputs = {}
        for layer, node in wanted.items():
            with graph.inserting_after(node):  # copy before any later in-place op runs
                outputs[layer] = graph.call_function(
                    torch.clone, (node,), {"memory_format": torch.contiguous_format}
                )
        with graph.inserting_after(list(graph.nodes)[-1]):
            graph.output(outputs)
        graph.eliminate_dead_code()  # everything after the last wanted node goes
        graph.lint()
        gm.recompile()
        return gm.eval()

    # --- running ----------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.forward_calls += 1
        if self.mode == "taps":
            taps = self.module.forward_taps(x, self.layers)  # type: ignore[operator]
            return {name: taps[name] for name in self.layers}
        if self._fx is not None:
            out = self._fx(x)
            return {name: out[name] for name in self.layers}
        self._store = {}
        with contextlib.suppress(_StopForward):
            self.module(x)
        missing = [n for n in self.layers if n not in self._store]
        if missing:
            raise UnknownLayerError(f"layers {missing} did not run in the forward pass")
        out, self._store = self._store, {}
        return out

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> LayerCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
