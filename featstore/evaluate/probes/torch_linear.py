"""Batched linear solvers in torch: squared-hinge SVMs and multinomial logistic regression.

Many problems are solved as one matrix problem: the weights of problem ``(p, k)`` are the
column ``W[p, :, k]`` of a ``(P, D+1, K)`` tensor that shares one design matrix ``X1``
(the features with a constant column; the intercept is that column's weight). For the SVM
``p`` runs over cross-validation folds (a fold's held-out rows get weight 0) and ``k`` over
one-vs-rest classes, so all folds and classes cost one matmul per step.

Both solvers are truncated Newton methods (Newton-CG, the method of liblinear's TRON and
scikit-learn's ``newton-cg``): each step solves ``H d = -g`` by preconditioned conjugate
gradients to a forcing tolerance, then a line search along ``d`` that needs no further
matmul (``X1 (W + t d) = S + t X1 d``). They run in the eigenbasis of the Gram matrix
``X1^T X1`` (one ``eigh`` per feature matrix, see :class:`Design`), where the
preconditioner -- the Gram scaled per problem by its mean curvature weight -- is a
division; it removes the ill-conditioning of the mean direction that plain CG suffers
from on L2-normalised features.

Work is spent only on problems still running: the SVM's columns are gathered down to the
unconverged ones at every Newton step and inside CG (most one-vs-rest problems converge in
a few steps, a few hard ones take many), and every line search stops as soon as the
directional derivative has fallen to ``1e-3`` of its start (an exact minimiser to that
precision; the Newton step ``t = 1`` usually passes at once).

Convergence: a problem is done when ``||g|| <= tol * ||g(W=0)||`` (the gradient at zero does
not depend on the warm start, so warm and cold solves stop at the same criterion). The
tolerance is part of the classifier spec and so of the result key.

Objectives (same minimisers as scikit-learn's):

- SVM, per problem: ``0.5 ||w||^2 + sum_i c_i max(0, 1 - y_i x1_i . w)^2`` with the intercept
  inside ``w`` (LinearSVC's ``intercept_scaling=1``: the intercept is regularised);
  ``c_i`` = C x class weight x row inclusion.
- Logistic regression: ``(1/n) sum_i s_i CE(softmax(x_i W + b), y_i) + lambda/2 ||W||^2``,
  the intercept ``b`` unpenalised; this is LogisticRegression's problem with
  ``C = 1 / (lambda n)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Design", "LogregPath", "SolveInfo", "logreg_newton", "svm_newton"]

_TINY = 1e-30
_LINE_RTOL = 1e-3  # a line search stops once |phi'(t)| <= _LINE_RTOL * |phi'(0)|
_LINE_ITERS = 20
_T_MAX = 256.0  # Newton directions want t ~ 1; a far longer step means the direction is noise
_COMPACT = 0.75  # CG drops its finished columns once no more than this share still runs
_BLOCK_ELEMENTS = 1 << 22  # float64 temporaries of the design: 32 MB at a time
# Scores are updated as S + t Z d with Z d from CG (no product of its own); round-off in
# those updates would grow, so S is recomputed as Z U after this many of them.
_REFRESH = 4
_QUADRATIC_MOVE = 1e-3  # logreg: a step moving no score by this much needs no line search


@dataclass
class SolveInfo:
    """How a (batched) solve went: Newton steps taken, CG steps, problems left unconverged."""

    newton_steps: int = 0
    cg_steps: int = 0
    unconverged: int = 0

    def add(self, other: SolveInfo) -> None:
        self.newton_steps += other.newton_steps
        self.cg_steps += other.cg_steps
        self.unconverged += other.unconverged


class Design:
    """A design matrix ``X1 = [X - shift, intercept_scaling]`` in its Gram eigenbasis.

    The solvers work in the coordinates ``u = V^T w`` of the Gram's eigenvectors ``V``,
    on ``Z = X1 V`` (N x R), where ``Z^T Z`` is diagonal: the preconditioner
    ``(reg + scale * X1^T X1)^-1`` is a division, and with fewer rows than columns ``R``
    is the rank (the number of rows), so every product is cheaper than on ``X1``. The
    penalty is unchanged (``||w|| = ||u||``: ``V`` is orthonormal), and nothing is lost
    with a thin basis: outside the rows' span a weight only adds penalty, so the
    minimiser has none there. :meth:`to_coords` / :meth:`from_coords` convert weights.

    ``center=True`` subtracts the column means: an exact reparametrisation when the intercept
    is not penalised (logistic regression: ``b = b' - mean . w``) that decouples the intercept
    from the features in the Gram matrix, so the preconditioner sees its true curvature.
    The SVM penalises its intercept, so it keeps ``center=False``.
    """

    def __init__(
        self,
        X: np.ndarray,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        intercept_scaling: float = 1.0,
        center: bool = False,
    ) -> None:
        x = torch.as_tensor(np.ascontiguousarray(X), device=device)
        n, d = x.shape
        self.n, self.d1 = n, d + 1
        self.device, self.dtype = device, dtype
        shift = (
            x.mean(dim=0, dtype=torch.float64)
            if center
            else torch.zeros(d, dtype=torch.float64, device=device)
        )
        scaling = float(intercept_scaling)

        def rows(i: int, j: int) -> torch.Tensor:
            """Rows i:j of ``X1`` in float64 (exact enough for the basis and ``Z`` of any dtype)."""
            block = x[i:j].double() - shift
            ones = torch.full((j - i, 1), scaling, dtype=torch.float64, device=device)
            return torch.cat([block, ones], dim=1)

        step = max(1, _BLOCK_ELEMENTS // self.d1)  # float64 copies of X1 a block at a time
        blocks = [(i, min(i + step, n)) for i in range(0, n, step)]
        if n >= self.d1:  # the Gram accumulated block by block
            gram = torch.zeros((self.d1, self.d1), dtype=torch.float64, device=device)
            for i, j in blocks:
                g = rows(i, j)
                gram += g.T @ g
            if center:  # block-diagonal: the centred features, then the intercept on its own
                feature_evals, basis = torch.linalg.eigh(gram[:-1, :-1])
                evals, evecs = _with_intercept(feature_evals, basis, n * scaling**2)
            else:
                evals, evecs = torch.linalg.eigh(gram)
        else:  # fewer rows than columns: the basis of the rows' span
            g = rows(0, n)
            if center:
                evals, evecs = _with_intercept(*_span_eigenbasis(g[:, :-1]), n * scaling**2)
            else:
                evals, evecs = _span_eigenbasis(g)
        self.r = evecs.shape[1]
        self.Z = torch.empty((n, self.r), dtype=dtype, device=device)  # X1 V, (N, R)
        for i, j in blocks:
            self.Z[i:j] = (rows(i, j) @ evecs).to(dtype)
        self.evals = evals.clamp_min(0.0).to(dtype)  # (R,)
        self.evecs = evecs.to(dtype)  # (D1, R): R = D1, or the rank when there are fewer rows
        self.shift = shift.to(dtype)
        # 1 for an eigen-direction inside the features, 0 for the intercept's own (center=True)
        self.feature_dir = torch.ones(self.r, dtype=dtype, device=device)
        if center:
            self.feature_dir[-1] = 0.0

    def to_coords(self, W: torch.Tensor) -> torch.Tensor:
        """Weights (..., D1, J) of ``X1`` -> eigen-coordinates (..., R, J)."""
        return self.evecs.T @ W

    def from_coords(self, U: torch.Tensor) -> torch.Tensor:
        """Eigen-coordinates (..., R, J) -> weights (..., D1, J) of ``X1``."""
        return self.evecs @ U

    def precondition(
        self, r: torch.Tensor, reg: float, scale: torch.Tensor, reg_intercept: bool = True
    ) -> torch.Tensor:
        """``(reg R + scale * Z^T Z)^-1 r`` per problem (a division: ``Z^T Z`` is diagonal).

        ``r`` is (R, J), ``scale`` (J,). ``R`` is the identity, or (``reg_intercept=False``,
        centred designs) the identity without the intercept.
        """
        regs = reg * (torch.ones_like(self.feature_dir) if reg_intercept else self.feature_dir)
        denom = regs.unsqueeze(-1) + scale.unsqueeze(-2) * self.evals.unsqueeze(-1)
        return r / denom.clamp_min(_TINY)

    def unshift(self, W: torch.Tensor) -> torch.Tensor:
        """Weights of the centred design -> weights of ``[X, intercept_scaling]``."""
        out = W.clone()
        out[..., -1, :] = W[..., -1, :] - (self.shift.unsqueeze(-1) * W[..., :-1, :]).sum(dim=-2)
        return out

    def shift_weights(self, W: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`unshift` (a warm start given for ``[X, 1]``)."""
        out = W.clone()
        out[..., -1, :] = W[..., -1, :] + (self.shift.unsqueeze(-1) * W[..., :-1, :]).sum(dim=-2)
        return out


def _with_intercept(
    evals: torch.Tensor, basis: torch.Tensor, intercept_eval: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """A features-only eigenbasis (D, R) extended by the intercept's own direction, last."""
    r = basis.shape[1]
    evecs = torch.zeros((basis.shape[0] + 1, r + 1), dtype=basis.dtype, device=basis.device)
    evecs[:-1, :r] = basis
    evecs[-1, r] = 1.0
    return torch.cat([evals, evals.new_tensor([intercept_eval])]), evecs


def _span_eigenbasis(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues and eigenvectors of ``g^T g`` on the span of the rows of ``g`` (n < d).

    From the ``n x n`` kernel ``g g^T = U L U^T``: the basis is ``g^T U L^-1/2`` (its
    eigenvalues L), ``n`` columns instead of ``d``, so every product costs ``n``, not ``d``.
    """
    evals, U = torch.linalg.eigh(g @ g.T)
    keep = evals > evals.max().clamp_min(_TINY) * 1e-10
    evals, U = evals[keep], U[:, keep]
    return evals, (g.T @ U) / evals.sqrt()


def _col_norm(t: torch.Tensor) -> torch.Tensor:
    """Column norms over the D1 axis: (D1, J) -> (J,)."""
    norms: torch.Tensor = torch.linalg.vector_norm(t, dim=0)
    return norms


def _col_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=0)


class _Operator:
    """A Hessian for CG: ``H v`` and its preconditioner on the columns still being solved.

    ``H = reg + Z^T C Z``: a call leaves ``Z v`` in ``last_q``, so CG returns ``Z x`` too and
    the line search needs no extra product.
    """

    design: Design
    last_q: torch.Tensor

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def precondition(self, r: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def restrict(self, keep: torch.Tensor) -> None:
        """From now on only the columns ``keep`` (indices into the current ones) are asked for."""
        raise NotImplementedError

    def project(self, v: torch.Tensor) -> torch.Tensor:
        """``v`` without its component in the Hessian's null space (none by default)."""
        return v


class _SvmHessian(_Operator):
    """``I + 2 Z^T diag(c_active) Z`` per column, preconditioned by the scaled Gram."""

    def __init__(self, design: Design, ca: torch.Tensor) -> None:
        self.design, self.ca = design, ca
        self.scale = 2.0 * ca.sum(dim=0) / design.n  # (J,): mean curvature weight

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        Z = self.design.Z
        self.last_q = Z @ v
        return v + 2.0 * (Z.T @ (self.ca * self.last_q))

    def precondition(self, r: torch.Tensor) -> torch.Tensor:
        return self.design.precondition(r, reg=1.0, scale=self.scale)

    def restrict(self, keep: torch.Tensor) -> None:
        self.ca, self.scale = self.ca[:, keep], self.scale[keep]


def _pcg(
    op: _Operator,
    b: torch.Tensor,
    rtol: torch.Tensor,
    max_iter: int,
    coupled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Batched preconditioned CG for ``H x = b`` (R, J), each column to ``||r|| <= rtol ||b||``.

    Returns ``x``, ``Z x`` (accumulated from the products CG makes anyway) and the steps.
    Columns are independent problems, and the finished ones are dropped from the work as
    they finish, unless ``coupled`` (the multinomial Hessian couples its class columns:
    then the whole matrix is one vector and every reduction spans it).
    """
    if coupled:

        def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a * b).sum().expand(a.shape[-1])

        def norm(t: torch.Tensor) -> torch.Tensor:
            norms: torch.Tensor = torch.linalg.vector_norm(t).expand(t.shape[-1])
            return norms

    else:
        dot, norm = _col_dot, _col_norm
    Z = op.design.Z
    out = torch.zeros_like(b)
    out_q = torch.zeros((Z.shape[0], b.shape[-1]), dtype=b.dtype, device=b.device)
    cols = torch.arange(b.shape[-1], device=b.device)
    x = torch.zeros_like(b)
    xq = torch.zeros_like(out_q)
    b = op.project(b)
    r = b.clone()
    z = op.precondition(r)
    p = z.clone()
    rz = dot(r, z)
    target = rtol.expand(b.shape[-1]) * norm(b)
    live = norm(r) > target
    steps = 0
    for _ in range(max_iter):
        n_live = int(live.sum())
        if n_live == 0:
            break
        if not coupled and n_live <= _COMPACT * len(cols):  # drop the finished columns
            out[:, cols[~live]] = x[:, ~live]
            out_q[:, cols[~live]] = xq[:, ~live]
            keep = live.nonzero().squeeze(1)
            op.restrict(keep)
            cols, x, xq, r, p, rz, target = (
                cols[keep],
                x[:, keep],
                xq[:, keep],
                r[:, keep],
                p[:, keep],
                rz[keep],
                target[keep],
            )
            live = live[keep]
        hp = op(p)
        steps += 1
        php = dot(p, hp)
        curved = php > 0
        alpha = torch.where(live & curved, rz / php.clamp_min(_TINY), torch.zeros_like(rz))
        x = x + alpha * p
        xq = xq + alpha * op.last_q
        r = r - alpha * hp
        live = live & curved & (norm(r) > target)
        z = op.precondition(r)
        rz_new = dot(r, z)
        beta = torch.where(live, rz_new / rz.clamp_min(_TINY), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
    out[:, cols] = x
    out_q[:, cols] = xq
    return out, out_q, steps


def _line_search(
    derivs: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    slope0: torch.Tensor,
) -> torch.Tensor:
    """Step ``t`` per column minimising a convex 1-D function along a descent direction.

    ``derivs(t)`` gives ``phi'(t), phi''(t)``; ``slope0 = phi'(0) < 0``. Safeguarded Newton
    on ``phi'``: the bracket ``[lo, hi]`` (``phi'(lo) < 0 <= phi'(hi)``) shrinks every step
    and a step leaving it is replaced by bisection (or doubling while no upper end is known,
    up to ``_T_MAX``). Starts at the full Newton step ``t = 1`` and stops once
    ``|phi'(t)| <= _LINE_RTOL |phi'(0)|`` for every column. Works on derivatives, not
    values, so round-off in a large sum cannot stall it. A column whose ``slope0`` is not
    negative (no descent: round-off) gets ``t = 0``.
    """
    descent = slope0 < 0
    lo = torch.zeros_like(slope0)
    hi = torch.full_like(slope0, float("inf"))
    t = torch.where(descent, torch.ones_like(slope0), torch.zeros_like(slope0))
    goal = _LINE_RTOL * slope0.abs()
    for _ in range(_LINE_ITERS):
        g1, g2 = derivs(t)
        done = ~descent | (g1.abs() <= goal)
        if bool(done.all()):
            break
        lo = torch.where(g1 < 0, t, lo)
        hi = torch.where(g1 >= 0, t, hi)
        step = t - g1 / g2.clamp_min(_TINY)
        inside = (step > lo) & (step < hi)
        fallback = torch.where(torch.isinf(hi), torch.clamp(2.0 * t, max=_T_MAX), 0.5 * (lo + hi))
        t = torch.where(done, t, torch.where(inside, step, fallback))
    return t


def _svm_line_search(
    W: torch.Tensor,
    d: torch.Tensor,
    S: torch.Tensor,
    Q: torch.Tensor,
    Y: torch.Tensor,
    cost: torch.Tensor,
    slope0: torch.Tensor,
) -> torch.Tensor:
    """Minimiser of the piecewise-quadratic SVM objective along ``d`` (per column)."""
    wd, dd = _col_dot(W, d), _col_dot(d, d)  # (J,)
    YQ = Y * Q
    gap0 = 1.0 - Y * S  # the hinge gap at t = 0; at t it is gap0 - t YQ
    cYQ = cost * YQ
    cYQ2 = cYQ * YQ
    zero = torch.zeros((), dtype=S.dtype, device=S.device)

    def derivs(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gap = gap0 - t * YQ
        on = gap > 0
        d1 = wd + t * dd - 2.0 * torch.where(on, cYQ * gap, zero).sum(dim=0)
        d2 = dd + 2.0 * torch.where(on, cYQ2, zero).sum(dim=0)
        return d1, d2

    return _line_search(derivs, slope0)


def _as_columns(t: torch.Tensor) -> torch.Tensor:
    """(P, A, K) -> (A, P*K): problem (p, k) becomes column p*K + k."""
    P, A, K = t.shape
    return t.permute(1, 0, 2).reshape(A, P * K)


def _from_columns(t: torch.Tensor, P: int) -> torch.Tensor:
    """Inverse of :func:`_as_columns`."""
    A, J = t.shape
    return t.reshape(A, P, J // P).permute(1, 0, 2).contiguous()


def svm_newton(
    design: Design,
    Y: torch.Tensor,
    cost: torch.Tensor,
    W0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_newton: int = 100,
    max_cg: int = 250,
) -> tuple[torch.Tensor, SolveInfo]:
    """Squared-hinge SVMs for every column of ``cost`` (P, N, K); ``Y`` is ±1, (N, K) or (P, N, K).

    Returns ``W`` (P, D1, K): problem (p, k)'s weights with the intercept last. The P x K
    problems are solved as columns of one (N, P*K) problem; each Newton step works on the
    columns not yet converged.
    """
    Z = design.Z  # the solve runs in eigen-coordinates: W holds u = V^T w
    P, N, K = cost.shape
    Yc = _as_columns(Y.expand(P, N, K))
    costs = _as_columns(cost)
    if W0 is None:
        W = torch.zeros((design.r, P * K), dtype=Z.dtype, device=Z.device)
    else:
        W = design.to_coords(_as_columns(W0))
    g0 = _col_norm(2.0 * (Z.T @ (costs * Yc)))  # (J,): gradient norm at W = 0
    W[:, g0 == 0] = 0.0  # a problem without rows: w = 0 is its minimiser
    cols = (g0 > 0).nonzero().squeeze(1)
    Yl, cl, Wl, g0l = Yc[:, cols], costs[:, cols], W[:, cols], g0[cols]
    S = Z @ Wl  # (N, J_live)
    info = SolveInfo()
    for _ in range(max_newton + 1):
        gap = 1.0 - Yl * S
        ca = torch.where(gap > 0, cl, torch.zeros((), dtype=cl.dtype, device=cl.device))
        grad = Wl + 2.0 * (Z.T @ (ca * (S - Yl)))
        gnorm = _col_norm(grad)
        done = gnorm <= tol * g0l
        if bool(done.any()):  # store the finished problems, go on with the rest
            W[:, cols[done]] = Wl[:, done]
            keep = (~done).nonzero().squeeze(1)
            cols, Yl, cl, Wl, g0l, S = (
                cols[keep],
                Yl[:, keep],
                cl[:, keep],
                Wl[:, keep],
                g0l[keep],
                S[:, keep],
            )
            ca, grad, gnorm = ca[:, keep], grad[:, keep], gnorm[keep]
        if len(cols) == 0 or info.newton_steps == max_newton:
            break
        info.newton_steps += 1
        forcing = torch.clamp(torch.sqrt(gnorm / g0l), max=0.1)
        d, Q, steps = _pcg(_SvmHessian(design, ca), -grad, forcing, max_cg)
        info.cg_steps += steps
        t = _svm_line_search(Wl, d, S, Q, Yl, cl, _col_dot(grad, d))
        Wl = Wl + t * d  # the info.newton_steps-th update of W
        S = Z @ Wl if info.newton_steps % _REFRESH == 0 else S + t * Q
    W[:, cols] = Wl
    info.unconverged = len(cols)
    return _from_columns(design.from_coords(W), P), info


class _LogregHessian(_Operator):
    """The multinomial Hessian (classes coupled) at probabilities ``prob``."""

    def __init__(
        self, design: Design, sp: torch.Tensor, prob: torch.Tensor, lam: float, reg: torch.Tensor
    ) -> None:
        self.design, self.sp, self.prob, self.lam, self.reg = design, sp, prob, lam, reg
        self.scale = (sp * (1.0 - prob)).mean(dim=0) / design.n  # (K,)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        Z = self.design.Z
        q = self.last_q = Z @ v
        r = self.sp * (q - (self.prob * q).sum(dim=1, keepdim=True))
        return Z.T @ r / self.design.n + self.lam * self.reg * v

    def precondition(self, r: torch.Tensor) -> torch.Tensor:
        z = self.design.precondition(r, reg=self.lam, scale=self.scale, reg_intercept=False)
        return self.project(z)

    def project(self, v: torch.Tensor) -> torch.Tensor:
        return _without_shared_intercept(v, self.reg)

    def restrict(self, keep: torch.Tensor) -> None:  # pragma: no cover - coupled: never dropped
        raise AssertionError("the multinomial Hessian's columns are solved together")


def _without_shared_intercept(v: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """``v`` (R, K) less its component along "the same intercept for every class".

    Adding one constant to every class's score leaves the softmax unchanged and the
    intercept is not penalised, so that direction is the multinomial Hessian's null space:
    a round-off component there would make CG divide by ~0 and blow the step up.
    """
    free = reg[:, 0] == 0  # the intercept's own eigen-direction
    out = v.clone()
    out[free] = v[free] - v[free].mean(dim=1, keepdim=True)
    return out


@dataclass
class _Point:
    """An iterate of the logistic regression with what was computed at it."""

    U: torch.Tensor  # (R, K) eigen-coordinates
    S: torch.Tensor  # (N, K) scores Z U, updated as S + t Z d (see _REFRESH)
    updates: int = 0  # steps since S was last computed as Z U
    prob: torch.Tensor | None = None  # softmax(S)
    data_grad: torch.Tensor | None = None  # Z^T (s (prob - onehot)) / N: the loss's gradient


class LogregPath:
    """Multinomial L2 logistic regression of one design along a sequence of lambdas.

    Each :meth:`solve` starts from the previous solution (the warm-started path of
    Kornblith et al.'s protocol) and from what was computed there: the loss gradient at a
    point does not depend on lambda, so a new lambda's first gradient costs no product.
    """

    def __init__(
        self,
        design: Design,
        y: torch.Tensor,
        n_classes: int,
        sample_weight: torch.Tensor | None = None,
        W0: torch.Tensor | None = None,
        tol: float = 1e-4,
        max_newton: int = 100,
        max_cg: int = 250,
    ) -> None:
        Z = design.Z  # the solve runs in eigen-coordinates: U = V^T w
        self.design, self.tol, self.max_newton, self.max_cg = design, tol, max_newton, max_cg
        N, K = design.n, int(n_classes)
        self.onehot = torch.nn.functional.one_hot(y.long(), K).to(Z.dtype)
        self.s = torch.ones((N, 1), dtype=Z.dtype, device=Z.device)
        if sample_weight is not None:
            self.s = sample_weight.to(Z.dtype).reshape(N, 1)
        self.reg = design.feature_dir.reshape(-1, 1)  # the intercept's direction: no penalty
        if W0 is None:
            U = torch.zeros((design.r, K), dtype=Z.dtype, device=Z.device)
        else:
            U = design.to_coords(W0)
        self.point = _Point(U, Z @ U)
        self.g0 = float(torch.linalg.vector_norm(Z.T @ (self.s * (1.0 / K - self.onehot))) / N)

    def _fill(self, point: _Point) -> _Point:
        if point.updates >= _REFRESH:
            point.S, point.updates = self.design.Z @ point.U, 0
        if point.prob is None or point.data_grad is None:
            point.prob = torch.softmax(point.S, dim=1)
            residual = self.s * (point.prob - self.onehot)
            point.data_grad = self.design.Z.T @ residual / self.design.n
        return point

    def solve(self, lam: float) -> tuple[torch.Tensor, SolveInfo]:
        """Weights (D1, K) at ``lam`` in the design's coordinates (see :func:`logreg_newton`)."""
        s, onehot, reg, N = self.s, self.onehot, self.reg, self.design.n
        info = SolveInfo()
        point = self.point
        best, best_norm, since_best = point, float("inf"), 0
        converged = self.g0 == 0.0
        for _ in range(self.max_newton + 1):
            if converged:
                break
            point = self._fill(point)
            assert point.prob is not None
            assert point.data_grad is not None
            U, S, prob = point.U, point.S, point.prob
            grad = _without_shared_intercept(point.data_grad + lam * reg * U, reg)
            gnorm = float(torch.linalg.vector_norm(grad))
            if gnorm <= self.tol * self.g0:
                converged = True
                break
            if gnorm < best_norm:
                since_best = since_best + 1 if gnorm > 0.9 * best_norm else 0
                best, best_norm = point, gnorm
            else:
                since_best += 1
            if since_best >= 3 or info.newton_steps == self.max_newton:
                break  # no real progress in 3 steps: the round-off floor of the dtype
            info.newton_steps += 1
            op = _LogregHessian(self.design, s * prob, prob, lam, reg)
            forcing = torch.tensor(
                [min(0.1, (gnorm / self.g0) ** 0.5)], dtype=U.dtype, device=U.device
            )
            d, Q, steps = _pcg(op, -grad, forcing, self.max_cg, coupled=True)
            info.cg_steps += steps
            slope0 = (grad * d).sum()
            if float(slope0) >= 0:  # no descent direction (round-off): use -grad
                d, Q = -grad, self.design.Z @ -grad
                slope0 = -(grad * grad).sum()
            wd = (lam * reg * U * d).sum()
            dd = (lam * reg * d * d).sum()

            def derivs(
                t: torch.Tensor,
                S: torch.Tensor = S,
                Q: torch.Tensor = Q,
                wd: torch.Tensor = wd,
                dd: torch.Tensor = dd,
            ) -> tuple[torch.Tensor, torch.Tensor]:
                p = torch.softmax(S + t * Q, dim=1)
                pq = (p * Q).sum(dim=1, keepdim=True)
                # accumulated in float64: the loss and penalty parts nearly cancel at the
                # optimum, and a float32 sum of N x K terms would bury phi' in round-off
                loss_part = (s * ((p - onehot) * Q)).sum(dtype=torch.float64) / N
                d1 = (loss_part + wd.double() + t.double() * dd.double()).to(S.dtype)
                d2 = (s * ((p * Q * Q).sum(dim=1, keepdim=True) - pq * pq)).sum() / N + dd
                return d1.reshape(1), d2.reshape(1)

            # Along d the loss is quadratic to ~1e-9 while the scores move < 1e-3: take the
            # Newton step on the line from slope and curvature at 0 (float32 softmax could
            # not resolve phi' at such small moves -- the strongest penalties' last steps)
            pq0 = (prob * Q).sum(dim=1, keepdim=True)
            curv0 = (s * ((prob * Q * Q).sum(dim=1, keepdim=True) - pq0 * pq0)).sum() / N + dd
            t = (-slope0 / curv0.clamp_min(_TINY)).reshape(1)
            if float(t.abs() * Q.abs().max()) >= _QUADRATIC_MOVE:
                t = _line_search(derivs, slope0.reshape(1))
            point = _Point(U + t * d, S + t * Q, updates=point.updates + 1)
        info.unconverged = 0 if converged else 1
        self.point = point if converged else best
        return self.design.from_coords(self.point.U), info


def logreg_newton(
    design: Design,
    y: torch.Tensor,
    n_classes: int,
    lam: float,
    sample_weight: torch.Tensor | None = None,
    W0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_newton: int = 100,
    max_cg: int = 250,
) -> tuple[torch.Tensor, SolveInfo]:
    """Multinomial L2 logistic regression; ``W`` (D1, K), the last row the unpenalised intercept.

    ``W`` and ``W0`` are in the design's own coordinates (centred when ``design`` is); use
    :meth:`Design.unshift` for the weights of the raw features. Returns the iterate with
    the smallest gradient seen (so a solve that meets the dtype's round-off floor before
    ``tol`` keeps its best point, and says so in ``unconverged``). A path of lambdas:
    :class:`LogregPath`.
    """
    path = LogregPath(design, y, n_classes, sample_weight, W0, tol, max_newton, max_cg)
    return path.solve(lam)
