"""Loading and checking images: files on any path, or images made by built-in providers.

Decoding is faithful and bounded, the same at registration and at extraction:

- every Pillow mode becomes 8-bit RGB with its full range scaled, not truncated: 16-bit
  integer images (``I;16*``, ``I``: 0..65535) are divided by 257, float images (``F``) in
  [0, 1] are multiplied by 255 (values above 1 are taken as 0..255), all clipped;
- EXIF orientation is applied, as image viewers do (recorded as ``orientation: "exif"``
  in every feature key's preprocessing, see :class:`featstore.specs.Preprocess`);
- images over :data:`MAX_PIXELS` pixels (decompression bombs) or with one side more than
  :data:`MAX_ASPECT` times the other are refused from their header, before any pixel is
  decoded, so no file can exhaust memory later in resizing;
- only regular files are read (a FIFO named ``x.jpg`` would block a plain ``open``), and
  each failure (permission, symlink loop, name that is not UTF-8) is a one-line
  :class:`BadImageError` naming the file.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from featstore.errors import BadImageError
from featstore.progress import Progress

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
BUILTIN_PREFIX = "builtin:"
MAX_PIXELS = 64_000_000  # 192 MB as RGB; larger images are refused as decompression bombs
MAX_ASPECT = 20.0  # longer side / shorter side; a 10000x1 image resized to 256 is 655 MP
ORIENTATION = "exif"  # the orientation handling every key records (see module docstring)


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not os.path.basename(name).startswith(".")


def shown(path: str) -> str:
    """A path as it can be printed and stored: bytes that are not UTF-8 shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_geometry(size: tuple[int, int], where: str) -> None:
    """Refuse sizes that would exhaust memory when decoded or resized (bombs, slivers)."""
    width, height = size
    if width <= 0 or height <= 0:
        raise BadImageError(f"{where} has an empty size {width}x{height}; fix or remove the file")
    if width * height > MAX_PIXELS:
        raise BadImageError(
            f"{where} is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the "
            f"{MAX_PIXELS / 1e6:.0f} MP limit (a decompression bomb?); downscale or remove it"
        )
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise BadImageError(
            f"{where} is {width}x{height}, more than {MAX_ASPECT:.0f}:1; resizing its shorter "
            "side would exhaust memory: crop it or remove it"
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB with each mode's full range scaled (16-bit and float images included)."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def decode(payload: bytes, where: str) -> Image.Image:
    """Fully decode image bytes to RGB; a truncated, oversized or non-image file raises BadImageError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            with Image.open(io.BytesIO(payload)) as image:
                check_geometry(image.size, where)  # from the header, before decoding pixels
                image.load()  # decodes every byte: catches truncated files that open() accepts
                oriented = ImageOps.exif_transpose(image)
                return to_rgb(oriented if oriented is not None else image)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(
            f"{where} is not a readable image (not a format Pillow can identify); fix or remove the file"
        ) from None
    except Image.DecompressionBombError as exc:
        raise BadImageError(f"{where} is a decompression bomb ({exc}); remove it") from None
    except Exception as exc:  # Pillow raises many kinds for damaged files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadImageError(
            f"{where} is not a readable image ({reason}); fix or remove the file"
        ) from None


def read_file(path: str) -> bytes:
    """The bytes of a regular file; special files and unreadable paths raise BadImageError."""
    where = shown(path)
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        raise BadImageError(
            f"image file name {where} is not valid UTF-8; rename the file"
        ) from None
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise BadImageError(
            f"image file {where} does not exist (was the dataset moved? register it again)"
        ) from None
    except PermissionError:
        raise BadImageError(
            f"permission denied reading image file {where}; make it readable (chmod +r) or remove it"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadImageError(
                f"image file {where} is a symlink loop; point the link at a file or remove it"
            ) from None
        raise BadImageError(
            f"cannot open image file {where} ({exc.strerror}); fix or remove it"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(info.st_mode)
                else ("a folder" if stat.S_ISDIR(info.st_mode) else "a special file")
            )
            raise BadImageError(f"{where} is {kind}, not an image file; remove or rename it")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except BadImageError:
        raise
    except OSError as exc:
        raise BadImageError(
            f"cannot read image file {where} ({exc.strerror}); fix or remove it"
        ) from None
    finally:
        os.close(fd)


def load_image(ref: str) -> Image.Image:
    """The image behind a ref: a file path, or ``builtin:<provider>/<locator>``."""
    if ref.startswith(BUILTIN_PREFIX):
        from featstore.datasets.registry import provider_image

        return provider_image(ref)
    return decode(read_file(ref), shown(ref))


def load_image_hashed(ref: str) -> tuple[Image.Image, str]:
    """The image behind a ref and the hash of what was decoded, as :func:`check_and_hash`
    computes it at registration (sha256 of the file's bytes, already in memory; a
    provider's payload or pixels), so extraction can tell a changed file from its record."""
    if ref.startswith(BUILTIN_PREFIX):
        from featstore.datasets.registry import provider_image_hashed

        return provider_image_hashed(ref)
    payload = read_file(ref)
    return decode(payload, shown(ref)), hashlib.sha256(payload).hexdigest()


def hash_image(ref: str) -> str:
    """The registered kind of hash of a ref without decoding a file (a provider's image is
    opened); a missing or unreadable file raises BadImageError."""
    if ref.startswith(BUILTIN_PREFIX):
        return check_and_hash(ref)
    return hashlib.sha256(read_file(ref)).hexdigest()


def check_and_hash(path: str) -> str:
    """sha256 of a file's bytes, after checking that it decodes as an image.

    A ``builtin:`` ref is checked and hashed by its provider (its encoded bytes, else pixels).
    """
    if path.startswith(BUILTIN_PREFIX):
        from featstore.datasets.registry import provider_digest

        return provider_digest(path)
    payload = read_file(path)
    decode(payload, shown(path))
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
                skipped.append({"path": shown(str(paths[i])), "reason": str(exc)})
            if progress is not None:
                progress(i + 1, len(paths), {})
    return hashes, skipped
