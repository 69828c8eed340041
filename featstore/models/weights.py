"""Weights files: reading state dicts, hashing them deterministically, caching the hash.

The sha256 of a network's state dict is part of every feature key, so two checkpoints
of one architecture never share cached features. Hashing a large file costs seconds,
so the hash is cached per file, keyed by absolute path, modification time and size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featstore._atomic import write_atomic
from featstore.errors import ModelError, UnsafeWeightsError, WeightsNotFoundError, clip

if TYPE_CHECKING:  # torch is imported where tensors are read: the hash cache needs none
    import torch

_LOCK = threading.Lock()
SAFE_WEIGHTS = (
    "provide the weights as a .safetensors file, or as a state dict of tensors only saved with "
    "torch.save(model.state_dict(), PATH)"
)


def cache_dir() -> Path:
    """Where featstore keeps small per-user caches (FEATSTORE_CACHE_DIR overrides)."""
    env = os.environ.get("FEATSTORE_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "featstore"


def hub_checkpoint_path(filename: str) -> Path:
    """Where torch hub keeps a downloaded checkpoint of this file name."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def hf_cached_file(repo_id: str, filenames: Sequence[str]) -> str | None:
    """The first of ``filenames`` of a Hugging Face repo already in the local cache, or
    None (never downloads; None too without huggingface_hub, which timm and transformers
    bring)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - installed with timm and transformers
        return None
    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str) and Path(found).is_file():
            return found
    return None


def state_dict_sha256(state_dict: Mapping[str, Any]) -> str:
    """sha256 over sorted keys, each tensor's dtype, shape and raw bytes.

    Independent of how the file was saved (pickle protocol, zip layout), so the same
    weights give the same hash wherever they come from.
    """
    import torch

    h = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key]
        h.update(key.encode("utf-8"))
        h.update(b"\0")
        if isinstance(value, torch.Tensor):
            t = value.detach()
            if t.device.type == "meta":
                raise ModelError(f"cannot hash tensor {key!r}: it has no data (meta device)")
            t = t.to("cpu").contiguous()
            h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().data)
        else:
            h.update(repr(value).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _unwrap(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: a state dict, or {"state_dict"|"model": ...}."""
    import torch

    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model", "model_state_dict", "net"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
                return _unwrap(inner, path)
            if isinstance(inner, torch.nn.Module):
                return inner.state_dict()
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            if all(k.startswith("module.") for k in tensors):  # saved from DataParallel
                tensors = {k[len("module.") :]: v for k, v in tensors.items()}
            return tensors
    raise ModelError(
        f"{path} holds no state dict: expected a dict of tensors, or a checkpoint dict with a "
        f"'state_dict' or 'model' entry"
    )


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict (or a checkpoint holding one) onto the CPU, safely.

    Uses torch's restricted loader (tensors and containers only): a file that needs other
    pickled objects is refused in one line naming the safe ways to provide weights, never
    executed. ``.safetensors`` files load without pickle.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise WeightsNotFoundError(f"weights file {p} does not exist")
    if p.suffix == ".safetensors":  # no pickle at all
        return _load_safetensors(p)
    try:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            obj = torch.load(p, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # a damaged or foreign file, not a refused one
            raise ModelError(
                f"cannot read weights from {p} ({_first_line(exc)}); {SAFE_WEIGHTS}"
            ) from None
        raise UnsafeWeightsError(  # it names objects beyond tensors: torch refused to run them
            f"weights file {p} is refused: it needs code beyond tensors to load, and featstore "
            f"never runs code from a file; {SAFE_WEIGHTS}"
        ) from None
    except Exception as exc:  # any other failure means "not loadable"
        raise ModelError(
            f"cannot read weights from {p} ({_first_line(exc)}); {SAFE_WEIGHTS}"
        ) from None
    return _unwrap(obj, str(p))


def _first_line(exc: BaseException) -> str:
    """The first line of an error's text, clipped; torch's advice to load unsafely
    (``weights_only=False``) is never passed on."""
    text = str(exc).partition("WeightsUnpickler error:")[2] or str(exc)  # torch's own reason
    first = clip(next((line.strip() for line in text.splitlines() if line.strip()), ""), 200)
    return type(exc).__name__ if not first or "weights_only" in first else first


def _load_safetensors(p: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:  # pragma: no cover - installed with transformers / timm
        raise ModelError(
            f"reading {p} needs the package safetensors: pip install safetensors"
        ) from exc
    try:
        return _unwrap(load_file(str(p), device="cpu"), str(p))
    except Exception as exc:  # a damaged or foreign file
        raise ModelError(f"cannot read safetensors weights from {p} ({_first_line(exc)})") from None


def _cache_file() -> Path:
    return cache_dir() / "weights_sha256.json"


def _read_cache() -> dict[str, str]:
    """The remembered hashes; a cache that is unreadable or not a JSON object of strings
    (hand-edited, another version's) counts as empty: it only costs hashing again."""
    try:
        raw = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


def _write_cache(cache: dict[str, str]) -> None:
    target = _cache_file()
    with contextlib.suppress(OSError):  # a read-only home only costs hashing again next time
        write_atomic(target, json.dumps(cache, indent=0, sort_keys=True).encode())


def file_cache_key(path: str | os.PathLike[str]) -> str:
    st = os.stat(path)
    return f"file|{os.path.abspath(path)}|{st.st_mtime_ns}|{st.st_size}"


def cached_hash(key: str) -> str | None:
    with _LOCK:
        return _read_cache().get(key)


def remember_hash(key: str, sha: str) -> None:
    with _LOCK:
        cache = _read_cache()
        cache[key] = sha
        _write_cache(cache)


def file_sha256(path: str | os.PathLike[str], state_dict: Mapping[str, Any] | None = None) -> str:
    """State-dict sha256 of a weights file, from the cache when the file is unchanged."""
    if not Path(path).is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist")
    key = file_cache_key(path)
    sha = cached_hash(key)
    if sha is None:
        sha = state_dict_sha256(
            state_dict if state_dict is not None else load_state_dict_file(path)
        )
        remember_hash(key, sha)
    return sha
