"""Batched linear solvers in torch: squared-hinge SVMs and multinomial logistic regression.

Many problems are solved as one matrix problem: the weights of problem ``(p, k)`` are the
column ``W[p, :, k]`` of a ``(P, D+1, K)`` tensor that shares one design matrix ``X1``
(the features with a constant column; the intercept is that column's weight). For the SVM
``p`` runs over cross-validation folds (a fold's held-out rows get weight 0) and ``k`` over
one-vs-rest classes, so all folds and classes cost one matmul per step.

Both solvers are truncated Newton methods (Newton-CG, the method of liblinear's TRON and
scikit-learn's ``newton-cg``): each step solves ``H d = -g`` by preconditioned conjugate
gradients to a forcing tolerance, then a line search along ``d`` that needs no further
matmul (``X1 (W + t d) = S + t X1 d``). The preconditioner is the Gram matrix
``X1^T X1`` scaled per problem by its mean curvature weight, applied in the Gram's
eigenbasis (one ``eigh`` per feature matrix), which removes the ill-conditioning of the
mean direction that plain CG suffers from on L2-normalised features.

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

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Design", "SolveInfo", "logreg_newton", "svm_newton"]

_TINY = 1e-30


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
    """A design matrix ``[X - shift, intercept_scaling]`` on a device, with its Gram eigenbasis.

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
        x = torch.as_tensor(np.ascontiguousarray(X), dtype=dtype, device=device)
        self.shift = (
            x.mean(dim=0) if center else torch.zeros(x.shape[1], dtype=dtype, device=device)
        )
        x = x - self.shift
        ones = torch.full((x.shape[0], 1), float(intercept_scaling), dtype=dtype, device=device)
        self.X1 = torch.cat([x, ones], dim=1)
        self.n, self.d1 = self.X1.shape
        self.device, self.dtype = device, dtype
        if center:  # block-diagonal Gram: features, then the intercept on its own
            xd = x.double()
            evals, evecs = torch.linalg.eigh(xd.T @ xd)
            full = torch.zeros((self.d1, self.d1), dtype=torch.float64, device=device)
            full[:-1, :-1] = evecs
            full[-1, -1] = 1.0
            evals = torch.cat([evals, evals.new_tensor([self.n * float(intercept_scaling) ** 2])])
            evecs = full
        else:  # eigh in float64: exact enough for any dtype
            x1d = self.X1.double()
            evals, evecs = torch.linalg.eigh(x1d.T @ x1d)
        self.evals = evals.clamp_min(0.0).to(dtype)  # (D1,)
        self.evecs = evecs.to(dtype)  # (D1, D1)
        # 1 for an eigen-direction inside the features, 0 for the intercept's own (center=True)
        self.feature_dir = torch.ones(self.d1, dtype=dtype, device=device)
        if center:
            self.feature_dir[-1] = 0.0

    def precondition(
        self, r: torch.Tensor, reg: float, scale: torch.Tensor, reg_intercept: bool = True
    ) -> torch.Tensor:
        """``(reg R + scale * X1^T X1)^-1 r`` per problem; ``r`` is (..., D1, K), ``scale`` (..., K).

        ``R`` is the identity, or (``reg_intercept=False``, centred designs) the identity
        without the intercept.
        """
        z = self.evecs.T @ r
        regs = reg * (torch.ones_like(self.feature_dir) if reg_intercept else self.feature_dir)
        denom = regs.unsqueeze(-1) + scale.unsqueeze(-2) * self.evals.unsqueeze(-1)
        return self.evecs @ (z / denom.clamp_min(_TINY))

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


def _col_norm(t: torch.Tensor) -> torch.Tensor:
    """Column norms over the D1 axis: (..., D1, K) -> (..., K)."""
    return torch.linalg.vector_norm(t, dim=-2)


def _col_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=-2)


_norm, _dot = _col_norm, _col_dot


