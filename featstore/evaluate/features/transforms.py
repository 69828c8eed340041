"""Post-learning transforms derived from cached feature entries, never from a forward pass.

A chain is parsed by :mod:`featstore.evaluate.features.transform_spec` (``pool=max,pca=256,l2``,
``flipavg,power=0.5,l2,pca=128:whiten,l2``, ``l2,concat,pca=512:whiten``); ``pool=`` steps
run on stored maps (:mod:`featstore.evaluate.features.stored_pooling`); the vector steps are
estimators (:class:`~featstore.evaluate.features.pca.CovariancePCA`, StandardScaler, Normalizer) in a
scikit-learn ``Pipeline``. :class:`FeatureTransform` follows scikit-learn's conventions
(``fit`` returns self, learned state ends in ``_``).

Memory stays bounded by the output: an entry is read one stored chunk at a time
(``Entry.read_blocks``), each block is pooled and run through the steps as it arrives, and
the result lands in one preallocated float32 array of the final shape, so neither the
stored maps nor the pooled matrix before a PCA are ever all in memory. A fitted step
(``pca``, ``std``) learns from the training rows in a pass of its own (PCA accumulates the
covariance, StandardScaler its moments): a chain with k fitted steps per entry reads its
entries k + 1 times. Steps after ``concat`` run on the joined matrix, in memory.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from featstore.errors import SpecError, TransformError
from featstore.evaluate.features.parts import (  # no scikit-learn: lookups need them
    ArraySource,
    Part,
)
from featstore.evaluate.features.pca import BLOCK_ROWS, CovariancePCA
from featstore.evaluate.features.stored_pooling import pool_rows
from featstore.evaluate.features.transform_spec import Step, canonical_spec, parse_spec
from featstore.progress import Progress

__all__ = ["ArraySource", "FeatureTransform", "Part", "SignedPower"]


class SignedPower(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn has no types
    """Signed power normalisation ``sign(x) * |x| ** alpha`` (stateless)."""

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = alpha

    def fit(self, X: Any, y: Any = None) -> SignedPower:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        out: np.ndarray = np.sign(X) * np.power(np.abs(X), self.alpha)
        return out


def _estimator(step: Step) -> Any:
    if step.name == "power":
        return SignedPower(alpha=float(step.value or 1.0))
    if step.name == "l2":
        return Normalizer(norm="l2")
    if step.name == "std":
        return StandardScaler()
    if step.name == "pca":
        return CovariancePCA(n_components=step.n, whiten=step.whiten)
    raise SpecError(f"step {step.text!r} is not a vector step")  # pragma: no cover - parse guards


def _pipeline(steps: Sequence[Step]) -> Pipeline | None:
    if not steps:
        return None
    return Pipeline([(f"{i}_{s.name}", _estimator(s)) for i, s in enumerate(steps)])


def _out_dim(steps: Sequence[Step], dim: int) -> int:
    """Columns after ``steps`` for ``dim`` columns in: only a PCA changes them."""
    for step in steps:
        if step.name == "pca":
            dim = step.n
    return dim


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


def _fit_stepwise(pipe: Pipeline, dim: int, blocks: Callable[[], Iterable[np.ndarray]]) -> None:
    """Fit each step of ``pipe`` on what the steps before it make of the training rows.

    ``blocks()`` starts a fresh pass over the training rows (in blocks); each fitted step
    takes one pass (CovariancePCA accumulates its covariance, StandardScaler its moments
    through ``partial_fit``); a stateless step (l2, power) learns nothing and is fitted on
    one row of zeros, without a pass.
    """
    for k, (_, estimator) in enumerate(pipe.steps):
        head = [e for _, e in pipe.steps[:k]]
        inputs = (_apply(head, b) for b in blocks())
        if isinstance(estimator, CovariancePCA):
            estimator.fit_blocks(inputs)
            dim = estimator.n_components
        elif isinstance(estimator, StandardScaler):
            for block in inputs:
                estimator.partial_fit(block)
        else:
            estimator.fit(np.zeros((1, dim), dtype=np.float32))


def _apply(estimators: Sequence[Any], x: np.ndarray) -> np.ndarray:
    for estimator in estimators:
        x = estimator.transform(x)
    return np.asarray(x, dtype=np.float32)


# --------------------------------------------------------------------------------------
# the chain over entries
# --------------------------------------------------------------------------------------


def _pooled_dim(source: ArraySource, pool: Step | None) -> int:
    """Columns of the source's rows once pooled (TransformError when the pooling cannot be had)."""
    zero = np.zeros((1, *source.shape[1:]), dtype=np.float32)
    return int(pool_rows(zero, pool, str(source.attrs.get("pooling", "none"))).shape[1])


