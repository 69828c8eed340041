"""The options that choose features: one vocabulary for extract, evaluate and the store commands.

``featstore extract`` (what to compute), ``featstore evaluate`` (what to score) and
``featstore ls | rm | export`` (which entries) take the same flags, repeatable the same way:

  -d/--dataset NAME        one dataset (given twice: refused)
  -m/--model NET[,NET]     networks; repeated or comma-separated
  -l/--layer L[,L]         layers (alias or module name); repeated or comma-separated
  --pool SPEC[,SPEC]       stored pooling for every layer, LAYER=SPEC for one; repeatable
  --view V[,V]             plain, flip, crops:1x1,2x2,3x3; repeated or comma-separated
  --weights W              random, pretrained, sha256:PREFIX, FILE, or NET=W for one network
  --compute-dtype D        float32, bfloat16 or float16-amp (given twice: refused)
  --dtype D                storage dtype float16, float32 or float64 (given twice: refused)

Repeated values are all used (extract computes, evaluate scores, ls lists every
combination); an option that can take one value refuses a second instead of keeping the
last. What differs by command is only the default: extract writes (avg, plain, the
network's default weights, float16 storage, this machine's compute dtype) while evaluate
and the store commands select (any value, but evaluate's view is plain).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from featstore.specs import Pooling, View
from featstore.store.select import Selector, parse_weights

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")

ROLES = ("extract", "evaluate", "store")
STORAGE_DTYPES = ("float16", "float32", "float64")
_SCALE = re.compile(r"\d+(x\d+)?")


def split_values(values: Sequence[str], option: str, what: str) -> tuple[str, ...]:
    """Comma-separated and/or repeated names, stripped; a value naming nothing is refused."""
    out: list[str] = []
    for value in values:
        items = [part.strip() for part in value.split(",") if part.strip()]
        if not items:
            raise click.BadParameter(
                f"{value!r} names no {what}; give comma-separated names", param_hint=option
            )
        out.extend(items)
    return tuple(dict.fromkeys(out))


def split_views(values: Sequence[str]) -> tuple[str, ...]:
    """``("plain,crops:1x1,2x2", "flip")`` -> ``("plain", "crops:1x1,2x2", "flip")``: the
    scales after ``crops:`` belong to it, so views split on commas like the other options."""
    out: list[str] = []
    for value in values:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts:
            raise click.BadParameter(
                f"{value!r} names no view; give plain, flip or crops:1x1,2x2,3x3",
                param_hint="--view",
            )
        mine: list[str] = []
        for part in parts:
            if mine and mine[-1].lower().startswith("crops") and _SCALE.fullmatch(part):
                base = mine[-1].rstrip(":")
                mine[-1] = f"{base}{':' if base.lower() == 'crops' else ','}{part}"
            else:
                mine.append(part)
        out.extend(mine)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Choice:
    """What the choosing options said, parsed once (empty = not given)."""

    dataset: str | None = None
    models: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()  # raw --pool values (SPEC[,SPEC] or LAYER=SPEC[,SPEC])
    views: tuple[str, ...] = ()
    weights: Mapping[str, str] | None = None  # {NET or "*": choice}
    compute_dtype: str | None = None
    dtype: str | None = None

    def given(self) -> bool:
        """Whether any option chose something (a store command without one takes all)."""
        return bool(
            self.dataset
            or self.models
            or self.layers
            or self.pools
            or self.views
            or self.weights
            or self.compute_dtype
            or self.dtype
        )

    def weights_for(self, model: str) -> str | None:
        if not self.weights:
            return None
        return self.weights.get(model, self.weights.get("*"))

    def pool_table(self) -> dict[str, list[str]]:
        """``--pool`` as ``{"*" or LAYER: [SPEC, ...]}``; a LAYER=SPEC must name a chosen layer
        (when layers are chosen)."""
        table: dict[str, list[str]] = {}
        for value in self.pools:
            layer, sep, specs = value.partition("=")
            key, body = (layer.strip(), specs) if sep else ("*", value)
            items = [s.strip() for s in body.split(",") if s.strip()]
            if not key or not items:
                raise click.BadParameter(
                    f"{value!r} names no pooling; give SPEC[,SPEC] or LAYER=SPEC",
                    param_hint="--pool",
                )
            table.setdefault(key, []).extend(items)
        unknown = [k for k in table if k != "*" and self.layers and k not in self.layers]
        if unknown:
            raise click.BadParameter(
                f"names layer {unknown[0]!r}, which is not chosen with -l "
                f"({','.join(self.layers)}); add it with -l or fix the name",
                param_hint="--pool",
            )
        return table

    def selectors(self, view_default: str | None = None) -> list[Selector]:
        """Every combination of the chosen factors as a store selector (None = any)."""
        table = self.pool_table()
        layers: list[str | None] = list(self.layers)
        if not layers:  # LAYER=SPEC without -l chooses that layer
            named: list[str | None] = [k for k in table if k != "*"]
            layers = [None] if "*" in table or not named else []
            layers += named
        views: list[str | None] = list(self.views) or [view_default]
        out = []
        for model in self.models or (None,):
            weights = self.weights_for(model) if model else (self.weights or {}).get("*")
            for layer in layers:
                specs: list[str | None] = [*(table.get(layer or "*") or table.get("*") or [])]
                for pool in specs or [None]:
                    for view in views:
                        out.append(
                            Selector(
                                network=model,
                                layer=layer,
                                pooling=Pooling.parse(pool) if pool else None,
                                view=View.parse(view) if view else None,
                                weights=parse_weights(weights),
                                compute_dtype=self.compute_dtype,
                                dtype=self.dtype,
                            )
                        )
        return out


def _one(values: tuple[str, ...], option: str, what: str) -> str | None:
    values = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(values) > 1:
        raise click.BadParameter(
            f"given {len(values)} times ({', '.join(values)}); a command takes one {what}: "
            "run it once for each",
            param_hint=option,
        )
    return values[0] if values else None


def weights_table(values: Sequence[str], models: Sequence[str]) -> dict[str, str] | None:
    """``--weights W`` for every network, ``--weights NET=W`` for one; a second choice for
    the same networks is refused, never silently replaced."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, choice = value.partition("=")
        if sep and name.strip() in models:
            key, choice = name.strip(), choice.strip()
        elif sep and "/" not in name and os.sep not in name and not os.path.exists(value):
            raise click.BadParameter(
                f"{value!r} names network {name.strip()!r}, which is not chosen with -m"
                + (f" ({','.join(models)})" if models else "")
                + "; add it with -m or fix the name",
                param_hint="--weights",
            )
        else:
            key, choice = "*", value.strip()
        if not choice:
            raise click.BadParameter(f"{value!r} names no weights", param_hint="--weights")
        if key in out and out[key] != choice:
            whose = "every network" if key == "*" else key
            raise click.BadParameter(
                f"two weights for {whose} ({out[key]}, {choice}); give one, or NET=W per network",
                param_hint="--weights",
            )
        out[key] = choice
    return out or None


