"""The grammar of post-learning transform chains: one spec string, parsed once into Steps.

One spec string describes the whole chain, for the CLI and for sweeps alike::

    pool=max,pca=256,l2
    flipavg,power=0.5,l2,pca=128:whiten,l2
    pool=grid:1x1+2x2+3x3,l2
    l2,concat,pca=512:whiten        (per-entry steps, then concatenation, then shared steps)

Steps, in the order they may appear:

- ``pool=avg|max|gem[:p]|grid:1x1+2x2+...`` (first step only): pool a stored map or grid
  (entry rows of shape (C, g, g)) or the sub-patches of a crops view (rows (P, D));
- ``flipavg``: mean of the plain and the horizontally flipped view (two entries);
- ``power=a``: signed power ``sign(x) |x|**a``; ``l2``: L2-normalise each row;
- ``pca=N[:whiten]``: PCA to N dimensions, fitted on the training rows only;
- ``std``: standardise each dimension, fitted on the training rows only;
- ``concat``: marks where the entries of a "Concat" setting are joined; steps before it
  run on each entry alone, steps after it on the concatenation. Without the marker every
  step runs per entry and the results are concatenated at the end.

:func:`canonical_spec` gives the form used in keys. The steps run in
:mod:`featstore.evaluate.features.transforms` (fitted ones as scikit-learn estimators) and
:mod:`featstore.evaluate.features.stored_pooling` (``pool=``, on stored maps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from featstore.errors import SpecError, shown
from featstore.specs import DEFAULT_GEM_P

__all__ = ["POOL_MODES", "STEP_NAMES", "Step", "canonical_spec", "parse_spec", "spec_uses"]

STEP_NAMES = ("pool", "flipavg", "power", "l2", "pca", "std", "concat")
POOL_MODES = ("avg", "max", "gem", "grid")


@dataclass(frozen=True)
class Step:
    """One parsed step: its name and its canonical arguments."""

    name: str
    mode: str = ""  # pool: avg|max|gem|grid
    value: float | None = None  # pool gem: p; power: exponent
    levels: tuple[int, ...] = ()  # pool grid: k of each k x k level
    n: int = 0  # pca: components
    whiten: bool = False  # pca

    @property
    def text(self) -> str:
        """The canonical text of the step."""
        if self.name == "pool":
            if self.mode == "gem":
                return f"pool=gem:{_num(self.value)}"
            if self.mode == "grid":
                return "pool=grid:" + "+".join(f"{k}x{k}" for k in self.levels)
            return f"pool={self.mode}"
        if self.name == "power":
            return f"power={_num(self.value)}"
        if self.name == "pca":
            return f"pca={self.n}" + (":whiten" if self.whiten else "")
        return self.name

    @property
    def fitted(self) -> bool:
        """Whether the step learns state from the training rows."""
        return self.name in ("pca", "std")


def _num(value: float | None) -> str:
    """A number as it appears in a canonical spec: 3 not 3.0, 0.5 not 0.50."""
    v = float(value if value is not None else 0.0)
    return str(int(v)) if v.is_integer() else repr(v)


def _small_int(text: str) -> bool:
    """ASCII digits that int() reads ('²' is a digit to isdigit(); 5000 digits exceed int())."""
    return text.isascii() and text.isdigit() and len(text) <= 9


def _float(text: str, step: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"transform step {shown(step)}: {shown(text)} is not a number") from None
    if not math.isfinite(value):
        raise SpecError(f"transform step {shown(step)}: {shown(text)} is not a finite number")
    return value


def _parse_pool(arg: str, raw: str) -> Step:
    mode, _, rest = arg.partition(":")
    if mode not in POOL_MODES:
        raise SpecError(
            f"transform step {shown(raw)}: pool must be one of avg, max, gem[:p], grid:KxK+..."
        )
    if mode in ("avg", "max"):
        if rest:
            raise SpecError(f"transform step {shown(raw)}: pool={mode} takes no argument")
        return Step("pool", mode=mode)
    if mode == "gem":
        p = _float(rest, raw) if rest else DEFAULT_GEM_P
        if p <= 0:
            raise SpecError(f"transform step {shown(raw)}: the GeM exponent must be > 0")
        return Step("pool", mode="gem", value=p)
    levels = []
    for part in rest.split("+"):
        a, sep, b = part.partition("x")
        if not sep or not _small_int(a) or a != b or int(a) < 1:
            raise SpecError(
                f"transform step {shown(raw)}: grid levels are square cells like 1x1+2x2+3x3, not {shown(part)}"
            )
        levels.append(int(a))
    if len(set(levels)) != len(levels):
        raise SpecError(f"transform step {shown(raw)}: a grid level is listed twice")
    return Step("pool", mode="grid", levels=tuple(levels))


def _parse_step(raw: str) -> Step:
    name, sep, arg = raw.partition("=")
    name, arg = name.strip().lower(), arg.strip()
    if name not in STEP_NAMES:
        raise SpecError(
            f"unknown transform step {shown(raw)}; steps are pool=..., flipavg, power=a, l2, "
            "pca=N[:whiten], std, concat"
        )
    if name in ("flipavg", "l2", "std", "concat"):
        if sep:
            raise SpecError(f"transform step {shown(raw)}: {name} takes no value")
        return Step(name)
    if not arg:
        raise SpecError(f"transform step {shown(raw)} needs a value, e.g. {name}=...")
    if name == "pool":
        return _parse_pool(arg.lower(), raw)
    if name == "power":
        alpha = _float(arg, raw)
        if alpha <= 0:
            raise SpecError(f"transform step {shown(raw)}: the power must be > 0")
        return Step("power", value=alpha)
    # pca
    count, _, option = arg.partition(":")
    if not _small_int(count) or int(count) < 1:
        raise SpecError(f"transform step {shown(raw)}: pca needs a positive number of dimensions")
    if option not in ("", "whiten"):
        raise SpecError(f"transform step {shown(raw)}: the only pca option is ':whiten'")
    return Step("pca", n=int(count), whiten=option == "whiten")


def parse_spec(spec: str | Sequence[Step] | None) -> tuple[Step, ...]:
    """Parse and check a transform spec; SpecError names the offending step."""
    if spec is None:
        return ()
    if not isinstance(spec, str):
        steps = tuple(spec)
    else:
        text = spec.strip()
        if text.lower() in ("", "none"):
            return ()
        raws = [r.strip() for r in text.split(",")]
        if any(not r for r in raws):
            raise SpecError(
                f"transform spec {shown(spec)} has an empty step (two commas in a row?)"
            )
        steps = tuple(_parse_step(r) for r in raws)
    names = [s.name for s in steps]
    for once in ("pool", "flipavg", "concat"):
        if names.count(once) > 1:
            raise SpecError(f"transform spec {_text(steps)!r} has {once} more than once")
    if "pool" in names and names.index("pool") != 0:
        raise SpecError(
            f"transform spec {_text(steps)!r}: pool= must be the first step (it reads the stored map)"
        )
    if "flipavg" in names:
        before = steps[: names.index("flipavg")]
        if any(s.fitted for s in before):
            raise SpecError(
                f"transform spec {_text(steps)!r}: put flipavg before pca/std, which are fitted "
                "on one array per image"
            )
        if "concat" in names and names.index("concat") < names.index("flipavg"):
            raise SpecError(f"transform spec {_text(steps)!r}: flipavg must come before concat")
    return steps


def _text(steps: Sequence[Step]) -> str:
    return ",".join(s.text for s in steps) if steps else "none"


def canonical_spec(spec: str | Sequence[Step] | None) -> str:
    """The canonical text of a spec (``"none"`` when empty): equal chains, equal text."""
    return _text(parse_spec(spec))


def spec_uses(spec: str | Sequence[Step] | None, name: str) -> bool:
    """Whether the spec contains a step called ``name`` (e.g. "flipavg")."""
    return any(s.name == name for s in parse_spec(spec))
