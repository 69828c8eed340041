"""Turning a spec plus a weights choice into a ready network and its key identity.

Weights choices: None/"default" (the torch hub cache for torchvision networks, the
package file for the bundled one, whatever a team function returns), a file path
(state dict or checkpoint), or "random" (seeded, only when asked for explicitly).
The identity (:class:`~featstore.specs.WeightsIdentity`) can usually be had without loading the
network, from the per-file hash cache; that keeps fully cached runs free of model loads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from featstore.errors import ModelError, WeightsNotFoundError
from featstore.models.layers import meta_params
from featstore.models.registry import bundled_weights_path, get_spec, torch_seeded
from featstore.models.spec import ModelSpec
from featstore.models.weights import (
    cached_hash,
    file_sha256,
    hub_checkpoint_path,
    load_state_dict_file,
    remember_hash,
    state_dict_sha256,
)
from featstore.specs import WeightsIdentity

RANDOM_SEED = 0


@dataclass(frozen=True)
class WeightsRef:
    """Where a network's weights come from: source and, for files, the path."""

    source: str  # torchvision | bundled | file | module | timm | random
    path: str | None = None
    seed: int = RANDOM_SEED


@dataclass
class LoadedModel:
    """A network in eval mode with no gradients, plus what identifies it in keys."""

    spec: ModelSpec
    module: nn.Module
    weights: WeightsRef
    identity: WeightsIdentity


def _as_spec(model: ModelSpec | str) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else get_spec(model)


def resolve_weights(
    model: ModelSpec | str, weights: str | Path | WeightsRef | None = None
) -> WeightsRef:
    """Which weights a run will use; WeightsNotFoundError says where to put missing files."""
    spec = _as_spec(model)
    if isinstance(weights, WeightsRef):
        return weights
    if weights is not None and str(weights) == "random":
        return WeightsRef("random")
    if weights is not None and str(weights).lower().startswith("sha256:"):
        raise WeightsNotFoundError(
            f"weights {weights} of {spec.name} name cached features only: computing the entries "
            "that are not cached needs the weights themselves; give the weights FILE"
        )
    if weights is not None and str(weights) != "default":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights file {path} does not exist (given for {spec.name})"
            )
        return WeightsRef("file", str(path.resolve()))
    if spec.adapter is not None:  # timm / hf / open_clip: local caches only
        source, where = spec.adapter.default_weights()
        return WeightsRef(source, where)
    if spec.source == "bundled":
        return WeightsRef("bundled", bundled_weights_path(spec))
    if spec.source == "torchvision":
        assert spec.weights_file is not None  # registry invariant, not user input
        path = hub_checkpoint_path(spec.weights_file)
        if not path.is_file():
            raise WeightsNotFoundError(
                f"pretrained weights for {spec.name} are not in the torch hub cache: put "
                f"{spec.weights_file} at {path} (download it from {spec.weights_url} on a machine "
                f"with internet), or pass --weights FILE, or --weights random for an untrained network"
            )
        return WeightsRef("torchvision", str(path))
    if spec.source == "module":
        return WeightsRef("module")
    raise WeightsNotFoundError(
        f"{spec.name} has no offline default weights: pass --weights FILE (a state dict) or --weights random"
    )


def _random_key(spec: ModelSpec, seed: int) -> str:
    return (
        f"random|{spec.name}|{seed}|torch {torch.__version__}|torchvision {torchvision.__version__}"
    )


@functools.lru_cache(maxsize=32)
def _module_sha(spec: ModelSpec) -> str:
    return state_dict_sha256(spec.builder().state_dict())


