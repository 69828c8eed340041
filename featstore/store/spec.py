"""Where a store is and how to reach it: ``StoreSpec`` (URL + storage options), secrets kept out.

A store on object storage is opened from a URL plus fsspec ``storage_options``; with s3fs
the credentials come from the standard AWS chain (environment, ``~/.aws`` profile,
instance role) unless given as options (``key``, ``secret``, ``token``, ``profile``).
``StoreSpec`` is the only way a store is reopened in another process (sweep workers, Dask
workers): it carries both, and never shows a secret in its repr, so it is safe in logs
and error messages. Every open store answers ``store.spec``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featstore.errors import StoreError, redact_url

if TYPE_CHECKING:
    from featstore.store.base import Store

__all__ = ["SECRET_NAMES", "StoreSpec", "parse_storage_options", "redact", "secret_values"]

# storage option names whose values are secrets (s3fs, gcsfs, adlfs spellings)
SECRET_NAMES = (
    "key",
    "secret",
    "token",
    "password",
    "session_token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "account_key",
    "sas_token",
    "client_secret",
)


def redact(options: Any) -> Any:
    """A copy of ``options`` with every secret value replaced by ``"***"`` (nested too)."""
    if isinstance(options, Mapping):
        return {
            k: "***" if str(k).lower() in SECRET_NAMES and v not in (None, "") else redact(v)
            for k, v in options.items()
        }
    if isinstance(options, (list, tuple)):
        return type(options)(redact(v) for v in options)
    return options


def secret_values(options: Any) -> list[str]:
    """The secret strings inside ``options`` (to check that none leaked)."""
    found: list[str] = []
    if isinstance(options, Mapping):
        for k, v in options.items():
            if str(k).lower() in SECRET_NAMES and isinstance(v, str) and v:
                found.append(v)
            else:
                found.extend(secret_values(v))
    elif isinstance(options, (list, tuple)):
        for v in options:
            found.extend(secret_values(v))
    return found


@dataclass(frozen=True)
class StoreSpec:
    """Where a store is and how to reach it: enough for another process to open it."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, store: Store | str, storage_options: Mapping[str, Any] | None = None) -> StoreSpec:
        """The spec of an open store (``store.spec``), or of a URL with options."""
        if isinstance(store, str):
            return cls(store, dict(storage_options or {}))
        return store.spec

    def open(self, mode: str = "a") -> Store:
        from featstore.store import open_store

        return open_store(self.url, mode=mode, storage_options=self.storage_options or None)

    def __repr__(self) -> str:
        return (
            f"StoreSpec(url={redact_url(self.url)!r}, "
            f"storage_options={redact(self.storage_options)!r})"
        )

    __str__ = __repr__


def parse_storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (a command line's ``--storage-option``) as fsspec options.

    ``true``/``false`` become booleans; ``endpoint_url`` goes where s3fs expects it
    (``client_kwargs``), so ``endpoint_url=http://127.0.0.1:9000`` reaches a local S3 API.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        if not sep or not key:
            raise StoreError(
                f"storage option {pair!r} is not KEY=VALUE (e.g. endpoint_url=http://127.0.0.1:9000)"
            )
        if key == "endpoint_url":
            out.setdefault("client_kwargs", {})["endpoint_url"] = value
            continue
        out[key] = {"true": True, "false": False}.get(value.lower(), value)
    return out