def _help(role: str) -> dict[str, str]:
    select = "[default: any]"
    if role == "extract":
        return {
            "dataset": "Dataset name or id (see `featstore datasets list`).",
            "model": "Network(s): registered, named in the store (featstore models add) or "
            "fine-tuned; comma-separated or repeated.",
            "layer": "Layer(s), alias or module name; comma-separated or repeated "
            "(default: each network's penultimate).",
            "pool": "Stored pooling: none, avg, max, gem[:p], grid:max:G, map:avg:S; "
            "LAYER=SPEC for one layer; repeatable. [default: avg]",
            "view": "View(s) to store: plain, flip, crops:1x1,2x2,3x3 (retrieval); "
            "comma-separated or repeated. [default: plain]",
            "weights": "pretrained (offline), random, FILE (state dict or checkpoint), or NET=W "
            "for one network. [default: pretrained]",
            "compute_dtype": "float32, bfloat16 or float16-amp (part of the key) "
            "[default: float16-amp on CUDA, float32 on CPU].",
            "dtype": "Storage dtype. [default: float16]",
        }
    where = "Entries of" if role == "store" else "Evaluate entries of"
    return {
        "dataset": f"{where} this dataset (name or id)"
        + (" [default: any]." if role == "store" else "."),
        "model": "Network(s): registered, named in the store (featstore models add) or "
        "fine-tuned; comma-separated or repeated"
        + (" (a row per network)." if role == "evaluate" else f". {select}"),
        "layer": "Layer(s), alias or module name; comma-separated or repeated"
        + (" (a row each)." if role == "evaluate" else f". {select}"),
        "pool": "Stored pooling as extract takes it: SPEC[,SPEC] for every layer, LAYER=SPEC "
        f"for one (a row per pooling); repeatable. {select}",
        "view": "Stored view(s): plain, flip, crops:1x1,2x2,3x3; comma-separated or repeated "
        + ("(a row each). [default: plain]" if role == "evaluate" else select),
        "weights": "random, pretrained, sha256:PREFIX (as featstore ls shows), a FILE (no file "
        f"needed if an extraction recorded its path), or NET=W for one network. {select}",
        "compute_dtype": f"Entries computed in float32, bfloat16 or float16-amp. {select}",
        "dtype": f"Entries stored as float16, float32 or float64. {select}",
    }