def weights_identity(model: ModelSpec | str, ref: WeightsRef) -> WeightsIdentity:
    """The identity that goes into keys, usually without loading: hashes are cached per file."""
    spec = _as_spec(model)
    if spec.adapter is not None:  # the hash of the state dict the source actually loads
        sha = spec.adapter.weights_sha(ref.source, ref.path, ref.seed)
    elif ref.path is not None:
        sha = file_sha256(ref.path)
    elif ref.source == "random":
        sha = cached_hash(_random_key(spec, ref.seed)) or state_dict_sha256(
            _build_random(spec, ref.seed).state_dict()
        )
        remember_hash(_random_key(spec, ref.seed), sha)
    elif ref.source == "module":
        sha = _module_sha(spec)
    else:  # pragma: no cover - every source is handled above
        raise ModelError(f"cannot identify weights {ref} of {spec.name}")
    return WeightsIdentity(spec.name, ref.source, sha)


def _build_random(spec: ModelSpec, seed: int) -> nn.Module:
    with torch_seeded(seed):
        return spec.builder()


def _load_into(spec: ModelSpec, state_dict: dict[str, torch.Tensor], path: str) -> nn.Module:
    """Build the architecture without initialising it and assign the loaded tensors.

    Tensors are cast to the architecture's dtypes first (a float16 checkpoint still gives
    a float32 network). Architectures that compute buffers in ``__init__`` (left on the
    meta device) are built normally and loaded by copy instead.
    """
    try:
        with meta_params():
            module = spec.builder()
        dtypes = {k: v.dtype for k, v in module.state_dict().items()}
        cast = {
            k: v.to(dtypes[k]) if k in dtypes and v.dtype != dtypes[k] else v
            for k, v in state_dict.items()
        }
        module.load_state_dict(cast, strict=True, assign=True)
        if not any(t.device.type == "meta" for t in [*module.parameters(), *module.buffers()]):
            return module
    except RuntimeError:
        pass  # key or shape mismatch: the plain load below words the error
    module = spec.builder()
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"weights {path} do not fit {spec.name}: {str(exc).splitlines()[0]} ... "
            f"(is it a checkpoint of another architecture or class count?)"
        ) from exc
    return module


def load_model(
    model: ModelSpec | str,
    weights: str | Path | WeightsRef | None = None,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Build a network with its weights, in eval mode, gradients off, on ``device``."""
    spec = _as_spec(model)
    ref = resolve_weights(spec, weights)
    identity: WeightsIdentity
    if spec.adapter is not None:
        module, sha = spec.adapter.load(ref.source, ref.path, ref.seed)
        identity = WeightsIdentity(spec.name, ref.source, sha)
    elif ref.source == "random":
        module = _build_random(spec, ref.seed)
        sha = state_dict_sha256(module.state_dict())
        remember_hash(_random_key(spec, ref.seed), sha)
        identity = WeightsIdentity(spec.name, "random", sha)
    elif ref.source == "module":
        module = spec.builder()
        identity = WeightsIdentity(spec.name, "module", state_dict_sha256(module.state_dict()))
    elif ref.source == "bundled" and spec.weights_loader is not None:
        assert ref.path is not None
        module = spec.weights_loader(ref.path)
        identity = weights_identity(spec, ref)
    else:
        assert ref.path is not None
        state_dict = load_state_dict_file(ref.path)
        identity = WeightsIdentity(spec.name, ref.source, file_sha256(ref.path, state_dict))
        module = _load_into(spec, state_dict, ref.path)
    if spec.post_load is not None:
        spec.post_load(module)
    module.eval().requires_grad_(False)
    return LoadedModel(spec=spec, module=module.to(device), weights=ref, identity=identity)


def describe(spec: ModelSpec) -> dict[str, Any]:
    """What `featstore models list` shows about a network (no weights loaded)."""
    where: str | None
    try:
        ref = resolve_weights(spec)
        available, where = True, ref.path or ref.source
    except WeightsNotFoundError:
        available = False
        where = str(hub_checkpoint_path(spec.weights_file)) if spec.weights_file else None
    return {
        "name": spec.name,
        "family": spec.family,
        "source": spec.source,
        "input_size": list(spec.input_size),
        "weights_available": available,
        "weights": where,
        "preprocess": spec.preprocess.to_dict(),
        "layers": dict(spec.layers),
        "description": spec.description,
    }
