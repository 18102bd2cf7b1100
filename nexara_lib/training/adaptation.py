"""The field-adaptation simulation of notebook 08: what a camera never seen in training gains from calibration on
its normal footage and from k reviewed clips, by grouped cross-validation over cameras on train + val (never test).

The model is the pooled linear probe of the run's streams (``training.pooled``: per dimension mean, standard
deviation and mean |x[t+1] - x[t]| over time, standardised on the training clips, L2 logistic regression with
the recipe's class weights), refit for every fold in closed form: in the span of the training clips (a linear
kernel), which gives exactly the L2 solution at a fraction of the cost.

For every fold seed, the cameras are dealt to ``cv_folds`` grouped folds. For the cameras of each held-out fold:

- the thresholds come from out-of-fold scores of the training cameras (an inner grouped CV): the global
  on-threshold at ``false_alarm_rate``, the operating threshold (best balanced accuracy) and the per-camera rule
  (``evaluation.adaptation.CameraThresholdRule``, its shrinkage chosen on those scores);
- k = 0: the probe trained on the training cameras scores every clip of the held-out cameras;
- k > 0 (each of ``draws`` seeded draws): k clips of every held-out camera are "reviewed" and join training (at
  most all but one of a camera's clips; a clip added is never scored); the rest are scored.

Two designs are scored side by side: ``plain`` (reviewed clips join as ordinary clips; the global thresholds)
and ``adapted``: the per-camera threshold from the camera's other normal clips, and optionally reviewed clips
weighted ``review_weight``, features centered on each camera's normal footage (``center_shrinkage``,
``camera_centering``) and the camera's other normal clips as extra training negatives (``calibration_negatives``,
scored in two halves so a clip never calibrates itself). Every scored row keeps both thresholds. On
surv-fight-dev only the per-camera threshold helped (grouped CV), so the options default to off in notebook 08.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from threadpoolctl import threadpool_limits

from nexara_lib.evaluation.adaptation import (
    CameraThresholdRule,
    balanced_accuracy_threshold,
    choose_kappa,
    fit_camera_threshold_rule,
    threshold_at_false_alarm_rate,
)
from nexara_lib.training.camera_centering import CameraCentering
from nexara_lib.training.losses import alpha_from_labels
from nexara_lib.training.pooled import LOGISTIC_MAX_ITER, recipe_class_weights

logger = logging.getLogger("nexara.training")

DESIGNS = ("plain", "adapted")
CAMERA_COLUMNS = ("threshold_camera", "calibration_clips")  # filled per camera once every clip is scored
ROW_COLUMNS = [
    "fold_seed", "fold", "draw", "k", "design", "clip_id", "camera", "y", "score",
    "threshold_accuracy", "threshold_global", "threshold_camera", "calibration_clips", "reviewed",
]  # fmt: skip


def pooled_statistics(x) -> np.ndarray:
    """``(N, T, D) -> (N, 3D)`` float64: mean, standard deviation and mean |x[t+1] - x[t]| over time (the
    ``TemporalPooling`` of the pooled models, in the same order)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] < 2:
        raise ValueError(f"pooled statistics need (N, T >= 2, D) features, got shape {x.shape}")
    return np.concatenate([x.mean(1), x.std(1), np.abs(np.diff(x, axis=1)).mean(1)], axis=1)


@dataclasses.dataclass(frozen=True)
class AdaptationPlan:
    """What the simulation does (notebook 08's parameters, ``stages.adaptation.plan_from_params``)."""

    ks: tuple[int, ...]  # reviewed clips per held-out camera; 0 = none
    draws: int  # seeded draws of which clips are reviewed, for every k > 0
    fold_seeds: tuple[int, ...]  # one grouped fold assignment of the cameras each
    cv_folds: int  # grouped folds over cameras (fewer when there are fewer cameras)
    strength: float  # C of the L2 logistic regression
    review_weight: float  # adapted design: weight of a reviewed clip relative to a training clip of its class
    kappa_grid: tuple[float, ...]  # adapted design: shrinkages tried for the per-camera threshold (inf always)
    calibration_negatives: bool  # adapted design: the camera's other normal clips join training as negatives
    center_shrinkage: float | None  # adapted design: camera centering by normal footage (None = off)
    false_alarm_rate: float  # the detector's target (detect_false_alarm_rate)
    focal_alpha: str | float = "auto"  # the recipe's class weighting (recipe_class_weights)
    class_weights: bool = False
    seed: int = 0


