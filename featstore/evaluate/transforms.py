"""Post-learning transforms derived from cached feature entries, never from a forward pass.

A chain is parsed by :mod:`featstore.evaluate.transform_spec` (``pool=max,pca=256,l2``,
``flipavg,power=0.5,l2,pca=128:whiten,l2``, ``l2,concat,pca=512:whiten``); ``pool=`` steps
run on stored maps (:mod:`featstore.evaluate.stored_pooling`); fitted steps are scikit-learn
estimators (PCA, StandardScaler, Normalizer) in a ``Pipeline``. :class:`FeatureTransform`
follows scikit-learn's conventions (``fit`` returns self, learned state ends in ``_``) and
reads an entry's rows only when it needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from featstore.errors import SpecError, TransformError
from featstore.evaluate.stored_pooling import pool_rows
from featstore.evaluate.transform_spec import Step, canonical_spec, parse_spec
from featstore.progress import Progress

__all__ = ["ArraySource", "FeatureTransform", "Part", "SignedPower"]


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


def _check_finite(x: np.ndarray, source: Any) -> None:
    """Stored features must be finite; scikit-learn would stop on NaN/inf with a traceback."""
    finite = np.isfinite(x)
    if finite.all():
        return
    rows = int((~finite).reshape(len(x), -1).any(axis=1).sum())
    key = getattr(source, "key", "?")
    raise TransformError(
        f"entry {key} holds NaN or infinite values in {rows} of {len(x)} rows (a float16 entry "
        f"overflows above 65504); remove it (featstore rm {key}) and extract it again with "
        "--dtype float32"
    )


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
                _check_finite(x, source)
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