def _pcg(
    hvp: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    precond: Callable[[torch.Tensor], torch.Tensor],
    rtol: torch.Tensor,
    active: torch.Tensor,
    max_iter: int,
    coupled: bool = False,
) -> tuple[torch.Tensor, int]:
    """Batched preconditioned CG for ``H x = b``, each column to ``||r|| <= rtol ||b||``.

    Columns are independent problems unless ``coupled`` (the multinomial Hessian couples
    its class columns: then the whole matrix is one vector and every reduction spans it).
    """
    if coupled:

        def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a * b).sum().expand(a.shape[-1])

        def _norm(t: torch.Tensor) -> torch.Tensor:
            return torch.linalg.vector_norm(t).expand(t.shape[-1])

    else:
        _dot, _norm = _col_dot, _col_norm
    x = torch.zeros_like(b)
    r = b.clone()
    z = precond(r)
    p = z.clone()
    rz = _dot(r, z)
    target = rtol * _norm(b)
    live = active & (_norm(r) > target)
    steps = 0
    for _ in range(max_iter):
        if not bool(live.any()):
            break
        hp = hvp(p)
        steps += 1
        php = _dot(p, hp)
        alpha = torch.where(live & (php > 0), rz / php.clamp_min(_TINY), torch.zeros_like(rz))
        x = x + alpha.unsqueeze(-2) * p
        r = r - alpha.unsqueeze(-2) * hp
        live = live & (_norm(r) > target) & (php > 0)
        z = precond(r)
        rz_new = _dot(r, z)
        beta = torch.where(live, rz_new / rz.clamp_min(_TINY), torch.zeros_like(rz))
        p = z + beta.unsqueeze(-2) * p
        rz = rz_new
    return x, steps


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

    Returns ``W`` (P, D1, K): problem (p, k)'s weights with the intercept last.
    """
    X1 = design.X1
    P, N, K = cost.shape
    W = torch.zeros((P, design.d1, K), dtype=X1.dtype, device=X1.device) if W0 is None else W0
    W = W.clone()
    g0 = _norm(-2.0 * (X1.T @ (cost * Y)))  # (P, K): gradient at W = 0
    S = X1 @ W  # (P, N, K)
    info = SolveInfo()
    live = g0 > 0
    for _ in range(max_newton):
        margin_gap = 1.0 - Y * S
        ca = cost * (margin_gap > 0)
        grad = W + 2.0 * (X1.T @ (ca * (S - Y)))
        gnorm = _norm(grad)
        live = live & (gnorm > tol * g0)
        if not bool(live.any()):
            break
        info.newton_steps += 1
        scale = 2.0 * ca.sum(dim=1) / N  # (P, K): mean curvature weight

        def hvp(v: torch.Tensor, ca: torch.Tensor = ca) -> torch.Tensor:
            return v + 2.0 * (X1.T @ (ca * (X1 @ v)))

        forcing = torch.clamp(torch.sqrt(gnorm / g0.clamp_min(_TINY)), max=0.1)
        d, steps = _pcg(
            hvp,
            -grad,
            functools.partial(design.precondition, reg=1.0, scale=scale),
            forcing,
            live,
            max_cg,
        )
        info.cg_steps += steps
        d = d * live.unsqueeze(-2)
        Q = X1 @ d
        t = _svm_line_search(W, d, S, Q, Y, cost)
        W = W + t.unsqueeze(-2) * d
        S = S + t.unsqueeze(-2) * Q
    else:
        ca = cost * (1.0 - Y * S > 0)
        gnorm = _norm(W + 2.0 * (X1.T @ (ca * (S - Y))))
        live = live & (gnorm > tol * g0)
    info.unconverged = int(live.sum())
    return W, info


def _line_search(
    derivs: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    like: torch.Tensor,
    iters: int = 30,
) -> torch.Tensor:
    """Minimiser along the Newton direction of a convex 1-D function, from its derivatives.

    Safeguarded Newton on ``phi'``: the bracket ``[lo, hi]`` (``phi'(lo) < 0 <= phi'(hi)``)
    shrinks every step and a step leaving it is replaced by bisection (or doubling while no
    upper end is known). Works on function derivatives, not values, so round-off in a
    large sum cannot stall it. Starts at the full Newton step ``t = 1``.
    """
    lo = torch.zeros_like(like)
    hi = torch.full_like(like, float("inf"))
    t = torch.ones_like(like)
    for _ in range(iters):
        g1, g2 = derivs(t)
        lo = torch.where(g1 < 0, t, lo)
        hi = torch.where(g1 >= 0, t, hi)
        step = t - g1 / g2.clamp_min(_TINY)
        inside = (step > lo) & (step < hi)
        fallback = torch.where(torch.isinf(hi), 2.0 * t, 0.5 * (lo + hi))
        new_t = torch.where(inside, step, fallback)
        if bool((torch.abs(new_t - t) <= 1e-6 * torch.abs(t).clamp_min(1e-12)).all()):
            return new_t
        t = new_t
    return t


def _svm_line_search(
    W: torch.Tensor,
    d: torch.Tensor,
    S: torch.Tensor,
    Q: torch.Tensor,
    Y: torch.Tensor,
    cost: torch.Tensor,
) -> torch.Tensor:
    """Exact minimiser of the piecewise-quadratic SVM objective along ``d``."""
    wd, dd = _dot(W, d), _dot(d, d)  # (P, K)
    YQ = Y * Q
    YO = Y * S

    def derivs(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gap = 1.0 - YO - t.unsqueeze(1) * YQ
        on = gap > 0
        d1 = wd + t * dd - 2.0 * (cost * YQ * gap * on).sum(dim=1)
        d2 = dd + 2.0 * (cost * YQ * YQ * on).sum(dim=1)
        return d1, d2

    t = _line_search(derivs, wd)
    return torch.where(dd > 0, t, torch.zeros_like(t))


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
    :meth:`Design.unshift` for the weights of the raw features.
    """
    X1 = design.X1
    N, K = design.n, int(n_classes)
    onehot = torch.nn.functional.one_hot(y.long(), K).to(X1.dtype)
    s = torch.ones((N, 1), dtype=X1.dtype, device=X1.device)
    if sample_weight is not None:
        s = sample_weight.to(X1.dtype).reshape(N, 1)
    reg = torch.ones((design.d1, 1), dtype=X1.dtype, device=X1.device)
    reg[-1] = 0.0  # intercept not penalised
    W = torch.zeros((design.d1, K), dtype=X1.dtype, device=X1.device) if W0 is None else W0.clone()
    g0 = float(torch.linalg.vector_norm(X1.T @ (s * (1.0 / K - onehot))) / N)

    info = SolveInfo()
    S = X1 @ W
    converged = g0 == 0.0
    history: list[float] = []
    for _ in range(max_newton):
        if converged:
            break
        prob = torch.softmax(S, dim=1)
        grad = X1.T @ (s * (prob - onehot)) / N + lam * reg * W
        gnorm = float(torch.linalg.vector_norm(grad))
        if gnorm <= tol * g0:
            converged = True
            break
        history.append(gnorm)
        if len(history) > 3 and history[-1] > 0.9 * history[-4]:
            # no progress in 3 steps: the round-off floor of the dtype; accept within 10x tol
            converged = gnorm <= 10 * tol * g0
            break
        info.newton_steps += 1
        sp = s * prob

        def hvp(v: torch.Tensor, sp: torch.Tensor = sp, prob: torch.Tensor = prob) -> torch.Tensor:
            q = X1 @ v
            r = sp * (q - (prob * q).sum(dim=1, keepdim=True))
            return X1.T @ r / N + lam * reg * v

        scale = (sp * (1.0 - prob)).mean(dim=0) / N  # (K,)
        forcing = torch.tensor([min(0.1, (gnorm / g0) ** 0.5)], dtype=X1.dtype, device=X1.device)
        d, steps = _pcg(
            hvp,
            -grad,
            functools.partial(design.precondition, reg=lam, scale=scale, reg_intercept=False),
            forcing,
            torch.ones(K, dtype=torch.bool, device=X1.device),
            max_cg,
            coupled=True,
        )
        info.cg_steps += steps
        if float((grad * d).sum()) >= 0:  # no descent direction (round-off): use -grad
            d = -grad
        Q = X1 @ d
        wd = (lam * reg * W * d).sum().reshape(1)
        dd = (lam * reg * d * d).sum().reshape(1)

        def derivs(
            t: torch.Tensor, S: torch.Tensor = S, Q: torch.Tensor = Q, wd=wd, dd=dd
        ) -> tuple[torch.Tensor, torch.Tensor]:
            p = torch.softmax(S + t * Q, dim=1)
            pq = (p * Q).sum(dim=1, keepdim=True)
            d1 = (s * ((p - onehot) * Q)).sum() / N + wd + t * dd
            d2 = (s * ((p * Q * Q).sum(dim=1, keepdim=True) - pq * pq)).sum() / N + dd
            return d1.reshape(1), d2.reshape(1)

        t = _line_search(derivs, wd)
        W = W + t * d
        S = S + t * Q
    else:
        prob = torch.softmax(S, dim=1)
        grad = X1.T @ (s * (prob - onehot)) / N + lam * reg * W
        converged = float(torch.linalg.vector_norm(grad)) <= tol * g0
    info.unconverged = 0 if converged else 1
    return W, info
