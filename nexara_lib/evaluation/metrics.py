"""Metrics, confidence intervals, paired tests and validation-only choices.

Everything here works on NumPy arrays of predicted probabilities of the violent
class (label 1). A clip is predicted violent when ``prob >= threshold``.

Honesty by API: every function that *chooses* something (a threshold, a
temperature) takes a ``Predictions`` object and calls ``require_validation``, so
choosing on test data is an error instead of a silent leak.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
from scipy import optimize, stats
from sklearn.metrics import average_precision_score


SPLITS = ("train", "val", "test")
_EPS = 1e-7  # probability clip before logits / logs, so 0 and 1 stay finite


# --------------------------------------------------------------------------
# Predictions and the validation guard
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Predictions:
    """Labels and predicted probabilities of one split.

    Args:
        split: "train", "val" or "test": the data the probabilities were made on.
        y_true: (N,) labels, 0 = non-violent, 1 = violent.
        prob: (N,) predicted probability of the violent class, in [0, 1].
        clip_ids: optional N identifiers (e.g. manifest clip ids), one per row.
    """

    split: str
    y_true: np.ndarray
    prob: np.ndarray
    clip_ids: tuple | None = None

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"Predictions.split must be one of {SPLITS}, got {self.split!r}")
        y = check_labels(self.y_true, "Predictions.y_true")
        p = check_probabilities(self.prob, "Predictions.prob")
        if len(y) != len(p):
            raise ValueError(f"Predictions: y_true has {len(y)} rows but prob has {len(p)}; "
                             "pass one probability per labelled clip")
        ids = self.clip_ids
        if ids is not None:
            ids = tuple(i.item() if isinstance(i, np.generic) else i for i in ids)
            if len(ids) != len(y):
                raise ValueError(f"Predictions: clip_ids has {len(ids)} entries but y_true has {len(y)}")
        # Read-only copies: a frozen record should not change under the caller's feet.
        y, p = y.copy(), p.copy()
        y.setflags(write=False)
        p.setflags(write=False)
        object.__setattr__(self, "y_true", y)
        object.__setattr__(self, "prob", p)
        object.__setattr__(self, "clip_ids", ids)

    def __len__(self) -> int:
        return len(self.y_true)

    def pred(self, threshold: float = 0.5) -> np.ndarray:
        """Hard labels: 1 where ``prob >= threshold``."""
        return (self.prob >= threshold).astype(np.int64)

    def with_prob(self, prob) -> "Predictions":
        """The same clips and split with new probabilities (e.g. after TTA or scaling)."""
        return dataclasses.replace(self, prob=np.asarray(prob, dtype=np.float64))


def require_validation(preds, what: str) -> None:
    """Refuse to choose ``what`` on anything but validation predictions.

    Args:
        preds: a ``Predictions`` object (or a list of them).
        what: what is being chosen, used in the error message (e.g. "the threshold").

    Raises:
        ValueError: if any of ``preds`` is not a ``Predictions`` with split "val".
    """
    items = preds if isinstance(preds, (list, tuple)) else [preds]
    if not items:
        raise ValueError(f"{what}: got no predictions; pass validation Predictions(split='val', ...)")
    for item in items:
        if not isinstance(item, Predictions):
            raise ValueError(f"{what} needs Predictions(split='val', y_true=..., prob=...), got "
                             f"{type(item).__name__}; wrap validation arrays in Predictions so the split is explicit")
        if item.split != "val":
            raise ValueError(f"{what} must be chosen on the validation split, got {item.split!r}: choosing it on "
                             f"{item.split} data leaks those labels into the result and inflates reported metrics; "
                             "pass Predictions(split='val', ...) made on the validation clips")


def require_same_clips(preds_list: Sequence[Predictions], what: str) -> np.ndarray:
    """Check that several Predictions describe the same clips; return their labels."""
    first = preds_list[0]
    for i, other in enumerate(preds_list[1:], start=1):
        if len(other) != len(first) or not np.array_equal(other.y_true, first.y_true):
            raise ValueError(f"{what}: predictions #{i} have different labels/length than #0; every member/view "
                             "must be evaluated on the same clips in the same order")
        if first.clip_ids is not None and other.clip_ids is not None and first.clip_ids != other.clip_ids:
            raise ValueError(f"{what}: predictions #{i} have different clip_ids than #0; align them by clip first")
    return first.y_true


# --------------------------------------------------------------------------
# Input checks and small numeric helpers
# --------------------------------------------------------------------------
def check_labels(y_true, name: str = "y_true") -> np.ndarray:
    """Return ``y_true`` as a 1-D int64 array of 0/1, or raise ValueError."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of 0/1 labels, got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise ValueError(f"{name} must hold only 0 (non-violent) and 1 (violent), found {bad.tolist()}")
    return y.astype(np.int64)


