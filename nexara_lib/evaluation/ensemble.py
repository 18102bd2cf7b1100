"""Ensembles of K members: weights/stacking fit on validation, diversity, a saved artifact.

Members are combined from their predicted probabilities of the violent class
(K, N); nothing here loads a model. Weights, the stacking model and the best
single member are chosen on validation predictions only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import optimize
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from nexara_lib.evaluation.metrics import LOWER_IS_BETTER, binary_metrics, metric_function
from nexara_lib.evaluation.predictions import (
    PROB_EPS,
    Predictions,
    check_labels,
    check_probabilities,
    logit,
    require_same_clips,
    require_validation,
    sigmoid,
)
from nexara_lib.evaluation.stats import compare_paired
from nexara_lib.io import write_text_atomic
from nexara_lib.labels import predict_labels

METHODS = ("weighted", "stacking")


def _member_matrix(val_member_preds: Sequence[Predictions], what: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(val_member_preds, Predictions) or not len(val_member_preds):
        raise ValueError(f"{what}: pass a non-empty list of Predictions, one per ensemble member")
    require_validation(list(val_member_preds), what)
    y = require_same_clips(list(val_member_preds), what)
    return np.stack([m.prob for m in val_member_preds]), y


def check_member_probs(member_probs, name: str = "member_probs") -> np.ndarray:
    """Return ``member_probs`` as a (K, N) float64 array of probabilities, or raise ValueError."""
    p = np.asarray(member_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"{name} must be (K members, N clips) probabilities, got shape {p.shape}")
    check_probabilities(p.ravel(), name)
    return p


def ensemble_predict(member_probs, weights) -> np.ndarray:
    """Weighted soft vote: ``weights @ member_probs``.

    Args:
        member_probs: (K, N) probabilities of the violent class.
        weights: (K,) non-negative weights summing to 1.

    Returns:
        (N,) ensemble probabilities.
    """
    p = check_member_probs(member_probs)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (p.shape[0],):
        raise ValueError(f"weights must have one entry per member ({p.shape[0]}), got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any() or abs(w.sum() - 1) > 1e-6:
        raise ValueError(f"weights must be non-negative and sum to 1, got {w.tolist()}")
    return np.clip(w @ p, 0.0, 1.0)


def fit_ensemble_weights(val_member_preds: Sequence[Predictions]) -> np.ndarray:
    """Soft-voting weights that minimize validation log-loss (SLSQP on the simplex).

    Args:
        val_member_preds: one ``Predictions(split="val")`` per member, same clips.

    Returns:
        (K,) non-negative weights summing to 1. Never worse on validation log-loss
        than equal weights, which are also the starting point.
    """
    p, y = _member_matrix(val_member_preds, "the ensemble weights")
    k = p.shape[0]
    uniform = np.full(k, 1.0 / k)
    if k == 1:
        return uniform

    def loss_and_grad(w):
        q = np.clip(w @ p, PROB_EPS, 1 - PROB_EPS)
        loss = -np.mean(y * np.log(q) + (1 - y) * np.log1p(-q))
        grad = -((y / q - (1 - y) / (1 - q)) @ p.T) / len(y)
        return loss, grad

    def sum_minus_one(w: np.ndarray) -> float:
        return float(w.sum() - 1.0)

    def sum_gradient(w: np.ndarray) -> np.ndarray:
        return np.ones_like(w)

    # SLSQP handles the simplex (bounds + sum = 1) directly and can reach exact zeros.
    result = optimize.minimize(
        loss_and_grad,
        uniform,
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": sum_minus_one, "jac": sum_gradient}],
        options={"maxiter": 500, "ftol": 1e-10},
    )
    w = np.clip(np.nan_to_num(result.x, nan=0.0), 0.0, None)
    w = w / w.sum() if w.sum() > 0 else uniform
    return w if loss_and_grad(w)[0] <= loss_and_grad(uniform)[0] else uniform


@dataclasses.dataclass(frozen=True, eq=False)
class StackingResult:
    """A stacking model fit on validation, with its honest out-of-fold validation estimate."""

    model: LogisticRegression  # fit on all validation clips; input = member logits (N, K)
    oof_prob: np.ndarray  # (N,) validation probabilities, each from a model that did not see that clip
    oof_metrics: dict  # binary_metrics of oof_prob at 0.5


def fit_stacking(
    val_member_preds: Sequence[Predictions], n_splits: int = 5, seed: int = 0, C: float = 1.0
) -> StackingResult:
    """Logistic regression on member logits, fit on validation.

    The stacker is fit on all validation clips; its validation quality is
    reported from out-of-fold predictions, because its in-sample validation
    score would be optimistic.

    Args:
        val_member_preds: one ``Predictions(split="val")`` per member, same clips.
        n_splits: stratified folds for the out-of-fold estimate.
        seed: fold shuffling seed.
        C: inverse L2 strength of the logistic regression.

    Returns:
        StackingResult(model, oof_prob, oof_metrics).
    """
    p, y = _member_matrix(val_member_preds, "the stacking model")
    smallest = int(min((y == 0).sum(), (y == 1).sum()))
    if n_splits < 2 or smallest < n_splits:
        raise ValueError(
            f"fit_stacking: n_splits={n_splits} needs >= 2 and at least n_splits clips of each class; "
            f"the smallest validation class has {smallest}. Lower n_splits or use weighted voting"
        )
    x = logit(p).T
    oof = np.empty(len(y))
    for train_idx, test_idx in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(x, y):
        fold = LogisticRegression(C=C, max_iter=1000).fit(x[train_idx], y[train_idx])
        oof[test_idx] = fold.predict_proba(x[test_idx])[:, 1]
    model = LogisticRegression(C=C, max_iter=1000).fit(x, y)
    return StackingResult(model, oof, binary_metrics(y, oof, 0.5))


def stacking_predict(model: LogisticRegression, member_probs) -> np.ndarray:
    """Probabilities of the violent class from a stacking model and (K, N) member probabilities."""
    p = check_member_probs(member_probs)
    if model.coef_.shape[1] != p.shape[0]:
        raise ValueError(f"the stacking model expects {model.coef_.shape[1]} members, got {p.shape[0]}")
    return model.predict_proba(logit(p).T)[:, 1]


def choose_best_member(
    val_member_preds: Sequence[Predictions], metric: str = "balanced_accuracy", threshold: float = 0.5
) -> int:
    """Index of the member with the best validation ``metric`` (ties: the lowest index)."""
    p, y = _member_matrix(val_member_preds, "the best single member")
    fn = metric_function(metric, threshold)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    scores = np.array([sign * fn(y, row) for row in p])
    return int(np.argmax(np.nan_to_num(scores, nan=-np.inf)))


def _check_member_preds(member_preds, name="member_preds") -> np.ndarray:
    m = np.asarray(member_preds)
    if m.ndim != 2 or m.shape[0] < 1:
        raise ValueError(f"{name} must be (K members, N clips) 0/1 predictions, got shape {m.shape}")
    return check_labels(m.ravel(), name).reshape(m.shape)


def pairwise_disagreement(member_preds) -> np.ndarray:
    """(K, K) fraction of clips on which two members' 0/1 predictions differ (diagonal 0)."""
    m = _check_member_preds(member_preds)
    return (m[:, None, :] != m[None, :, :]).mean(axis=2)