def _nonfinite_rows(x: np.ndarray) -> int:
    """How many rows hold NaN or inf (scikit-learn would stop on them with a traceback)."""
    finite = np.isfinite(x)
    return 0 if finite.all() else int((~finite).reshape(len(x), -1).any(axis=1).sum())


def _nonfinite_error(source: ArraySource, bad: int, n: int) -> TransformError:
    key = source.key
    return TransformError(
        f"entry {key} holds NaN or infinite values in {bad} of {n} rows (a float16 entry "
        f"overflows above 65504); remove it (featstore rm {key}) and extract it again with "
        "--dtype float32"
    )


def _pool_views(
    views: Sequence[ArraySource],
    block: np.ndarray,
    rows: Any,
    pool: Step | None,
    reader: _Reader,
    bad: list[int],
) -> list[np.ndarray]:
    """``block`` (the first view's stored rows ``rows``) and the same rows of the other
    view, pooled; adds each view's count of non-finite rows to ``bad``."""
    raws = [block] + [reader.read(view, rows) for view in views[1:]]
    out = []
    for i, (source, raw) in enumerate(zip(views, raws, strict=True)):
        x = pool_rows(raw, pool, str(source.attrs.get("pooling", "none")))
        bad[i] += _nonfinite_rows(x)
        out.append(x)
    return out