class LinearProbe:
    """L2 logistic regression on standardised pooled statistics, solved in the span of the training clips."""

    def __init__(self, strength: float, focal_alpha: str | float = "auto", class_weights: bool = False):
        self.strength, self.focal_alpha, self.class_weights = float(strength), focal_alpha, class_weights

    def fit(self, z, y, multiplier=None) -> LinearProbe:
        """``multiplier``: per-clip factors on the recipe's class weights (reviewed clips, extra negatives)."""
        z, y = np.asarray(z, dtype=np.float64), np.asarray(y).astype(int)
        if len(np.unique(y)) < 2:
            raise ValueError("the probe needs training clips of both classes")
        self.mean, self.scale = z.mean(0), z.std(0)
        self.scale[self.scale < 1e-8] = 1.0
        self.train = (z - self.mean) / self.scale
        values, vectors = np.linalg.eigh(self.train @ self.train.T)
        keep = values > 1e-9 * max(values.max(), 1e-300)
        self.vectors, self.root = vectors[:, keep], np.sqrt(values[keep])
        alpha = alpha_from_labels(y) if self.focal_alpha == "auto" else float(self.focal_alpha)
        class_weight = {c: len(y) / (2.0 * np.sum(y == c)) for c in (0, 1)} if self.class_weights else None
        weights = recipe_class_weights(y, alpha, class_weight)
        sample_weight = np.where(y == 1, weights[1], weights[0])
        if multiplier is not None:
            sample_weight = sample_weight * np.asarray(multiplier, dtype=np.float64)
        self.model = LogisticRegression(C=self.strength, solver="lbfgs", max_iter=LOGISTIC_MAX_ITER)
        self.model.fit(self.vectors * self.root, y, sample_weight=sample_weight)
        return self

    def scores(self, z) -> np.ndarray:
        """Logits of the violent class."""
        kernel = ((np.asarray(z, dtype=np.float64) - self.mean) / self.scale) @ self.train.T
        return self.model.decision_function(kernel @ self.vectors / self.root)


