"""The registry at the bottom of ``datasets/``: image providers, built-in datasets, source schemes.

Three tables, filled with featstore's own entries by
:func:`featstore.datasets.defaults.register_defaults` the first time any of them is used (a
lookup or a registration), not at import: the loaders import PIL, ``tarfile`` and XML
parsers, which reading cached features never needs. Nothing registers itself as a side
effect of an import:

- image providers turn a ref ``builtin:<provider>/<locator>`` into an image, so an image
  that is not a file of its own (a generated digit, a CIFAR row in a pickle batch, a
  Hugging Face row, a member of a tar shard) is stored as a ref that
  :func:`featstore.datasets.images.load_image` opens again at extraction time;
- built-in datasets: ``builtin:<name>`` -> ``factory(dataset_name) -> Dataset``;
- source schemes: ``<scheme>:<PATH>[?key=value&...]`` -> a loader producing the same
  :class:`~featstore.datasets.core.Dataset` the folder and manifest sources produce.

This module imports nothing from the loaders at import time (only :func:`_fill`, when first
used, imports them), so every loader may import it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.datasets.core import Dataset
from featstore.errors import DatasetError
from featstore.progress import Progress

if TYPE_CHECKING:
    from PIL import Image

BUILTIN_PREFIX = "builtin:"

# --- filling on first use ---------------------------------------------------------------
_FILL_LOCK = threading.RLock()  # reentrant: the defaults register through the public calls
_FILL = {"done": False, "running": False}


def _fill() -> None:
    """Register featstore's own providers, built-ins and schemes once, before the first use
    of any table (threads that ask meanwhile wait for the whole set). A failed fill is
    retried on the next use; registering the same objects again is allowed."""
    if _FILL["done"]:
        return
    with _FILL_LOCK:
        if _FILL["done"] or _FILL["running"]:  # running: this thread, inside the fill
            return
        _FILL["running"] = True
        try:
            from featstore.datasets.defaults import register_defaults

            register_defaults()
            _FILL["done"] = True
        finally:
            _FILL["running"] = False


# --- image providers --------------------------------------------------------------------
@dataclass(frozen=True)
class ImageProvider:
    """Opens the images behind ``builtin:<name>/<locator>`` refs.

    ``payload`` (optional) returns the encoded bytes behind a locator: such images are
    hashed over those bytes, exactly like files; the others over their pixels
    (:func:`image_digest`).
    """

    name: str
    open: Callable[[str], Image.Image]
    payload: Callable[[str], bytes] | None = None


_PROVIDERS: dict[str, ImageProvider] = {}


def _index_opener(
    name: str, provider: Callable[[int], Image.Image]
) -> Callable[[str], Image.Image]:
    def open_index(locator: str) -> Image.Image:
        if not locator.isdigit():
            raise DatasetError(
                f"image ref builtin:{name}/{locator} names no image: {name} refs end in a row number"
            )
        return provider(int(locator))

    return open_index


def register_provider(name: str, provider: Callable[[int], Image.Image]) -> None:
    """An index provider: ``builtin:<name>/<int>`` -> ``provider(int)``."""
    register_image_provider(ImageProvider(name, _index_opener(name, provider)), _key=provider)


_KEYS: dict[str, object] = {}


def register_image_provider(provider: ImageProvider, *, _key: object = None) -> None:
    """A provider whose locators are strings (e.g. ``/abs/batch_file#17``); refuses duplicates."""
    _fill()
    key = _key if _key is not None else provider
    if provider.name in _PROVIDERS and _KEYS[provider.name] is not key:
        raise DatasetError(
            f"a builtin image provider named {provider.name!r} is already registered"
        )
    _PROVIDERS[provider.name] = provider
    _KEYS[provider.name] = key


def provider_ref(name: str, locator: str) -> str:
    """The ref string stored in a dataset for an image that ``name`` provides."""
    return f"{BUILTIN_PREFIX}{name}/{locator}"


def _provider_of(ref: str) -> tuple[ImageProvider, str]:
    _fill()
    body = ref.removeprefix(BUILTIN_PREFIX)
    name, _, locator = body.partition("/")
    if name not in _PROVIDERS or not locator:
        raise DatasetError(
            f"image ref {ref!r} names no built-in image (providers: {sorted(_PROVIDERS)}); "
            "register the dataset again"
        )
    return _PROVIDERS[name], locator


def provider_image(ref: str) -> Image.Image:
    """The image behind a ``builtin:<provider>/<locator>`` ref, as RGB."""
    provider, locator = _provider_of(ref)
    image = provider.open(locator)
    return image if image.mode == "RGB" else image.convert("RGB")


def provider_image_hashed(ref: str) -> tuple[Image.Image, str]:
    """The image behind a provider ref (RGB) and its hash as :func:`provider_digest` gives it,
    from one read: the payload's sha256 when the provider has one, else the pixels'."""
    provider, locator = _provider_of(ref)
    if provider.payload is not None:
        from featstore.datasets.images import decode

        payload = provider.payload(locator)
        return decode(payload, ref), hashlib.sha256(payload).hexdigest()
    image = provider.open(locator)
    digest = image_digest(image)
    return (image if image.mode == "RGB" else image.convert("RGB")), digest


def image_digest(image: Image.Image) -> str:
    """sha256 over an image's mode, size and pixels: the 'bytes' of a generated image."""
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(np.asarray(image).tobytes())
    return digest.hexdigest()


def provider_digest(ref: str) -> str:
    """Check that a provider ref opens, and hash it (its encoded bytes, else its pixels)."""
    provider, locator = _provider_of(ref)
    if provider.payload is not None:
        from featstore.datasets.images import decode

        payload = provider.payload(locator)
        decode(payload, ref)
        return hashlib.sha256(payload).hexdigest()
    return image_digest(provider.open(locator))


# --- built-in datasets ------------------------------------------------------------------
_FACTORIES: dict[str, Callable[[str], Dataset]] = {}


def register_builtin_dataset(name: str, factory: Callable[[str], Dataset]) -> None:
    """``factory(dataset_name) -> Dataset``; makes ``builtin:<name>`` a dataset source."""
    _fill()
    if name in _FACTORIES and _FACTORIES[name] is not factory:
        raise DatasetError(f"a builtin dataset named {name!r} is already registered")
    _FACTORIES[name] = factory


def builtin_names() -> list[str]:
    _fill()
    return sorted(_FACTORIES)


def builtin_dataset(source: str, name: str) -> Dataset:
    _fill()
    set_name = source.removeprefix(BUILTIN_PREFIX)
    if set_name not in _FACTORIES:
        raise DatasetError(
            f"no built-in dataset {set_name!r}; built-ins are: {', '.join(builtin_names())}"
        )
    return _FACTORIES[set_name](name)


# --- source schemes ---------------------------------------------------------------------
@dataclass(frozen=True)
class Scheme:
    """A ``<name>:PATH`` dataset source: what it reads, its loader and the options it takes."""

    name: str
    loader: Callable[..., Dataset]
    reads: str  # one line for help texts and errors: the files it reads
    options: tuple[str, ...] = ()
    path_must_exist: bool = True  # False for patterns such as wds:shard-{000..009}.tar


@dataclass(frozen=True)
class SourceRef:
    """A parsed ``scheme:PATH?key=value&...`` source."""

    scheme: Scheme
    path: str
    options: Mapping[str, str] = field(default_factory=dict)

    def load(
        self, name: str, *, skip_bad: bool = False, progress: Progress | None = None
    ) -> Dataset:
        return self.scheme.loader(
            name, self.path, skip_bad=skip_bad, progress=progress, **dict(self.options)
        )


_SCHEMES: dict[str, Scheme] = {}


def register_scheme(scheme: Scheme) -> None:
    _fill()
    if scheme.name in _SCHEMES and _SCHEMES[scheme.name] != scheme:
        raise DatasetError(f"a dataset source scheme named {scheme.name!r} is already registered")
    _SCHEMES[scheme.name] = scheme


def schemes() -> dict[str, Scheme]:
    _fill()
    return dict(_SCHEMES)


def _parse_options(text: str, scheme: Scheme, source: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in filter(None, text.split("&")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DatasetError(f"source {source!r}: option {item!r} is not key=value")
        if key not in scheme.options:
            allowed = ", ".join(scheme.options) or "none"
            raise DatasetError(
                f"source {source!r}: {scheme.name}: takes no option {key!r} (its options: {allowed})"
            )
        options[key] = value
    return options


def parse_source(source: str) -> SourceRef | None:
    """The scheme source ``source`` names, or None when it is a plain path or builtin:."""
    _fill()
    scheme_name, sep, rest = source.partition(":")
    if not sep or scheme_name not in _SCHEMES:
        return None
    scheme = _SCHEMES[scheme_name]
    path, qsep, query = rest.partition("?")
    if not path:
        raise DatasetError(
            f"source {source!r} needs a path after '{scheme_name}:' ({scheme.reads})"
        )
    return SourceRef(scheme, path, _parse_options(query, scheme, source) if qsep else {})


def option_choice(
    options: Mapping[str, Any], key: str, choices: tuple[str, ...], scheme: str
) -> str:
    """A validated option value (the first choice is the default)."""
    value = str(options.get(key, choices[0]))
    if value not in choices:
        raise DatasetError(f"{scheme}: option {key}={value!r} is not one of {', '.join(choices)}")
    return value


def option_int(
    options: Mapping[str, Any], key: str, default: int, scheme: str, lo: int, hi: int | None = None
) -> int:
    """A validated integer option in ``[lo, hi]``."""
    raw = options.get(key, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise DatasetError(f"{scheme}: option {key}={raw!r} is not an integer") from None
    if value < lo or (hi is not None and value > hi):
        bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise DatasetError(f"{scheme}: option {key}={value} is out of range ({bounds})")
    return value


__all__ = [
    "BUILTIN_PREFIX",
    "ImageProvider",
    "Scheme",
    "SourceRef",
    "builtin_dataset",
    "builtin_names",
    "image_digest",
    "option_choice",
    "option_int",
    "parse_source",
    "provider_digest",
    "provider_image",
    "provider_image_hashed",
    "provider_ref",
    "register_builtin_dataset",
    "register_image_provider",
    "register_provider",
    "register_scheme",
    "schemes",
]