def check_probabilities(prob, name: str = "prob") -> np.ndarray:
    """Return ``prob`` as a 1-D float64 array in [0, 1], or raise ValueError."""
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of probabilities of the violent class, got shape {p.shape}; "
                         "for a 2-way softmax output pass probs[:, 1]")
    if not np.isfinite(p).all() or (p.size and (p.min() < 0 or p.max() > 1)):
        raise ValueError(f"{name} must be finite probabilities in [0, 1]; got min {np.nanmin(p) if p.size else None}, "
                         f"max {np.nanmax(p) if p.size else None}, NaN/inf present: {not np.isfinite(p).all()}")
    return p


def _check_pair(y_true, prob) -> tuple[np.ndarray, np.ndarray]:
    y = check_labels(y_true)
    p = check_probabilities(prob)
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but prob has {len(p)}; pass one probability per clip")
    if len(y) == 0:
        raise ValueError("got no clips: y_true and prob are empty")
    return y, p


def logit(prob) -> np.ndarray:
    """Log-odds of ``prob`` (clipped to [1e-7, 1 - 1e-7] so 0 and 1 stay finite)."""
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z) -> np.ndarray:
    """Inverse of ``logit``."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------
def _ratio(num, den) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def roc_auc(y_true, prob) -> float:
    """Area under the ROC curve (Mann-Whitney rank form, ties count half); NaN if one class is absent."""
    y = np.asarray(y_true)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    # Rank form instead of sklearn: same value, ~10x faster inside bootstrap loops.
    ranks = stats.rankdata(prob)
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def pr_auc(y_true, prob) -> float:
    """Average precision of the violent class; NaN without violent clips."""
    y = np.asarray(y_true)
    if y.sum() == 0:
        return float("nan")
    return float(average_precision_score(y, prob))


def log_loss(y_true, prob) -> float:
    """Mean binary cross-entropy (natural log)."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _confusion(y, pred) -> tuple[int, int, int, int]:
    tp = int(np.sum((pred == 1) & (y == 1)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    tn = len(y) - tp - fp - fn
    return tn, fp, fn, tp


def _nanmean2(a: float, b: float) -> float:
    values = [v for v in (a, b) if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def _threshold_metrics(tn, fp, fn, tp) -> dict:
    acc_nonviolent = _ratio(tn, tn + fp)
    acc_violent = _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, tn + fp + fn + tp),
        # With one class absent this is the recall of the present class (as sklearn does).
        "balanced_accuracy": _nanmean2(acc_nonviolent, acc_violent),
        "acc_nonviolent": acc_nonviolent,
        "acc_violent": acc_violent,
        "class_gap": abs(acc_violent - acc_nonviolent),
        "precision_nonviolent": _ratio(tn, tn + fn),
        "recall_nonviolent": acc_nonviolent,
        "f1_nonviolent": _ratio(2 * tn, 2 * tn + fn + fp),
        "precision_violent": _ratio(tp, tp + fp),
        "recall_violent": acc_violent,
        "f1_violent": _ratio(2 * tp, 2 * tp + fp + fn),
        "fpr": _ratio(fp, fp + tn),
    }


def binary_metrics(y_true, prob, threshold: float = 0.5) -> dict:
    """All per-class metrics at one operating threshold.

    Per-class accuracy is the recall of that class (acc_violent = TPR,
    acc_nonviolent = TNR); class_gap = |acc_violent - acc_nonviolent|. Undefined
    ratios (e.g. precision with no predicted positives) are NaN, not 0.

    Args:
        y_true: (N,) 0/1 labels.
        prob: (N,) probability of the violent class.
        threshold: predict violent when ``prob >= threshold``.

    Returns:
        dict with n, n_nonviolent, n_violent, threshold, accuracy, balanced_accuracy,
        acc_nonviolent, acc_violent, class_gap, precision/recall/f1 per class, fpr,
        tn, fp, fn, tp, roc_auc, pr_auc, log_loss.
    """
    y, p = _check_pair(y_true, prob)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    tn, fp, fn, tp = _confusion(y, (p >= threshold).astype(np.int64))
    out = {"n": len(y), "n_nonviolent": int((y == 0).sum()), "n_violent": int((y == 1).sum()),
           "threshold": float(threshold)}
    out.update(_threshold_metrics(tn, fp, fn, tp))
    out.update({"tn": tn, "fp": fp, "fn": fn, "tp": tp,
                "roc_auc": roc_auc(y, p), "pr_auc": pr_auc(y, p), "log_loss": log_loss(y, p)})
    return out


_THRESHOLD_METRICS = ("accuracy", "balanced_accuracy", "acc_nonviolent", "acc_violent", "class_gap",
                      "f1_violent", "f1_nonviolent", "precision_violent", "fpr")
_SCORE_METRICS = {"roc_auc": roc_auc, "pr_auc": pr_auc, "log_loss": log_loss}
LOWER_IS_BETTER = frozenset({"class_gap", "fpr", "log_loss"})
METRIC_NAMES = _THRESHOLD_METRICS + tuple(_SCORE_METRICS)


def metric_function(name: str, threshold: float = 0.5) -> Callable[[np.ndarray, np.ndarray], float]:
    """A ``fn(y_true, prob) -> float`` for ``name`` (see ``METRIC_NAMES``), for bootstraps and choosers.

    Args:
        name: metric name; threshold-free ones (roc_auc, pr_auc, log_loss) ignore ``threshold``.
        threshold: predict violent when ``prob >= threshold``.
    """
    if name in _SCORE_METRICS:
        return _SCORE_METRICS[name]
    if name not in _THRESHOLD_METRICS:
        raise ValueError(f"unknown metric {name!r}; choose one of {list(METRIC_NAMES)}")

    def fn(y_true, prob):
        y = np.asarray(y_true)
        return _threshold_metrics(*_confusion(y, (np.asarray(prob) >= threshold).astype(np.int64)))[name]

    fn.__name__ = f"{name}@{threshold:g}"
    return fn


# --------------------------------------------------------------------------
# Bootstrap and paired tests
# --------------------------------------------------------------------------
def _check_bootstrap_args(n, alpha):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (bootstrap resamples) must be a positive integer, got {n!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) (0.05 gives a 95% interval), got {alpha!r}")


def _stratified_indices(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Resample within each class so every resample keeps the class balance
    # (and AUC stays defined even for small, imbalanced sets).
    parts = [rng.choice(np.flatnonzero(y == c), size=int((y == c).sum()), replace=True)
             for c in (0, 1) if (y == c).any()]
    return np.concatenate(parts)


def bootstrap_ci(y_true, prob, metric_fn: Callable, n: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval, resampling clips within each class.

    Args:
        y_true: (N,) 0/1 labels.
        prob: (N,) probability of the violent class.
        metric_fn: ``fn(y_true, prob) -> float``, e.g. ``metric_function("accuracy", t)``.
        n: number of resamples.
        seed: random seed of the resampling.
        alpha: 0.05 gives a 95% interval.

    Returns:
        (point estimate on all clips, lower bound, upper bound); NaN resamples are ignored.
    """
    y, p = _check_pair(y_true, prob)
    _check_bootstrap_args(n, alpha)
    rng = np.random.default_rng(seed)
    point = float(metric_fn(y, p))
    values = np.empty(n)
    for i in range(n):
        idx = _stratified_indices(y, rng)
        values[i] = metric_fn(y[idx], p[idx])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return point, float("nan"), float("nan")
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return point, float(low), float(high)


def paired_bootstrap_diff(y_true, prob_a, prob_b, metric_fn: Callable, n: int = 1000, seed: int = 0,
                          alpha: float = 0.05, metric_fn_b: Callable | None = None) -> tuple[float, float, float]:
    """Bootstrap CI of ``metric(b) - metric(a)`` with the same resampled clips for both.

    Pairing removes the clip-to-clip variance both systems share, so the interval
    is much tighter than comparing two separate CIs.

    Args:
        y_true: (N,) 0/1 labels.
        prob_a, prob_b: (N,) probabilities of the two systems on the same clips.
        metric_fn: ``fn(y_true, prob) -> float``.
        n, seed, alpha: as in ``bootstrap_ci``.
        metric_fn_b: metric for system b when it differs from a's (e.g. its own threshold).

    Returns:
        (difference on all clips, lower bound, upper bound).
    """
    y, pa = _check_pair(y_true, prob_a)
    _, pb = _check_pair(y_true, prob_b)
    _check_bootstrap_args(n, alpha)
    rng = np.random.default_rng(seed)
    fn_b = metric_fn_b or metric_fn
    point = float(fn_b(y, pb) - metric_fn(y, pa))
    diffs = np.empty(n)
    for i in range(n):
        idx = _stratified_indices(y, rng)
        diffs[i] = fn_b(y[idx], pb[idx]) - metric_fn(y[idx], pa[idx])
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return point, float("nan"), float("nan")
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return point, float(low), float(high)


def mcnemar_test(y_true, pred_a, pred_b, exact_below: int = 25) -> dict:
    """McNemar's test for two classifiers' hard predictions on the same clips.

    Args:
        y_true: (N,) 0/1 labels.
        pred_a, pred_b: (N,) 0/1 predictions.
        exact_below: use the exact binomial test when b + c is below this, else
            chi-square with continuity correction.

    Returns:
        dict(b = a right & b wrong, c = a wrong & b right, statistic, p_value, method).
    """
    y = check_labels(y_true)
    a = check_labels(pred_a, "pred_a")
    b_ = check_labels(pred_b, "pred_b")
    if not len(y) == len(a) == len(b_):
        raise ValueError(f"y_true, pred_a and pred_b must have the same length, got {len(y)}, {len(a)}, {len(b_)}")
    a_right, b_right = a == y, b_ == y
    b = int(np.sum(a_right & ~b_right))
    c = int(np.sum(~a_right & b_right))
    if b + c == 0:
        return {"b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0, "method": "exact"}
    if b + c < exact_below:
        p_value = stats.binomtest(min(b, c), b + c, 0.5).pvalue
        return {"b": b, "c": c, "statistic": float(min(b, c)), "p_value": float(min(1.0, p_value)), "method": "exact"}
    statistic = (abs(b - c) - 1.0) ** 2 / (b + c)
    return {"b": b, "c": c, "statistic": float(statistic), "p_value": float(stats.chi2.sf(statistic, df=1)),
            "method": "chi2"}


def compare_paired(y_true, prob_a, prob_b, threshold: float = 0.5, n_bootstrap: int = 1000, seed: int = 0,
                   alpha: float = 0.05, names: tuple[str, str] = ("a", "b"), threshold_b: float | None = None) -> dict:
    """Per-class comparison of two systems on the same clips at one threshold.

    Args:
        y_true: (N,) 0/1 labels (usually test).
        prob_a, prob_b: (N,) probabilities of the two systems.
        threshold: operating threshold (chosen on validation beforehand).
        n_bootstrap, seed, alpha: paired bootstrap settings.
        names: labels of the two systems in the result.
        threshold_b: system b's own threshold when it differs (each chosen on validation).

    Returns:
        dict with each system's metrics, ``delta`` (b - a), ``mcnemar`` and paired
        bootstrap CIs (``*_diff_ci`` = [diff, low, high]) for accuracy and balanced accuracy.
    """
    y, pa = _check_pair(y_true, prob_a)
    _, pb = _check_pair(y_true, prob_b)
    keys = ("accuracy", "balanced_accuracy", "acc_nonviolent", "acc_violent", "class_gap", "fpr", "roc_auc")
    tb = threshold if threshold_b is None else threshold_b
    ma, mb = binary_metrics(y, pa, threshold), binary_metrics(y, pb, tb)
    out = {names[0]: {k: ma[k] for k in keys}, names[1]: {k: mb[k] for k in keys},
           "delta": {k: mb[k] - ma[k] for k in keys}, "threshold": float(threshold), "threshold_b": float(tb),
           "mcnemar": mcnemar_test(y, (pa >= threshold).astype(int), (pb >= tb).astype(int))}
    for name in ("accuracy", "balanced_accuracy"):
        out[f"{name}_diff_ci"] = list(paired_bootstrap_diff(y, pa, pb, metric_function(name, threshold),
                                                            n=n_bootstrap, seed=seed, alpha=alpha,
                                                            metric_fn_b=metric_function(name, tb)))
    return out


# --------------------------------------------------------------------------
# Thresholds (chosen on validation only)
# --------------------------------------------------------------------------
def sweep_thresholds(y_true, prob, thresholds) -> dict:
    """Confusion counts and rates at many thresholds at once (vectorized).

    Returns:
        dict of (M,) arrays: threshold, tn, fp, fn, tp, tpr, fpr, tnr, accuracy,
        balanced_accuracy, precision (NaN where nothing is predicted violent).
    """
    y, p = _check_pair(y_true, prob)
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    tp = len(pos) - np.searchsorted(pos, t, side="left")  # prob >= t
    fp = len(neg) - np.searchsorted(neg, t, side="left")
    fn, tn = len(pos) - tp, len(neg) - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(len(pos) > 0, tp / max(len(pos), 1), np.nan)
        tnr = np.where(len(neg) > 0, tn / max(len(neg), 1), np.nan)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
    return {"threshold": t, "tn": tn, "fp": fp, "fn": fn, "tp": tp, "tpr": tpr, "fpr": 1 - tnr, "tnr": tnr,
            "accuracy": (tp + tn) / len(y), "balanced_accuracy": (tpr + tnr) / 2, "precision": precision}


def candidate_thresholds(prob) -> np.ndarray:
    """Every distinct decision: the lowest prob, midpoints between distinct probs, and just above the highest."""
    u = np.unique(check_probabilities(prob))
    # Midpoints rather than the observed values: the same decisions on this data,
    # with the largest margin to the clips on either side.
    return np.concatenate([u[:1], (u[:-1] + u[1:]) / 2, [np.nextafter(u[-1], np.inf)]])


def choose_threshold(val_preds: Predictions, objective: str = "balanced_accuracy", max_fpr: float = 0.03) -> float:
    """Choose the operating threshold on validation predictions.

    Args:
        val_preds: ``Predictions(split="val", ...)``; other splits are refused.
        objective: "balanced_accuracy" (highest; ties -> closest to 0.5) or
            "max_fpr" (highest violent recall with validation FPR <= max_fpr;
            ties -> the highest threshold, i.e. the lowest FPR).
        max_fpr: the false-positive-rate cap for objective "max_fpr".

    Returns:
        threshold: predict violent when ``prob >= threshold``.
    """
    require_validation(val_preds, "the decision threshold")
    y = val_preds.y_true
    if y.min() == y.max():
        raise ValueError("choose_threshold needs both classes in the validation predictions; "
                         f"got only label {int(y[0])} ({len(y)} clips)")
    sweep = sweep_thresholds(y, val_preds.prob, candidate_thresholds(val_preds.prob))
    t = sweep["threshold"]
    if objective == "balanced_accuracy":
        score = sweep["balanced_accuracy"]
        best = np.flatnonzero(score >= score.max() - 1e-12)
        return float(t[best[np.argmin(np.abs(t[best] - 0.5))]])
    if objective == "max_fpr":
        if not 0 <= max_fpr < 1:
            raise ValueError(f"max_fpr must be in [0, 1), got {max_fpr!r}")
        feasible = np.flatnonzero(sweep["fpr"] <= max_fpr + 1e-12)  # never empty: the top threshold has FPR 0
        tpr = sweep["tpr"][feasible]
        best = feasible[tpr >= tpr.max() - 1e-12]
        return float(t[best].max())
    raise ValueError(f"unknown objective {objective!r}; use 'balanced_accuracy' or 'max_fpr'")


# --------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------
def reliability_curve(y_true, prob, n_bins: int = 10) -> dict:
    """Equal-width reliability bins of the violent-class probability.

    Returns:
        dict of (n_bins,) arrays: bin_lower, bin_upper, mean_prob, frac_violent
        (NaN in empty bins) and count.
    """
    y, p = _check_pair(y_true, prob)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], p, side="right")  # bins [lo, hi); prob 1.0 lands in the last
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(which, weights=p, minlength=n_bins) / count
        frac = np.bincount(which, weights=y, minlength=n_bins) / count
    return {"bin_lower": edges[:-1], "bin_upper": edges[1:], "mean_prob": mean_prob,
            "frac_violent": frac, "count": count}


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """ECE: clip-weighted mean |observed violent fraction - mean predicted prob| over equal-width bins."""
    curve = reliability_curve(y_true, prob, n_bins)
    used = curve["count"] > 0
    gaps = np.abs(curve["frac_violent"][used] - curve["mean_prob"][used])
    return float(np.sum(gaps * curve["count"][used]) / curve["count"].sum())


def apply_temperature(prob, temperature: float) -> np.ndarray:
    """Rescale probabilities by dividing their logits by ``temperature``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return sigmoid(logit(check_probabilities(prob)) / temperature)


def fit_temperature(val_preds: Predictions, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature that minimizes validation log-loss of ``sigmoid(logit(prob) / T)``.

    T > 1 softens over-confident probabilities; the ranking (AUC) is unchanged.

    Args:
        val_preds: ``Predictions(split="val", ...)``; other splits are refused.
        bounds: search range of T.

    Returns:
        The temperature T.
    """
    require_validation(val_preds, "the calibration temperature")
    z, y = logit(val_preds.prob), val_preds.y_true

    def loss(log_t):
        return log_loss(y, sigmoid(z / np.exp(log_t)))

    # Search log T: the loss is much better conditioned there than in T.
    result = optimize.minimize_scalar(loss, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                                      options={"xatol": 1e-6})
    return float(np.exp(result.x))


# --------------------------------------------------------------------------
# Plain-language verdicts for reports
# --------------------------------------------------------------------------
def describe_comparison(what: str, diff_ci, p_value: float, alpha: float = 0.05,
                        metric: str = "test accuracy") -> str:
    """One sentence a stakeholder can read: the paired difference, its CI and whether it is significant.

    Args:
        what: the comparison, e.g. "TTA vs no TTA" (b vs a).
        diff_ci: [difference, low, high] of ``metric`` (b - a), as fractions.
        p_value: McNemar p-value of the same paired comparison.
    Returns:
        e.g. "TTA vs no TTA: test accuracy +1.6 pp (95% CI -1.6 to +4.7 pp, McNemar p = 0.62) — not
        significant: the interval includes no change."
    """
    diff, low, high = (float(v) for v in diff_ci)
    if not all(math.isfinite(v) for v in (diff, low, high)):
        return f"{what}: {metric} difference could not be estimated (too few clips of a class)."
    p_text = f"McNemar p = {p_value:.2g}" if p_value is not None and math.isfinite(p_value) else "McNemar p n/a"
    head = f"{what}: {metric} {100 * diff:+.1f} pp (95% CI {100 * low:+.1f} to {100 * high:+.1f} pp, {p_text})"
    significant = p_value is not None and math.isfinite(p_value) and p_value < alpha
    if significant and low > 0:
        return f"{head} — a significant gain."
    if significant and high < 0:
        return f"{head} — a significant loss."
    if low == high == 0:
        return f"{head} — no clip changed its prediction: no measurable effect."
    return f"{head} — not significant: the interval includes no change."