def error_correlation(y_true, member_preds) -> np.ndarray:
    """(K, K) Pearson correlation of members' error indicators (1 = wrong on that clip).

    Low correlation = members fail on different clips, which is what voting needs.
    A member with constant errors (never or always wrong) has NaN off-diagonal entries.
    """
    m = _check_member_preds(member_preds)
    y = check_labels(y_true)
    if m.shape[1] != len(y):
        raise ValueError(f"member_preds has {m.shape[1]} clips but y_true has {len(y)}")
    errors = (m != y).astype(np.float64)
    centered = errors - errors.mean(axis=1, keepdims=True)
    norm = np.sqrt((centered**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (centered @ centered.T) / np.outer(norm, norm)
    np.fill_diagonal(corr, 1.0)
    return corr


def compare_with_best_member(
    y_true,
    prob_best_member,
    prob_ensemble,
    threshold: float = 0.5,
    n_bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    threshold_ensemble: float | None = None,
) -> dict:
    """Per-class comparison of the ensemble against the best single member (see ``evaluation.compare_paired``).

    ``threshold`` is the member's operating threshold and ``threshold_ensemble`` the ensemble's
    (each chosen on validation); the ensemble uses ``threshold`` when it is not given.
    """
    return compare_paired(
        y_true,
        prob_best_member,
        prob_ensemble,
        threshold,
        n_bootstrap,
        seed,
        alpha,
        names=("best_member", "ensemble"),
        threshold_b=threshold_ensemble,
    )


# --------------------------------------------------------------------------
# Saved artifact
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EnsembleArtifact:
    """Everything needed to rerun an ensemble: member model paths, combination and threshold.

    ``method="weighted"`` uses ``weights``; ``method="stacking"`` uses
    ``stacking_coef``/``stacking_intercept`` on member logits (stored as numbers,
    so loading needs no pickle).
    """

    member_paths: tuple[str, ...]
    threshold: float
    method: str = "weighted"
    weights: tuple[float, ...] | None = None
    stacking_coef: tuple[float, ...] | None = None
    stacking_intercept: float | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "member_paths", tuple(str(p) for p in self.member_paths))
        k = len(self.member_paths)
        if k == 0:
            raise ValueError("EnsembleArtifact needs at least one member path")
        if self.method not in METHODS:
            raise ValueError(f"EnsembleArtifact.method must be one of {METHODS}, got {self.method!r}")
        if not np.isfinite(self.threshold):
            raise ValueError(f"EnsembleArtifact.threshold must be a finite number, got {self.threshold!r}")
        if self.method == "weighted":
            if self.weights is None or len(self.weights) != k:
                raise ValueError(f"weighted EnsembleArtifact needs {k} weights (one per member), got {self.weights!r}")
            w = np.asarray(self.weights, dtype=np.float64)
            if not np.isfinite(w).all() or (w < 0).any() or abs(w.sum() - 1) > 1e-6:
                raise ValueError(f"EnsembleArtifact weights must be non-negative and sum to 1, got {w.tolist()}")
            object.__setattr__(self, "weights", tuple(float(v) for v in w))
        else:
            if self.stacking_coef is None or len(self.stacking_coef) != k or self.stacking_intercept is None:
                raise ValueError(f"stacking EnsembleArtifact needs stacking_coef ({k} values) and stacking_intercept")
            object.__setattr__(self, "stacking_coef", tuple(float(v) for v in self.stacking_coef))
            object.__setattr__(self, "stacking_intercept", float(self.stacking_intercept))

    @classmethod
    def from_stacking(
        cls, member_paths, model: LogisticRegression, threshold: float, metadata: dict | None = None
    ) -> EnsembleArtifact:
        """An artifact from a fitted stacking ``LogisticRegression`` (see ``fit_stacking``)."""
        return cls(
            tuple(member_paths),
            threshold,
            "stacking",
            stacking_coef=tuple(model.coef_[0]),
            stacking_intercept=float(model.intercept_[0]),
            metadata=dict(metadata or {}),
        )

    def combine(self, member_probs) -> np.ndarray:
        """(N,) ensemble probabilities from (K, N) member probabilities."""
        p = check_member_probs(member_probs)
        if p.shape[0] != len(self.member_paths):
            raise ValueError(f"the artifact has {len(self.member_paths)} members, got probabilities of {p.shape[0]}")
        if self.method == "weighted":
            return ensemble_predict(p, self.weights)
        return sigmoid(self.stacking_intercept + np.asarray(self.stacking_coef) @ logit(p))

    def predict(
        self, features_by_member: Sequence[np.ndarray], member_predict: Callable[[str, np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score clips with every member and combine.

        Args:
            features_by_member: per member, its input features (members may use different streams).
            member_predict: ``fn(model_path, features) -> (N,) probability of violent``
                (the caller loads models, so this module needs no Keras).

        Returns:
            (probabilities (N,), 0/1 predictions at the stored threshold).
        """
        if len(features_by_member) != len(self.member_paths):
            raise ValueError(
                f"features_by_member has {len(features_by_member)} entries but the artifact has "
                f"{len(self.member_paths)} members; pass one feature array per member, in order"
            )
        probs = np.stack(
            [
                np.asarray(member_predict(path, x), dtype=np.float64).reshape(-1)
                for path, x in zip(self.member_paths, features_by_member, strict=True)
            ]
        )
        prob = self.combine(probs)
        return prob, predict_labels(prob, self.threshold)

    def save(self, path) -> None:
        """Write JSON; member paths inside the artifact's folder or beside it (e.g. notebook 03's model in
        ``models/hybrid/`` for an ensemble in ``models/ensemble/``) are stored relative to it (movable runs)."""
        path = Path(path)
        folder = path.resolve().parent
        paths = []
        for p in self.member_paths:
            absolute = Path(p).resolve()
            paths.append(os.path.relpath(absolute, folder) if folder.parent in absolute.parents else str(p))
        data = dataclasses.asdict(self)
        data["member_paths"] = paths
        write_text_atomic(path, json.dumps(data, indent=2))

    @classmethod
    def load(cls, path) -> EnsembleArtifact:
        """Read an artifact written by ``save``; relative member paths resolve against its folder."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read ensemble artifact {str(path)!r}: {err}") from None
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(
                f"{str(path)!r} is not an ensemble artifact (unexpected keys "
                f"{sorted(set(data) - known) if isinstance(data, dict) else type(data).__name__})"
            )
        folder = path.resolve().parent
        data["member_paths"] = tuple(str(p) if Path(p).is_absolute() else str(folder / p) for p in data["member_paths"])
        for key in ("weights", "stacking_coef"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)