def camera_folds(y, cameras, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped, stratified folds over cameras (at most one per camera); folds whose training part lacks a class
    are left out (their clips get no score)."""
    cameras = np.asarray(cameras).astype(str)
    k = min(int(k), len(np.unique(cameras)))
    if k < 2:
        raise ValueError(f"grouped cross-validation over cameras needs at least 2 cameras, got {k}")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = splitter.split(np.zeros(len(y)), np.asarray(y).astype(int), cameras)
    return [(fit, held) for fit, held in folds if len(np.unique(np.asarray(y)[fit])) == 2]


def out_of_fold_scores(pooled, y, cameras, plan: AdaptationPlan, seed: int) -> np.ndarray:
    """Out-of-fold logits of every clip (NaN where its fold was left out), from ``cv_folds`` camera folds."""
    out = np.full(len(y), np.nan)
    for fit, held in camera_folds(y, cameras, plan.cv_folds, seed):
        out[held] = _probe(plan).fit(pooled[fit], y[fit]).scores(pooled[held])
    return out


def choose_strength(pooled, y, cameras, grid: Sequence[float], cv_folds: int, seed: int = 0, **weighting) -> float:
    """The C of ``grid`` with the best out-of-fold accuracy at probability 0.5 over camera folds (ties: the
    smaller C), when the carried recipe does not fix one."""
    with threadpool_limits(limits=1):
        return _choose_strength(pooled, y, cameras, grid, cv_folds, seed, **weighting)


def _choose_strength(pooled, y, cameras, grid: Sequence[float], cv_folds: int, seed: int, **weighting) -> float:
    best, best_accuracy = None, -1.0
    for strength in sorted(float(c) for c in grid):
        oof = np.full(len(y), np.nan)
        for fit, held in camera_folds(y, cameras, cv_folds, seed):
            oof[held] = LinearProbe(strength, **weighting).fit(pooled[fit], y[fit]).scores(pooled[held])
        scored = np.isfinite(oof)
        accuracy = float(np.mean((oof[scored] >= 0) == y[scored])) if scored.any() else 0.0
        if accuracy > best_accuracy + 1e-12:
            best, best_accuracy = strength, accuracy
    if best is None:
        raise ValueError("choose_strength: pooled_c_grid is empty")
    return best


def _probe(plan: AdaptationPlan) -> LinearProbe:
    return LinearProbe(plan.strength, plan.focal_alpha, plan.class_weights)


@dataclasses.dataclass(frozen=True)
class _FoldThresholds:
    accuracy: float
    global_far: float
    rule: CameraThresholdRule


def _fold_thresholds(pooled, y, cameras, train, plan: AdaptationPlan, seed: int) -> _FoldThresholds:
    inner = out_of_fold_scores(pooled[train], y[train], cameras[train], plan, seed)
    scored = np.isfinite(inner)
    s, yy, cc = inner[scored], y[train][scored], cameras[train][scored]
    if len(np.unique(yy)) < 2:
        raise ValueError(
            "the training cameras of a fold give out-of-fold scores of one class only: too few cameras with both "
            "classes for adapt_cv_folds; lower it"
        )
    kappa = choose_kappa(s, yy, cc, plan.false_alarm_rate, plan.kappa_grid)
    return _FoldThresholds(
        balanced_accuracy_threshold(yy, s),
        threshold_at_false_alarm_rate(s[yy == 0], plan.false_alarm_rate),
        fit_camera_threshold_rule(s, yy, cc, plan.false_alarm_rate, kappa),
    )


def _camera_thresholds(scores, y, cameras, rule) -> tuple[np.ndarray, np.ndarray]:
    """Per scored clip: its camera's threshold from the camera's OTHER scored normal clips, and their count."""
    thresholds, counts = np.empty(len(scores)), np.zeros(len(scores), dtype=int)
    for camera in np.unique(cameras):
        rows = np.flatnonzero(cameras == camera)
        normal = rows[y[rows] == 0]
        for i in rows:
            others = normal[normal != i]
            thresholds[i], counts[i] = rule.threshold(scores[others]), len(others)
    return thresholds, counts


def _score_design(features, y, train, added, scored, design, plan, rng) -> list[tuple[np.ndarray, np.ndarray]]:
    """(scored indices, logits) of one design; 'adapted' with calibration negatives scores in two halves."""
    weight = plan.review_weight if design == "adapted" else 1.0
    fit = np.concatenate([train, added])
    multiplier = np.concatenate([np.ones(len(train)), np.full(len(added), weight)])
    if not (design == "adapted" and plan.calibration_negatives):
        return [(scored, _probe(plan).fit(features[fit], y[fit], multiplier).scores(features[scored]))]
    half = rng.random(len(scored)) < 0.5
    parts = []
    for part in (half, ~half):
        negatives = scored[~part & (y[scored] == 0)]  # the camera's other normal clips: calibration footage
        if not part.any():
            continue
        idx = np.concatenate([fit, negatives])
        mult = np.concatenate([multiplier, np.ones(len(negatives))])
        parts.append((scored[part], _probe(plan).fit(features[idx], y[idx], mult).scores(features[scored[part]])))
    return parts


def _design_features(pooled, y, cameras, train, plan: AdaptationPlan) -> dict[str, np.ndarray]:
    """What each design reads: the pooled statistics; the adapted design, centered per camera when asked."""
    if plan.center_shrinkage is None:
        return {"plain": pooled, "adapted": pooled}
    centering = CameraCentering.fit(pooled[train], y[train], plan.center_shrinkage)
    return {"plain": pooled, "adapted": centering.leave_one_out(pooled, y, cameras)}


def simulate_adaptation(pooled, y, cameras, clip_ids, plan: AdaptationPlan, progress: bool = True) -> pd.DataFrame:
    """Score the development pool's clips by grouped CV over cameras (see ``_simulate``), with BLAS on one
    thread: hundreds of small fits run far slower on several threads (more so on a busy machine)."""
    with threadpool_limits(limits=1):
        return _simulate(pooled, y, cameras, clip_ids, plan, progress)


def _simulate(pooled, y, cameras, clip_ids, plan: AdaptationPlan, progress: bool) -> pd.DataFrame:
    """Score the development pool's clips by grouped CV over cameras, k = ``plan.ks``, both designs.

    Args:
        pooled: ``(N, F)`` pooled statistics of the development pool (train + val clips; never test).
        y, cameras, clip_ids: labels, cameras (source groups) and ids of those clips.
        plan: the simulation's settings.

    Returns:
        One row per scored clip and (fold seed, draw, k, design): ``ROW_COLUMNS``. Thresholds and scores are
        logits; ``reviewed`` is the number of clips of the clip's camera that joined training. ``attrs["folds"]``
        lists each fold's thresholds and per-camera rule (its shrinkage chosen on the training cameras).
    """
    pooled, y = np.asarray(pooled, dtype=np.float64), np.asarray(y).astype(int)
    cameras, clip_ids = np.asarray(cameras).astype(str), np.asarray(clip_ids).astype(str)
    if not (len(pooled) == len(y) == len(cameras) == len(clip_ids)):
        raise ValueError("simulate_adaptation: pooled, y, cameras and clip_ids must describe the same clips")
    if any(k < 0 for k in plan.ks) or 0 not in plan.ks:
        raise ValueError(f"adapt_k must hold 0 (no reviewed clip) and counts >= 0, got {list(plan.ks)}")
    rows: list[dict] = []
    folds: list[dict] = []
    rules: dict[tuple, CameraThresholdRule] = {}  # (fold seed, fold, design) -> the fold's per-camera rule
    started = time.perf_counter()
    same = plan.review_weight == 1.0 and not plan.calibration_negatives and plan.center_shrinkage is None
    for fold_seed in plan.fold_seeds:
        for fold, (train, held) in enumerate(camera_folds(y, cameras, plan.cv_folds, fold_seed)):
            features = _design_features(pooled, y, cameras, train, plan)
            limits = {
                design: _fold_thresholds(features[design], y, cameras, train, plan, fold_seed + 1000)
                for design in (("plain",) if same else DESIGNS)
            }
            limits.setdefault("adapted", limits["plain"])
            folds.append({"fold_seed": fold_seed, "fold": fold, "cameras_held_out": int(len(np.unique(cameras[held])))})
            for design, limit in limits.items():
                rules[(fold_seed, fold, design)] = limit.rule
                folds[-1][design] = {
                    "threshold_accuracy": limit.accuracy,
                    "threshold_global": limit.global_far,
                    "camera_rule": limit.rule.to_json(),
                }
            for draw in range(plan.draws):
                rng = np.random.default_rng([plan.seed, fold_seed, fold, draw])
                order = {c: rng.permutation(held[cameras[held] == c]) for c in np.unique(cameras[held])}
                for k in plan.ks:
                    if k == 0 and draw > 0:
                        continue  # nothing is drawn at k = 0
                    added = np.concatenate([o[: min(k, len(o) - 1)] for o in order.values()]).astype(int)
                    scored = np.setdiff1d(held, added)
                    reviewed = {c: int(np.sum(cameras[added] == c)) for c in order}
                    plain = _score_design(features["plain"], y, train, added, scored, "plain", plan, rng)
                    for design in DESIGNS:
                        parts = plain if design == "plain" or same else None
                        for idx, s in parts or _score_design(
                            features[design], y, train, added, scored, design, plan, rng
                        ):
                            keys = {"fold_seed": fold_seed, "fold": fold, "draw": draw, "k": k, "design": design}
                            rows.extend(_rows(keys, idx, s, y, cameras, clip_ids, limits[design], reviewed))
    if progress:
        logger.info("adaptation simulation: %d scored rows in %.1f s", len(rows), time.perf_counter() - started)
    frame = _with_camera_thresholds(
        pd.DataFrame(rows, columns=[c for c in ROW_COLUMNS if c not in CAMERA_COLUMNS]), rules
    )[ROW_COLUMNS]
    frame.attrs["folds"] = folds
    return frame


def _rows(keys: dict, idx, scores, y, cameras, clip_ids, limits: _FoldThresholds, reviewed: dict) -> list[dict]:
    shared = {**keys, "threshold_accuracy": limits.accuracy, "threshold_global": limits.global_far}
    return [
        {
            **shared,
            "clip_id": clip_ids[i],
            "camera": cameras[i],
            "y": int(y[i]),
            "score": float(score),
            "reviewed": reviewed[cameras[i]],
        }
        for i, score in zip(idx, scores, strict=True)
    ]


def _with_camera_thresholds(frame: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """Each row's per-camera threshold (its fold's rule on the camera's other scored normal clips of the same
    model and draw) and how many normal clips it was set on."""
    thresholds = np.full(len(frame), np.nan)
    counts = np.zeros(len(frame), dtype=int)
    for (fold_seed, fold, _, _, design), part in frame.groupby(
        ["fold_seed", "fold", "draw", "k", "design"], sort=False
    ):
        where = part.index.to_numpy()
        scores, y, cameras = part["score"].to_numpy(), part["y"].to_numpy(), part["camera"].to_numpy()
        thresholds[where], counts[where] = _camera_thresholds(scores, y, cameras, rules[(fold_seed, fold, design)])
    return frame.assign(threshold_camera=thresholds, calibration_clips=counts)