class _Reader:
    """The reads of one public call: seconds spent reading (decoding and checking chunks),
    and progress in chunk units over every pass the call makes (monotonic, ends at total)."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total = progress, total
        self.done = 0
        self.seconds = 0.0

    def blocks(
        self, source: ArraySource, rows: np.ndarray | None
    ) -> Iterator[tuple[Any, np.ndarray]]:
        """One pass: ``source.read_blocks(rows)``, timed; counts ``source.n_chunks`` units."""
        cap = self.done + source.n_chunks
        blocks = iter(source.read_blocks(rows))
        while True:
            t0 = time.perf_counter()
            item = next(blocks, None)
            self.seconds += time.perf_counter() - t0
            if item is None:
                break
            yield item
            del item  # never hold a block while the next one is decoded
            self._report(min(self.done + 1, cap))
        self._report(cap)

    def read(self, source: ArraySource, rows: Any) -> np.ndarray:
        t0 = time.perf_counter()
        out = source.read(rows)
        self.seconds += time.perf_counter() - t0
        return out

    def _report(self, done: int) -> None:
        if done > self.done:
            self.done = done
            if self.progress is not None:
                self.progress(done, self.total, {"stage": "read"})


class FeatureTransform(BaseEstimator):  # type: ignore[misc]  # sklearn has no types
    """A parsed transform chain applied to one or more entries (a "Concat" setting).

    ``fit(parts, train_rows)`` fits PCA/standardisation on the training rows only;
    ``transform(parts, rows)`` returns (len(rows), D) float32 features. Learned state:
    ``steps_``, ``part_pipelines_`` (one per part, or None), ``part_dims_`` (columns in and
    out of each part's steps), ``post_pipeline_``, ``n_features_out_``, and ``timings_``:
    seconds spent reading entries (``read_s``) and on everything else (``transform_s``)
    since the last fit. The chain is deterministic; ``seed`` is kept for the record.
    """

    def __init__(self, spec: str = "", seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed

    # --- public API -------------------------------------------------------------------
    def fit(
        self, parts: Sequence[Part], train_rows: np.ndarray, progress: Progress | None = None
    ) -> FeatureTransform:
        train_rows = np.asarray(train_rows, dtype=np.int64)
        reader = _Reader(progress, self.n_reads(parts, fit=True, output=False))
        t0 = time.perf_counter()
        self._fit_parts(parts, train_rows, reader)
        if self._post_fitted():
            self._fit_post(self._joined(parts, train_rows, reader), None)
        self._clock(t0, reader, reset=True)
        return self

    def transform(
        self,
        parts: Sequence[Part],
        rows: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        if not hasattr(self, "steps_"):
            raise TransformError("this FeatureTransform is not fitted yet; call fit first")
        rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        reader = _Reader(progress, self.n_reads(parts, fit=False, output=True))
        t0 = time.perf_counter()
        out = self._apply_post(self._joined(parts, rows, reader))
        self._clock(t0, reader, reset=False)
        return out

    def fit_transform(
        self, parts: Sequence[Part], train_rows: np.ndarray, progress: Progress | None = None
    ) -> np.ndarray:
        """Fit on ``train_rows`` and return every row transformed (one pass per fitted step
        over the training rows, then one over all rows)."""
        train_rows = np.asarray(train_rows, dtype=np.int64)
        reader = _Reader(progress, self.n_reads(parts, fit=True, output=True))
        t0 = time.perf_counter()
        self._fit_parts(parts, train_rows, reader)
        joined = self._joined(parts, None, reader)
        if self._post_fitted():
            self._fit_post(joined, train_rows)
        out = self._apply_post(joined)
        self._clock(t0, reader, reset=True)
        return out

    def n_reads(self, parts: Sequence[Part], *, fit: bool = True, output: bool = True) -> int:
        """Progress units of a call: the chunks of every part, once per pass over them
        (``fit``: one pass per fitted step; ``output``: one pass for the result)."""
        _, _, _, per_part, post = self._split()
        passes = sum(s.fitted for s in per_part) if fit else 0
        passes += 1 if output or (fit and any(s.fitted for s in post)) else 0
        return passes * sum(p.plain.n_chunks for p in parts)

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

    def _post_fitted(self) -> bool:
        return any(s.fitted for s in self._split()[4])

    def _clock(self, t0: float, reader: _Reader, *, reset: bool) -> None:
        before = {} if reset else getattr(self, "timings_", {})
        spent = time.perf_counter() - t0
        self.timings_ = {
            "read_s": before.get("read_s", 0.0) + reader.seconds,
            "transform_s": before.get("transform_s", 0.0) + spent - reader.seconds,
        }

    def _check_parts(self, parts: Sequence[Part]) -> list[int]:
        """Refuse a set of parts the chain cannot read; the pooled columns of each."""
        if not parts:
            raise TransformError("a transform needs at least one feature entry")
        pool, _, flip, _, _ = self._split()
        n_rows = {s.shape[0] for p in parts for s in (p.plain, p.flip) if s is not None}
        if len(n_rows) != 1:
            raise TransformError(
                f"entries of one setting must have the same rows; got row counts {sorted(n_rows)}"
            )
        dims = []
        for part in parts:
            dim = _pooled_dim(part.plain, pool)
            if flip:
                if part.flip is None:
                    raise TransformError(
                        f"flipavg needs the flip view of entry {part.plain.key}; extract the layer "
                        "with the flip view (featstore extract ... --view plain,flip) or drop flipavg"
                    )
                other = _pooled_dim(part.flip, pool)
                if other != dim:
                    n = part.plain.shape[0]
                    raise TransformError(
                        f"plain and flip views differ in shape: {(n, dim)} vs {(n, other)}"
                    )
            dims.append(dim)
        return dims

    def _derived(
        self, part: Part, rows: np.ndarray | None, reader: _Reader
    ) -> Iterator[tuple[Any, np.ndarray]]:
        """``(where, block)`` over ``rows`` (all when None) of one part, one stored chunk at a
        time: each view pooled and put through the steps before flipavg, the views averaged.

        Non-finite values are refused once the pass is over, with the count of bad rows.
        """
        pool, pre, flip, _, _ = self._split()
        views = [part.plain] + ([part.flip] if flip and part.flip is not None else [])
        zero = np.zeros((1, _pooled_dim(part.plain, pool)), dtype=np.float32)
        pre_steps = [_estimator(s).fit(zero) for s in pre]  # stateless: parse_spec sees to it
        bad = [0] * len(views)
        for where, block in reader.blocks(part.plain, rows):
            subset = where if rows is None else rows[where]
            xs = _pool_views(views, block, subset, pool, reader, bad)
            del block  # the stored rows go before the next chunk is decoded
            if any(bad):
                continue  # nothing is computed from here on; the pass only counts bad rows
            xs = [_apply(pre_steps, x) for x in xs]
            yield where, xs[0] if len(xs) == 1 else (xs[0] + xs[1]) / 2.0
        for source, count in zip(views, bad, strict=True):
            if count:
                raise _nonfinite_error(
                    source, count, part.plain.shape[0] if rows is None else len(rows)
                )

    def _rows(self, part: Part, rows: np.ndarray, reader: _Reader) -> Iterator[np.ndarray]:
        """A pass over ``rows`` of one part that only needs the values (a fitting pass)."""
        return (x for _, x in self._derived(part, rows, reader))

    def _fit_parts(self, parts: Sequence[Part], train_rows: np.ndarray, reader: _Reader) -> None:
        """Check the parts and fit each one's own steps on the training rows."""
        dims = self._check_parts(parts)
        _, _, _, per_part, post = self._split()
        self.steps_ = parse_spec(self.spec)
        n_train = len(train_rows)
        if n_train == 0:
            raise TransformError("cannot fit a transform on an empty training split")
        self.part_pipelines_: list[Pipeline | None] = []
        self.part_dims_: list[tuple[int, int]] = []
        for i, (part, dim) in enumerate(zip(parts, dims, strict=True)):
            where = f" (entry {i + 1} of {len(parts)})" if len(parts) > 1 else ""
            _check_pca(per_part, dim, n_train, where)
            pipe = _pipeline(per_part)
            if pipe is not None:
                _fit_stepwise(pipe, dim, functools.partial(self._rows, part, train_rows, reader))
            self.part_pipelines_.append(pipe)
            self.part_dims_.append((dim, _out_dim(per_part, dim)))
        joined = sum(out for _, out in self.part_dims_)
        _check_pca(post, joined, n_train, " after concat")
        self.post_pipeline_ = _pipeline(post)
        if self.post_pipeline_ is not None and not self._post_fitted():
            _fit_stepwise(self.post_pipeline_, joined, lambda: ())  # stateless: no pass
        self.n_features_out_ = _out_dim(post, joined)

    def _joined(
        self, parts: Sequence[Part], rows: np.ndarray | None, reader: _Reader
    ) -> np.ndarray:
        """Every part's rows through its own steps, side by side, in one preallocated
        (len(rows), sum of part outputs) float32 array filled one stored chunk at a time."""
        if len(parts) != len(self.part_pipelines_):
            raise TransformError(
                f"transform was fitted on {len(self.part_pipelines_)} entries, got {len(parts)}"
            )
        dims = self._check_parts(parts)
        for part, dim, (fitted, _) in zip(parts, dims, self.part_dims_, strict=True):
            if dim != fitted:
                raise TransformError(
                    f"transform was fitted on {fitted}-dim features; entry {part.plain.key} "
                    f"gives {dim}-dim ones"
                )
        n = parts[0].plain.shape[0] if rows is None else len(rows)
        out = np.empty((n, sum(d for _, d in self.part_dims_)), dtype=np.float32)
        col = 0
        for part, pipe, (_, dim) in zip(parts, self.part_pipelines_, self.part_dims_, strict=True):
            for where, x in self._derived(part, rows, reader):
                out[where, col : col + dim] = x if pipe is None else pipe.transform(x)
            col += dim
        return out

    def _fit_post(self, joined: np.ndarray, train_rows: np.ndarray | None) -> None:
        """Fit the steps after concat on the joined training rows (all of ``joined`` when
        ``train_rows`` is None), block by block."""
        if self.post_pipeline_ is None:
            return
        rows = np.arange(len(joined)) if train_rows is None else train_rows
        _fit_stepwise(
            self.post_pipeline_,
            joined.shape[1],
            lambda: (joined[rows[i : i + BLOCK_ROWS]] for i in range(0, len(rows), BLOCK_ROWS)),
        )

    def _apply_post(self, joined: np.ndarray) -> np.ndarray:
        """The steps after concat, block by block: in place when they keep the columns."""
        if self.post_pipeline_ is None:
            return joined
        out = joined
        if self.n_features_out_ != joined.shape[1]:
            out = np.empty((len(joined), self.n_features_out_), dtype=np.float32)
        for i in range(0, len(joined), BLOCK_ROWS):
            out[i : i + BLOCK_ROWS] = self.post_pipeline_.transform(joined[i : i + BLOCK_ROWS])
        return out