def choose_options(role: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Add the choosing options to a command; it receives them as one ``choice: Choice``.

    The command's signature changes (the options come in, one ``choice`` goes out), so the
    decorated function is typed ``Callable[..., R]``: only its return type is kept."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    helps = _help(role)
    write = role == "extract"

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> R:
            models = split_values(kwargs.pop("choose_models"), "-m/--model", "network")
            kwargs["choice"] = Choice(
                dataset=_one(kwargs.pop("choose_dataset"), "-d/--dataset", "dataset"),
                models=models,
                layers=split_values(kwargs.pop("choose_layers"), "-l/--layer", "layer"),
                pools=tuple(kwargs.pop("choose_pools")),
                views=split_views(kwargs.pop("choose_views")),
                weights=weights_table(kwargs.pop("choose_weights"), models),
                compute_dtype=_one(
                    kwargs.pop("choose_compute_dtype"), "--compute-dtype", "compute dtype"
                ),
                dtype=_one(kwargs.pop("choose_dtype"), "--dtype", "storage dtype"),
            )
            return func(*args, **kwargs)

        options = [
            click.option(
                "-d", "--dataset", "choose_dataset", multiple=True, required=role != "store",
                metavar="NAME", help=helps["dataset"],
            ),
            click.option(
                "-m", "--model", "choose_models", multiple=True, required=role == "evaluate",
                default=("efficientnet_lite0",) if write else (), show_default=write,
                metavar="NET[,NET]", help=helps["model"],
            ),
            click.option(
                "-l", "--layer", "choose_layers", multiple=True, required=role == "evaluate",
                metavar="LAYER[,LAYER]", help=helps["layer"],
            ),
            click.option("--pool", "choose_pools", multiple=True, metavar="SPEC", help=helps["pool"]),
            click.option("--view", "choose_views", multiple=True, metavar="VIEW", help=helps["view"]),
            click.option(
                "--weights", "choose_weights", multiple=True, metavar="W", help=helps["weights"]
            ),
            click.option(
                "--compute-dtype", "choose_compute_dtype", multiple=True, metavar="DTYPE",
                help=helps["compute_dtype"],
            ),
            click.option(
                "--dtype", "choose_dtype", multiple=True, type=click.Choice(STORAGE_DTYPES),
                default=("float16",) if write else (), help=helps["dtype"],
            ),
        ]  # fmt: skip
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def renamed(old: str, new: str, *, flag: bool = False) -> Callable[[F], F]:
    """A hidden option under an old spelling that refuses, in one line, naming the new one."""

    def refuse(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value:
            hint = new.format(value=value) if isinstance(value, str) else new
            raise click.UsageError(f"{old} is now {hint}", ctx=ctx)

    return click.option(
        old, is_flag=flag, default=None if not flag else False, hidden=True,
        expose_value=False, callback=refuse, type=None if flag else str,
    )  # fmt: skip


def chosen_entries(store: Any, choice: Choice, *, whole: bool = False) -> list[Any]:
    """The entries of ``store`` the options choose, through the store's one selector
    (:class:`featstore.store.select.Catalog`); every combination's matches, each once.

    ``whole`` leaves out entries that hold the dataset's images among others' (``rm -d``
    must not remove a superset entry other datasets read).
    """
    from featstore.store.content import RowView
    from featstore.store.select import Catalog

    catalog = Catalog(store)
    dataset = store.get_dataset(choice.dataset) if choice.dataset else None
    found: dict[str, Any] = {}
    for sel in choice.selectors():
        for entry in catalog.select(sel, dataset):
            if not (whole and isinstance(entry, RowView)):
                found.setdefault(entry.key, entry)
    return list(found.values())


def describe_choice(choice: Choice) -> str:
    """The options given, as the user would type them (for 'nothing matches' messages)."""
    bits = [f"-d {choice.dataset}"] if choice.dataset else []
    bits += [f"-m {','.join(choice.models)}"] if choice.models else []
    bits += [f"-l {','.join(choice.layers)}"] if choice.layers else []
    bits += [f"--pool {p}" for p in choice.pools]
    bits += [f"--view {','.join(choice.views)}"] if choice.views else []
    bits += [
        f"--weights {k}={v}" if k != "*" else f"--weights {v}"
        for k, v in (choice.weights or {}).items()
    ]
    bits += [f"--compute-dtype {choice.compute_dtype}"] if choice.compute_dtype else []
    bits += [f"--dtype {choice.dtype}"] if choice.dtype else []
    return " ".join(bits)
