"""Loading and checking images: files on any path, or images made by built-in providers."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, UnidentifiedImageError

from featstore.errors import BadImageError
from featstore.progress import Progress

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
BUILTIN_PREFIX = "builtin:"


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not os.path.basename(name).startswith(".")


def decode(payload: bytes, where: str) -> Image.Image:
    """Fully decode image bytes to RGB; a truncated or non-image file raises BadImageError."""
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.load()  # decodes every byte: catches truncated files that open() accepts
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(
            f"{where} is not a readable image ({exc}); fix or remove the file"
        ) from exc


def load_image(ref: str) -> Image.Image:
    """The image behind a ref: a file path, or ``builtin:<provider>/<locator>``."""
    if ref.startswith(BUILTIN_PREFIX):
        from featstore.datasets.registry import provider_image

        return provider_image(ref)
    try:
        with open(ref, "rb") as handle:
            payload = handle.read()
    except FileNotFoundError:
        raise BadImageError(
            f"image file {ref} does not exist (was the dataset moved? register it again)"
        ) from None
    return decode(payload, ref)


def load_image_hashed(ref: str) -> tuple[Image.Image, str]:
    """The image behind a ref and the hash of what was decoded, as :func:`check_and_hash`
    computes it at registration (sha256 of the file's bytes, already in memory; a
    provider's payload or pixels), so extraction can tell a changed file from its record."""
    if ref.startswith(BUILTIN_PREFIX):
        from featstore.datasets.registry import provider_image_hashed

        return provider_image_hashed(ref)
    try:
        with open(ref, "rb") as handle:
            payload = handle.read()
    except FileNotFoundError:
        raise BadImageError(
            f"image file {ref} does not exist (was the dataset moved? register it again)"
        ) from None
    return decode(payload, ref), hashlib.sha256(payload).hexdigest()


def hash_image(ref: str) -> str:
    """The registered kind of hash of a ref without decoding a file (a provider's image is
    opened); a missing file raises BadImageError."""
    if ref.startswith(BUILTIN_PREFIX):
        return check_and_hash(ref)
    try:
        with open(ref, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        raise BadImageError(f"image file {ref} does not exist") from None


def check_and_hash(path: str) -> str:
    """sha256 of a file's bytes, after checking that it decodes as an image.

    A ``builtin:`` ref is checked and hashed by its provider (its encoded bytes, else pixels).
    """
    if path.startswith(BUILTIN_PREFIX):
        from featstore.datasets.registry import provider_digest

        return provider_digest(path)
    try:
        with open(path, "rb") as handle:
            payload = handle.read()
    except FileNotFoundError:
        raise BadImageError(f"image file {path} does not exist") from None
    decode(payload, path)
    return hashlib.sha256(payload).hexdigest()


def check_and_hash_all(
    paths: Sequence[str],
    skip_bad: bool,
    progress: Progress | None = None,
) -> tuple[list[str | None], list[dict[str, str]]]:
    """Hash every image (decoding each once, in threads). Bad ones raise unless ``skip_bad``.

    Returns one hash per path (None where skipped) and the list of skipped files with why.
    """
    hashes: list[str | None] = [None] * len(paths)
    skipped: list[dict[str, str]] = []
    workers = max(1, min(8, len(os.sched_getaffinity(0)) * 2))
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(check_and_hash, p) for p in paths]
        for i, future in enumerate(futures):
            try:
                hashes[i] = future.result()
            except BadImageError as exc:
                if not skip_bad:
                    for rest in futures[i + 1 :]:
                        rest.cancel()
                    raise BadImageError(
                        f"{exc}; or pass --skip-bad to register the other images"
                    ) from None
                skipped.append({"path": str(paths[i]), "reason": str(exc)})
            if progress is not None:
                progress(i + 1, len(paths), {})
    return hashes, skipped
