"""Per-camera thresholds and the statistics of the field-adaptation measurement (notebook 08).

Scores here are logits of the violent class (``log p / (1 - p)``), one per clip, with the clip's camera (its
source group). Two kinds of threshold decide when a clip alarms:

- a **global** one, chosen on out-of-fold scores of the training cameras: at the target false-alarm rate
  (``threshold_at_false_alarm_rate``, the rule of the detector's on-threshold) or for the best balanced
  accuracy (``balanced_accuracy_threshold``, the rule of the run's operating threshold);
- a **per-camera** one set on that camera's normal footage (``CameraThresholdRule``): the camera's level (the
  mean score of its normal clips, shrunk toward the training cameras' level by ``kappa`` pseudo-clips) plus
  the offset that gives the target false-alarm rate on the training cameras, measured the same way.

Results are pooled over cameras; every 95% CI resamples whole cameras (``camera_bootstrap``), because clips of
one camera are not independent.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from threadpoolctl import threadpool_limits

from nexara_lib.evaluation.stats import ci_excludes_zero

INFINITE = math.inf  # kappa = inf: every camera gets the global level (the global threshold)


def threshold_at_false_alarm_rate(normal_scores, rate: float) -> float:
    """The lowest threshold at which at most ``rate`` of ``normal_scores`` reach it (``score >= threshold``).

    Equals the detector's rule (``choose_threshold(..., "max_fpr")``: the most recall allowed) on scores
    without ties.
    """
    s = np.sort(np.asarray(normal_scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("a false-alarm threshold needs at least one normal clip's score")
    if not 0 < rate < 1:
        raise ValueError(f"the false-alarm rate must be in (0, 1), got {rate!r}")
    allowed = int(math.floor(rate * s.size + 1e-9))  # normal clips that may reach the threshold
    return float(np.nextafter(s[s.size - 1 - allowed], np.inf))


def balanced_accuracy_threshold(y, scores) -> float:
    """The threshold with the best balanced accuracy on ``scores`` (logits; ties: the one closest to 0, i.e.
    probability 0.5), as the run's operating threshold is chosen on out-of-fold predictions."""
    y, s = np.asarray(y).astype(int), np.asarray(scores, dtype=np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError("a balanced-accuracy threshold needs scores of both classes")
    u = np.unique(s)
    cands = np.concatenate([u[:1], (u[:-1] + u[1:]) / 2, [np.nextafter(u[-1], np.inf)]])
    tpr = (s[y == 1][None, :] >= cands[:, None]).mean(1)
    tnr = (s[y == 0][None, :] < cands[:, None]).mean(1)
    score = (tpr + tnr) / 2
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(cands[best[np.argmin(np.abs(cands[best]))]])


def leave_one_out_levels(scores, y, cameras, kappa: float, global_level: float) -> np.ndarray:
    """Per clip, its camera's level without the clip itself: the mean score of the camera's OTHER normal clips,
    shrunk toward ``global_level`` as if it were ``kappa`` more clips (kappa = inf: the global level)."""
    s, y, cameras = np.asarray(scores, dtype=np.float64), np.asarray(y).astype(int), np.asarray(cameras).astype(str)
    out = np.full(len(s), float(global_level))
    if math.isinf(kappa):
        return out
    for camera in np.unique(cameras):
        rows = np.flatnonzero(cameras == camera)
        normal = rows[y[rows] == 0]
        total, count = s[normal].sum(), len(normal)
        for i in rows:
            t, n = (total - s[i], count - 1) if y[i] == 0 else (total, count)
            out[i] = (t + kappa * global_level) / (n + kappa) if n + kappa > 0 else global_level
    return out


@dataclasses.dataclass(frozen=True)
class CameraThresholdRule:
    """A camera's threshold from its normal footage: ``level + offset``, where ``level`` is the mean score of the
    footage shrunk toward ``global_level`` by ``kappa`` pseudo-clips.

    With ``kappa = inf`` every camera gets the global threshold ``global_level + offset``; with ``kappa = 0`` a
    camera's own level only. This is the state a detector needs per camera (``camera_state``): its level and how
    many normal clips (windows) it came from; the rule itself (``to_json``) is the same for every camera.
    """

    global_level: float  # mean score of the training cameras' normal clips (out of fold)
    offset: float  # score above a camera's level at which the training cameras alarm at false_alarm_rate
    kappa: float  # pseudo-clips of the global level mixed into a camera's level (inf = global threshold)
    false_alarm_rate: float  # the target it was fit for

    def level(self, normal_scores) -> float:
        s = np.asarray(normal_scores, dtype=np.float64)
        if math.isinf(self.kappa) or s.size + self.kappa == 0:
            return float(self.global_level)
        return float((s.sum() + self.kappa * self.global_level) / (s.size + self.kappa))

    def threshold(self, normal_scores) -> float:
        """The on-threshold (a logit) of a camera whose normal footage scored ``normal_scores``."""
        return self.level(normal_scores) + self.offset

    def camera_state(self, normal_scores) -> dict:
        """What a detector keeps for one camera: its level, the clips it came from and its threshold."""
        s = np.asarray(normal_scores, dtype=np.float64)
        return {"level": self.level(s), "normal_clips": int(s.size), "threshold_logit": self.threshold(s)}

    def to_json(self) -> dict:
        return {
            "global_level": self.global_level,
            "offset": self.offset,
            "kappa": "inf" if math.isinf(self.kappa) else self.kappa,
            "false_alarm_rate": self.false_alarm_rate,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> CameraThresholdRule:
        missing = {"global_level", "offset", "kappa", "false_alarm_rate"} - set(data)
        if missing:
            raise ValueError(f"a camera threshold rule needs {sorted(missing)}; got keys {sorted(data)}")
        kappa = INFINITE if data["kappa"] == "inf" else float(data["kappa"])
        return cls(float(data["global_level"]), float(data["offset"]), kappa, float(data["false_alarm_rate"]))


def fit_camera_threshold_rule(scores, y, cameras, false_alarm_rate: float, kappa: float) -> CameraThresholdRule:
    """Fit the offset on out-of-fold scores of the training cameras: each normal clip is measured against its
    camera's level without it (``leave_one_out_levels``), as a new camera's clips are in the field."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(y).astype(int)
    if not (y == 0).any():
        raise ValueError("a camera threshold rule needs out-of-fold scores of normal clips")
    global_level = float(s[y == 0].mean())
    levels = leave_one_out_levels(s, y, cameras, kappa, global_level)
    offset = threshold_at_false_alarm_rate((s - levels)[y == 0], false_alarm_rate)
    return CameraThresholdRule(global_level, offset, float(kappa), float(false_alarm_rate))


def choose_kappa(scores, y, cameras, false_alarm_rate: float, grid: Sequence[float]) -> float:
    """The shrinkage of ``grid`` (inf always included) whose rule catches the most violent clips on these
    out-of-fold scores at the target false-alarm rate (ties: the larger kappa, the more global)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(y).astype(int)
    best, best_recall = INFINITE, -1.0
    for kappa in sorted({*map(float, grid), INFINITE}, reverse=True):
        rule = fit_camera_threshold_rule(s, y, cameras, false_alarm_rate, kappa)
        levels = leave_one_out_levels(s, y, cameras, kappa, rule.global_level)
        recall = float(np.mean(s[y == 1] >= levels[y == 1] + rule.offset)) if (y == 1).any() else 0.0
        if recall > best_recall + 1e-12:
            best, best_recall = kappa, recall
    return best


# --- metrics of scored rows, with CIs over cameras ---------------------------------------------------------


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC by ranks (ties count half); NaN without both classes."""
    n1, n0 = int(np.sum(y == 1)), int(np.sum(y == 0))
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def row_metrics(rows: pd.DataFrame, threshold_column: str, accuracy_column: str = "threshold_accuracy") -> dict:
    """Accuracy (at ``accuracy_column``), ROC AUC, fight recall and false-alarm rate (at ``threshold_column``) of
    scored rows (columns y, score and the per-row thresholds)."""
    return metrics_of(
        rows["y"].to_numpy(),
        rows["score"].to_numpy(),
        rows[accuracy_column].to_numpy(),
        rows[threshold_column].to_numpy(),
    )


def metrics_of(y, score, accuracy_threshold, alarm_threshold) -> dict:
    """``row_metrics`` on arrays: accuracy, auc, recall, false_alarm_rate (NaN where undefined)."""
    y, s = np.asarray(y).astype(int), np.asarray(score, dtype=np.float64)
    alarm = s >= np.asarray(alarm_threshold, dtype=np.float64)
    return {
        "accuracy": float(np.mean((s >= np.asarray(accuracy_threshold, dtype=np.float64)) == y)) if len(y) else np.nan,
        "auc": _auc(y, s),
        "recall": float(alarm[y == 1].mean()) if (y == 1).any() else np.nan,
        "false_alarm_rate": float(alarm[y == 0].mean()) if (y == 0).any() else np.nan,
    }


def camera_bootstrap(
    cameras, statistic: Callable[[np.ndarray], Mapping[str, float]], n: int, seed: int, alpha: float = 0.05
) -> dict[str, tuple[float, float, float]]:
    """``{name: (value on all rows, low, high)}``: a percentile bootstrap that resamples whole cameras.

    Args:
        cameras: the camera of every row.
        statistic: row indices -> ``{name: value}`` (NaN values of a resample are left out).
        n: resamples; seed: their random seed; alpha: 0.05 gives 95% intervals.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"bootstrap resamples must be a positive integer, got {n!r}")
    with threadpool_limits(limits=1):  # thousands of small array operations: one thread is fastest
        return _camera_bootstrap(np.asarray(cameras).astype(str), statistic, n, seed, alpha)


def _camera_bootstrap(cameras: np.ndarray, statistic, n: int, seed: int, alpha: float) -> dict:
    point = dict(statistic(np.arange(len(cameras))))
    groups = [np.flatnonzero(cameras == c) for c in np.unique(cameras)]
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(n) for name in point}
    for b in range(n):
        idx = np.concatenate([groups[i] for i in rng.integers(0, len(groups), size=len(groups))])
        values = statistic(idx)
        for name in point:
            draws[name][b] = values[name]
    out = {}
    for name, value in point.items():
        finite = draws[name][np.isfinite(draws[name])]
        low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2]) if finite.size else (np.nan, np.nan)
        out[name] = (float(value), float(low), float(high))
    return out


def significance_words(low: float, high: float) -> str:
    """'significant' when a 95% CI of a difference excludes 0, else 'not significant'."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not measurable"
    return "significant" if ci_excludes_zero(low, high) else "not significant"
