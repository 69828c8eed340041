"""Shared CLI plumbing: the --store and --json options, error rendering, progress bars.

Commands stay thin: parse options, call one library function, render its return value.
"""

from __future__ import annotations

import errno
import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import click

from featstore.errors import FeatstoreError, clip, redact_url
from featstore.progress import Progress
from featstore.store import DEFAULT_STORE, Store, open_store
from featstore.store.spec import parse_storage_options

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")


STORAGE_OPTIONS_META = "featstore.storage_options"


def _remember_storage_options(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    ctx.meta[STORAGE_OPTIONS_META] = tuple(value)
    return value


def storage_options_option(func: F, expose_value: bool = True) -> F:
    return click.option(
        "--storage-option",
        "storage_options",
        multiple=True,
        metavar="KEY=VALUE",
        expose_value=expose_value,
        callback=None if expose_value else _remember_storage_options,
        help="fsspec option for object storage, e.g. endpoint_url=http://127.0.0.1:9000 (repeatable).",
    )(func)


def store_option(func: F) -> F:
    """``--store`` and ``--storage-option``: every command that opens a store takes both."""
    func = storage_options_option(func, expose_value=False)
    return click.option(
        "--store",
        "store_url",
        envvar="FEATSTORE_STORE",
        default=DEFAULT_STORE,
        show_default=True,
        help="Store path or URL (s3://..., memory://...); also FEATSTORE_STORE.",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(
        func
    )


def open_cli_store(
    store_url: str, mode: str = "a", storage_options: Sequence[str] = (), *, create: bool = True
) -> Store:
    """Open the command's store with its ``--storage-option``s (given, or read from the
    command's context where ``store_option`` left them).

    ``create=False`` (commands that need data already registered: extract, evaluate, rm, gc)
    refuses a store that does not exist instead of creating an empty one where the command
    happened to run.
    """
    if not storage_options:
        ctx = click.get_current_context(silent=True)
        storage_options = ctx.meta.get(STORAGE_OPTIONS_META, ()) if ctx is not None else ()
    options = parse_storage_options(storage_options) or None
    if mode == "a" and not create:
        open_store(store_url, mode="r", storage_options=options).close()  # raises when missing
    return open_store(store_url, mode=mode, storage_options=options)


def store_note(store: Store) -> str:
    """Which store a command used, for its header line (never in --json output)."""
    return f"store {redact_url(store.location)}" + (
        " (new: created by this command)" if store.created else ""
    )


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a FeatstoreError into a clean `Error: <message>` and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except FeatstoreError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:  # a write deep in a backend: disk full, permissions, read-only
            message = os_error_message(exc)
            if message is None:
                raise
            raise click.ClickException(message) from exc

    return wrapper


MESSAGE_CHARS = 600  # an error longer than this echoes a value in full: its middle is cut


def clean_message(message: str) -> str:
    """An error as the CLI prints it: credentials in URLs redacted, and cut to a few lines
    (the start and the hint at the end kept) when it echoes a huge value."""
    return clip(redact_url(message), MESSAGE_CHARS, tail=250)


class FeatstoreGroup(click.Group):
    """The command group; every usage or option error (click's own too) goes through
    :func:`clean_message` before it is shown."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as exc:
            exc.message = clean_message(exc.message)  # type: ignore[misc]
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            exc.message = clean_message(exc.message)  # type: ignore[misc]
            raise


def os_error_message(exc: OSError) -> str | None:
    """One line for the OS errors a store write can meet; None for any other error."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"the disk of the store is full{where}; free space or use another --store, then run "
            "the command again (complete chunks are kept)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied writing the store{where}; fix its permissions or use another --store"
    if exc.errno == errno.EROFS:
        return f"the store is on a read-only file system{where}; use another --store"
    return None


def emit(data: Any, as_json: bool, render: Callable[[Any], str] | None = None) -> None:
    """Print ``data`` as JSON for scripts, or through ``render`` for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif render is not None:
        click.echo(render(data))
    else:
        click.echo(str(data))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned text table (no extra dependency)."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=False))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in cells[1:])
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


@contextmanager
def progress_bar(desc: str, unit: str = "it", enabled: bool = True) -> Iterator[Progress]:
    """A callback for the library's ``progress`` argument, drawing a tqdm bar on stderr."""
    from tqdm import tqdm

    bar: tqdm | None = None

    def update(done: int, total: int, info: dict[str, Any]) -> None:
        nonlocal bar
        if not enabled:
            return
        if bar is None:  # disable=None: no bar when stderr is not a terminal (logs, CI)
            bar = tqdm(
                total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=None
            )
        bar.total = total
        if info:
            bar.set_postfix(
                {k: v for k, v in info.items() if isinstance(v, (int, float, str))}, refresh=False
            )
        bar.update(done - bar.n)  # tqdm rate-limits redraws itself

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
