"""Post-learning transforms derived from cached feature entries, never from a forward pass.

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

Fitted steps are scikit-learn estimators (PCA, StandardScaler, Normalizer) in a
``Pipeline``; :class:`FeatureTransform` follows scikit-learn's conventions (``fit`` returns
self, learned state ends in ``_``). :func:`canonical_spec` gives the form used in keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from featstore.errors import SpecError, TransformError
from featstore.progress import Progress
from featstore.specs import DEFAULT_GEM_P, GEM_EPS, Pooling, parse_pooling

__all__ = [
    "FeatureTransform",
    "Part",
    "SignedPower",
    "Step",
    "canonical_spec",
    "parse_spec",
    "pool_rows",
    "spec_uses",
]


STEP_NAMES = ("pool", "flipavg", "power", "l2", "pca", "std", "concat")
POOL_MODES = ("avg", "max", "gem", "grid")


# --------------------------------------------------------------------------------------
# spec parsing
# --------------------------------------------------------------------------------------


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


def _float(text: str, step: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"transform step {step!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise SpecError(f"transform step {step!r}: {text!r} is not a finite number")
    return value


def _parse_pool(arg: str, raw: str) -> Step:
    mode, _, rest = arg.partition(":")
    if mode not in POOL_MODES:
        raise SpecError(
            f"transform step {raw!r}: pool must be one of avg, max, gem[:p], grid:KxK+..."
        )
    if mode in ("avg", "max"):
        if rest:
            raise SpecError(f"transform step {raw!r}: pool={mode} takes no argument")
        return Step("pool", mode=mode)
    if mode == "gem":
        p = _float(rest, raw) if rest else DEFAULT_GEM_P
        if p <= 0:
            raise SpecError(f"transform step {raw!r}: the GeM exponent must be > 0")
        return Step("pool", mode="gem", value=p)
    levels = []
    for part in rest.split("+"):
        a, sep, b = part.partition("x")
        if not sep or not a.isdigit() or a != b or int(a) < 1:
            raise SpecError(
                f"transform step {raw!r}: grid levels are square cells like 1x1+2x2+3x3, not {part!r}"
            )
        levels.append(int(a))
    if len(set(levels)) != len(levels):
        raise SpecError(f"transform step {raw!r}: a grid level is listed twice")
    return Step("pool", mode="grid", levels=tuple(levels))


def _parse_step(raw: str) -> Step:
    name, sep, arg = raw.partition("=")
    name, arg = name.strip().lower(), arg.strip()
    if name not in STEP_NAMES:
        raise SpecError(
            f"unknown transform step {raw!r}; steps are pool=..., flipavg, power=a, l2, "
            "pca=N[:whiten], std, concat"
        )
    if name in ("flipavg", "l2", "std", "concat"):
        if sep:
            raise SpecError(f"transform step {raw!r}: {name} takes no value")
        return Step(name)
    if not arg:
        raise SpecError(f"transform step {raw!r} needs a value, e.g. {name}=...")
    if name == "pool":
        return _parse_pool(arg.lower(), raw)
    if name == "power":
        alpha = _float(arg, raw)
        if alpha <= 0:
            raise SpecError(f"transform step {raw!r}: the power must be > 0")
        return Step("power", value=alpha)
    # pca
    count, _, option = arg.partition(":")
    if not count.isdigit() or int(count) < 1:
        raise SpecError(f"transform step {raw!r}: pca needs a positive number of dimensions")
    if option not in ("", "whiten"):
        raise SpecError(f"transform step {raw!r}: the only pca option is ':whiten'")
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
            raise SpecError(f"transform spec {spec!r} has an empty step (two commas in a row?)")
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


# --------------------------------------------------------------------------------------
# pooling stored maps, grids and sub-patches
# --------------------------------------------------------------------------------------


def _adaptive_max(x: np.ndarray, k: int) -> np.ndarray:
    """Adaptive max pooling of (N, C, h, w) to (N, C, k, k), torch's cell boundaries."""
    n, c, h, w = x.shape
    if h % k == 0 and w % k == 0:
        return x.reshape(n, c, k, h // k, k, w // k).max(axis=(3, 5))
    out = np.empty((n, c, k, k), dtype=x.dtype)
    for i in range(k):
        r0, r1 = (i * h) // k, -((-(i + 1) * h) // k)
        for j in range(k):
            c0, c1 = (j * w) // k, -((-(j + 1) * w) // k)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].max(axis=(2, 3))
    return out


_POOL_NAMES = {"avg": "Average pooling", "max": "Max pooling", "gem": "GeM", "grid": "Grid pooling"}


def _stored_kind(pooling: Pooling, row_shape: tuple[int, ...]) -> tuple[str, int]:
    """('vector'|'grid'|'map'|'patches', size) for an entry's stored pooling and row shape."""
    if len(row_shape) == 3 and pooling.kind == "grid":
        return "grid", row_shape[-1]
    if len(row_shape) == 3:  # map:avg:s, or any other stored (C, h, w) average-like map
        return "map", row_shape[-1]
    if len(row_shape) == 2:
        return "patches", row_shape[0]
    return "vector", 0


def pool_rows(x: np.ndarray, step: Step | None, pooling: str | Pooling) -> np.ndarray:
    """Rows of one entry (N, *row_shape) stored with ``pooling``, pooled to (N, D) vectors.

    Raises TransformError when the stored form cannot give the asked pooling exactly (or,
    for reduced average maps, in the documented approximate way).
    """
    x = np.asarray(x, dtype=np.float32)
    pooling = parse_pooling(pooling)
    kind, size = _stored_kind(pooling, tuple(x.shape[1:]))
    if step is None:
        if kind == "vector":
            return x
        if kind == "patches":
            raise TransformError(
                f"this entry holds {size} sub-patches per image (view with pooling={pooling}); "
                "add pool=avg or pool=max as the first transform step to combine them"
            )
        raise TransformError(
            f"this entry holds a {size}x{size} spatial map per image (pooling={pooling}); add a "
            "pool= step to the transform, e.g. pool=max or pool=grid:1x1+2x2"
        )
    mode, name = step.mode, _POOL_NAMES[step.mode]
    if kind == "vector":
        if _same_pooling(step, pooling):
            return x
        raise TransformError(
            f"{name} needs a spatial map; this entry was stored with pooling={pooling}"
        )
    if kind == "patches":
        if mode == "avg":
            return x.mean(axis=1)
        if mode == "max":
            return x.max(axis=1)
        raise TransformError(
            f"{name} needs a spatial map; this entry holds sub-patch vectors (pooling={pooling}); "
            "use pool=avg or pool=max"
        )
    if mode == "max":
        return x.max(axis=(2, 3))
    if mode == "grid":
        if kind == "grid":
            bad = [k for k in step.levels if size % k]
            if bad:
                raise TransformError(
                    f"a {bad[0]}x{bad[0]} grid cannot be derived exactly from the stored "
                    f"{size}x{size} max grid (pooling={pooling}); use levels that divide {size}, or "
                    f"extract with a grid size that all levels divide (e.g. grid:max:{_lcm(step.levels)})"
                )
        return np.concatenate(
            [_adaptive_max(x, k).reshape(len(x), -1) for k in step.levels], axis=1
        )
    if kind == "grid":
        raise TransformError(
            f"{name} needs an averaged map; this entry was stored with pooling={pooling}, which keeps "
            "only cell maxima (extract with pooling map:avg:S to derive avg or GeM)"
        )
    if mode == "avg":
        return x.mean(axis=(2, 3))
    p = float(step.value or DEFAULT_GEM_P)
    return np.power(np.power(np.maximum(x, GEM_EPS), p).mean(axis=(2, 3)), 1.0 / p)


def _same_pooling(step: Step, pooling: Pooling) -> bool:
    if step.mode in ("avg", "max"):
        return pooling.kind == step.mode
    if step.mode == "gem":
        return pooling.kind == "gem" and float(pooling.p or DEFAULT_GEM_P) == float(
            step.value or DEFAULT_GEM_P
        )
    return False


def _lcm(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out = out * v // math.gcd(out, v)
    return out


# --------------------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------------------


class SignedPower(TransformerMixin, BaseEstimator):
    """Signed power normalisation ``sign(x) * |x| ** alpha`` (stateless)."""

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = alpha

    def fit(self, X: Any, y: Any = None) -> SignedPower:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        return np.sign(X) * np.power(np.abs(X), self.alpha)


def _estimator(step: Step, seed: int) -> Any:
    if step.name == "power":
        return SignedPower(alpha=float(step.value or 1.0))
    if step.name == "l2":
        return Normalizer(norm="l2")
    if step.name == "std":
        return StandardScaler()
    if step.name == "pca":
        return PCA(n_components=step.n, whiten=step.whiten, random_state=seed)
    raise SpecError(f"step {step.text!r} is not a vector step")  # pragma: no cover - parse guards


def _pipeline(steps: Sequence[Step], seed: int) -> Pipeline | None:
    if not steps:
        return None
    return Pipeline([(f"{i}_{s.name}", _estimator(s, seed)) for i, s in enumerate(steps)])


def _check_pca(steps: Sequence[Step], dim: int, n_train: int, where: str) -> None:
    """PCA to more dimensions than min(training rows, input dims) is refused before fitting."""
    for step in steps:
        if step.name == "pca":
            limit = min(n_train, dim)
            if step.n > limit:
                raise TransformError(
                    f"{step.text} asks for more dimensions than the data allow: {n_train} training "
                    f"samples of {dim} dims{where} give at most {limit} components; choose "
                    f"pca=N with N <= {limit}"
                )
            dim = step.n


# --------------------------------------------------------------------------------------
# the chain over entries
# --------------------------------------------------------------------------------------


class ArraySource(Protocol):
    """What a transform reads: a feature entry (featstore.store.Entry) or alike."""

    key: str
    attrs: dict[str, Any]
    shape: tuple[int, ...]

    @property
    def n_chunks(self) -> int: ...

    def chunk_bounds(self, index: int) -> tuple[int, int]: ...

    def read(self, rows: Any = None) -> np.ndarray: ...


@dataclass(frozen=True)
class Part:
    """One member of a setting: an entry, and its flip-view twin when flipavg needs one."""

    plain: ArraySource
    flip: ArraySource | None = None

    @property
    def keys(self) -> list[str]:
        return [self.plain.key] + ([self.flip.key] if self.flip is not None else [])


def _read_pooled(
    source: ArraySource,
    step: Step | None,
    rows: np.ndarray | None,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """Read ``rows`` (all when None) chunk by chunk, pooling each block as it arrives."""
    pooling = str(source.attrs.get("pooling", "none"))
    if rows is not None:
        out = pool_rows(source.read(np.asarray(rows, dtype=np.int64)), step, pooling)
        if progress:
            progress(source.n_chunks)
        return out
    blocks = []
    for i in range(source.n_chunks):
        start, stop = source.chunk_bounds(i)
        blocks.append(pool_rows(source.read(slice(start, stop)), step, pooling))
        if progress:
            progress(1)
    if not blocks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(blocks, axis=0)


class FeatureTransform(BaseEstimator):
    """A parsed transform chain applied to one or more entries (a "Concat" setting).

    ``fit(parts, train_rows)`` fits PCA/standardisation on the training rows only;
    ``transform(parts, rows)`` returns (len(rows), D) float32 features. Learned state:
    ``steps_``, ``part_pipelines_`` (one per part, or None), ``post_pipeline_``,
    ``n_features_out_``.
    """

    def __init__(self, spec: str = "", seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed

    # --- public API -------------------------------------------------------------------
    def fit(
        self, parts: Sequence[Part], train_rows: np.ndarray, progress: Progress | None = None
    ) -> FeatureTransform:
        train_rows = np.asarray(train_rows, dtype=np.int64)
        blocks = self._derive(parts, train_rows, progress)
        self._fit_blocks(blocks, np.arange(len(train_rows)))
        return self

    def transform(
        self,
        parts: Sequence[Part],
        rows: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        if not hasattr(self, "steps_"):
            raise TransformError("this FeatureTransform is not fitted yet; call fit first")
        blocks = self._derive(parts, rows, progress)
        return self._apply_blocks(blocks)

    def fit_transform(
        self, parts: Sequence[Part], train_rows: np.ndarray, progress: Progress | None = None
    ) -> np.ndarray:
        """Fit on ``train_rows`` and return every row transformed, reading each entry once."""
        blocks = self._derive(parts, None, progress)
        self._fit_blocks(blocks, np.asarray(train_rows, dtype=np.int64))
        return self._apply_blocks(blocks)

    @property
    def canonical(self) -> str:
        return canonical_spec(self.spec)

    # --- internals --------------------------------------------------------------------
    def _split(self) -> tuple[Step | None, list[Step], bool, list[Step], list[Step]]:
        """(pool, steps before flipavg, flipavg?, per-part fitted-able steps, after concat)."""
        steps = list(parse_spec(self.spec))
        pool = steps.pop(0) if steps and steps[0].name == "pool" else None
        names = [s.name for s in steps]
        post: list[Step] = []
        if "concat" in names:
            i = names.index("concat")
            steps, post = steps[:i], steps[i + 1 :]
            names = names[:i]
        flip = "flipavg" in names
        if flip:
            i = names.index("flipavg")
            return pool, steps[:i], True, steps[i + 1 :], post
        return pool, [], False, steps, post

    def _derive(
        self, parts: Sequence[Part], rows: np.ndarray | None, progress: Progress | None
    ) -> list[np.ndarray]:
        """Per part: read and pool each view, apply the stateless pre-flip steps, average."""
        if not parts:
            raise TransformError("a transform needs at least one feature entry")
        pool, pre, flip, _, _ = self._split()
        sources = []
        for part in parts:
            if flip and part.flip is None:
                raise TransformError(
                    f"flipavg needs the flip view of entry {part.plain.key}; extract the layer "
                    "with the flip view (featstore extract ... --flip) or drop flipavg"
                )
            sources.append([part.plain] + ([part.flip] if flip and part.flip is not None else []))
        n_rows = {s.shape[0] for views in sources for s in views}
        if len(n_rows) != 1:
            raise TransformError(
                f"entries of one setting must have the same rows; got row counts {sorted(n_rows)}"
            )
        total = sum(s.n_chunks for views in sources for s in views)
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress:
                progress(done[0], total, {"stage": "read"})

        blocks = []
        for views in sources:
            arrays = []
            for source in views:
                x = _read_pooled(source, pool, rows, tick)
                for step in pre:
                    x = _estimator(step, self.seed).fit_transform(x)
                arrays.append(np.asarray(x, dtype=np.float32))
            if len(arrays) == 2 and arrays[0].shape != arrays[1].shape:
                raise TransformError(
                    f"plain and flip views differ in shape: {arrays[0].shape} vs {arrays[1].shape}"
                )
            blocks.append(arrays[0] if len(arrays) == 1 else (arrays[0] + arrays[1]) / 2.0)
        return blocks

    def _fit_blocks(self, blocks: list[np.ndarray], train_rows: np.ndarray) -> None:
        pool, pre, flip, per_part, post = self._split()
        self.steps_ = parse_spec(self.spec)
        n_train = len(train_rows)
        if n_train == 0:
            raise TransformError("cannot fit a transform on an empty training split")
        self.part_pipelines_ = []
        outs = []
        for i, x in enumerate(blocks):
            where = f" (entry {i + 1} of {len(blocks)})" if len(blocks) > 1 else ""
            _check_pca(per_part, x.shape[1], n_train, where)
            pipe = _pipeline(per_part, self.seed)
            if pipe is not None:
                pipe.fit(x[train_rows])
            self.part_pipelines_.append(pipe)
            outs.append(x[train_rows] if pipe is None else pipe.transform(x[train_rows]))
        joined = np.concatenate(outs, axis=1)
        _check_pca(post, joined.shape[1], n_train, " after concat")
        self.post_pipeline_ = _pipeline(post, self.seed)
        if self.post_pipeline_ is not None:
            self.post_pipeline_.fit(joined)
            joined = self.post_pipeline_.transform(joined[:1])
        self.n_features_out_ = int(joined.shape[1])

    def _apply_blocks(self, blocks: list[np.ndarray]) -> np.ndarray:
        if len(blocks) != len(self.part_pipelines_):
            raise TransformError(
                f"transform was fitted on {len(self.part_pipelines_)} entries, got {len(blocks)}"
            )
        outs = [
            x if pipe is None else pipe.transform(x)
            for x, pipe in zip(blocks, self.part_pipelines_, strict=True)
        ]
        joined = np.concatenate(outs, axis=1)
        if self.post_pipeline_ is not None:
            joined = self.post_pipeline_.transform(joined)
        return np.ascontiguousarray(joined, dtype=np.float32)
