"""What `featstore models list` shows beyond the registry: models already on this machine.

timm, Hugging Face and OpenCLIP networks are named on demand (``timm:NAME``,
``hf:DIR_OR_ID``, ``open_clip:ARCH``), so they are not registered one by one. This module
finds the ones usable offline: timm and transformers vision models in the local Hugging
Face cache (read from the cache folders, nothing is downloaded or loaded), and counts the
architectures timm and open_clip know. Every row has the keys of ``describe``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _hf_cache_dir() -> Path | None:
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - installed with transformers
        return None
    return Path(constants.HF_HUB_CACHE)


def _snapshot_files(repo: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for snap in sorted((repo / "snapshots").glob("*")):
        for f in snap.iterdir():
            files.setdefault(f.name, f)
    return files


def _row(name: str, family: str, source: str, where: str | None, note: str) -> dict[str, Any]:
    return {
        "name": name,
        "family": family,
        "source": source,
        "input_size": [],
        "weights_available": where is not None,
        "weights": where,
        "preprocess": None,
        "layers": {},
        "description": note,
    }


def cached_models() -> list[dict[str, Any]]:
    """timm and hf vision models whose weights are in the local Hugging Face cache."""
    from featstore.models.hf_source import TOWERS

    cache = _hf_cache_dir()
    rows: list[dict[str, Any]] = []
    if cache is None or not cache.is_dir():
        return rows
    for repo in sorted(cache.glob("models--*")):
        repo_id = repo.name[len("models--") :].replace("--", "/")
        files = _snapshot_files(repo)
        weights = next(
            (files[f] for f in ("model.safetensors", "pytorch_model.bin") if f in files), None
        )
        if repo_id.startswith("timm/"):
            arch = repo_id.split("/", 1)[1]
            rows.append(
                _row(f"timm:{arch}", "timm", "timm", str(weights) if weights else None, repo_id)
            )
            continue
        config = files.get("config.json")
        if config is None:
            continue
        try:
            model_type = json.loads(config.read_text()).get("model_type")
        except (OSError, ValueError):
            continue
        if model_type in TOWERS:
            where = str(weights) if weights else None
            rows.append(_row(f"hf:{repo_id}", str(model_type), "hf", where, repo_id))
    return rows


def source_summaries() -> list[dict[str, Any]]:
    """One line per on-demand source: how to name its networks and how many it knows."""
    out = []
    try:
        import timm

        out.append(
            {
                "source": "timm",
                "how": "timm:NAME (weights: local HF / torch hub cache, --weights FILE or random)",
                "architectures": len(timm.list_models()),
            }
        )
    except ImportError:  # pragma: no cover - optional
        pass
    out.append(
        {
            "source": "hf",
            "how": "hf:DIR_OR_CACHED_ID (a save_pretrained folder or the local HF cache)",
            "architectures": None,
        }
    )
    try:
        import open_clip

        out.append(
            {
                "source": "open_clip",
                "how": "open_clip:ARCH --weights FILE",
                "architectures": len(open_clip.list_models()),
            }
        )
    except ImportError:  # pragma: no cover - optional
        pass
    return out
