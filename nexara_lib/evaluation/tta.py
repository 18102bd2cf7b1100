"""Test-time augmentation: a registry of named views, aggregation and evaluation.

Each registered transform has a ``level``:
- "frame": acts on one clip's uint8 RGB frames (T, H, W, 3) before the backbone;
- "feature": acts on cached feature sequences (N, T, D) after the backbone,
  so it costs no re-extraction.
Every transform is deterministic (seeded), keeps the shape and dtype, and
returns a new array. Which views to use is chosen on validation only.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Mapping

import numpy as np

from nexara_lib.registry import Registry
from nexara_lib.evaluation.metrics import (LOWER_IS_BETTER, Predictions, check_probabilities, compare_paired,
                         logit, metric_function, require_same_clips, require_validation, sigmoid)

LEVELS = ("frame", "feature")
AGGREGATIONS = ("mean_prob", "mean_logit", "max")


@dataclasses.dataclass(frozen=True)
class TTATransform:
    """One registered TTA view: ``fn`` and the level of data it acts on."""

    name: str
    level: str  # "frame" or "feature"
    fn: Callable[..., np.ndarray]
    description: str
    sampling_offset: float = 0.0  # frame level: sample frames this fraction of a stride later

    def __call__(self, x, **kwargs) -> np.ndarray:
        return self.fn(x, **kwargs)


TTA_TRANSFORMS = Registry("TTA transform")


def register_tta(name: str, level: str, description: str):
    """Decorator that adds a transform to ``TTA_TRANSFORMS``."""
    if level not in LEVELS:
        raise ValueError(f"TTA transform {name!r}: level must be one of {LEVELS}, got {level!r}")

    return TTA_TRANSFORMS.register(name, lambda fn: TTATransform(name, level, fn, description))


def get_tta_transform(name: str) -> TTATransform:
    """The registered transform called ``name``; unknown names raise ValueError listing the known ones."""
    return TTA_TRANSFORMS.lookup(name)


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frame-level TTA expects one clip as (T, H, W, 3) uint8 RGB, got shape {frames.shape} "
                         f"dtype {frames.dtype}")
    return frames


def _check_features(features) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 3 or not np.issubdtype(features.dtype, np.floating):
        raise ValueError(f"feature-level TTA expects float features (N, T, D), got shape {features.shape} "
                         f"dtype {features.dtype}")
    return features


# --------------------------------------------------------------------------
# Frame-level transforms: (T, H, W, 3) uint8 -> same
# --------------------------------------------------------------------------
@register_tta("identity", "frame", "the clip unchanged (always the first view)")
def identity(x: np.ndarray) -> np.ndarray:
    """Return a copy of ``x`` (frames or features: identity is valid at both levels)."""
    return np.array(x, copy=True)


# The same clip sampled half a stride later: other frames of the same moments (re-extracted, not shifted features).
TTA_TRANSFORMS.add("frame_shift", TTATransform(
    "frame_shift", "frame", identity, "sample the frames half a sampling stride later", sampling_offset=0.5))


@register_tta("hflip", "frame", "mirror left-right: violence has no preferred direction")
def hflip(frames: np.ndarray) -> np.ndarray:
    """Mirror every frame horizontally."""
    return np.ascontiguousarray(_check_frames(frames)[:, :, ::-1, :])


@register_tta("brightness_contrast", "frame", "mild fixed contrast/brightness change (alpha 1.15, beta -10)")
def brightness_contrast(frames: np.ndarray, alpha: float = 1.15, beta: float = -10.0) -> np.ndarray:
    """``clip(alpha * pixel + beta, 0, 255)``: deterministic, so every run sees the same view."""
    frames = _check_frames(frames)
    return np.clip(frames.astype(np.float32) * alpha + beta, 0, 255).round().astype(np.uint8)


@register_tta("frame_rate", "frame", "simulate half the frame rate: keep every other frame, repeat it")
def frame_rate(frames: np.ndarray, factor: int = 2) -> np.ndarray:
    """Decimate by ``factor`` and repeat each kept frame, so T is unchanged."""
    frames = _check_frames(frames)
    if factor < 1:
        raise ValueError(f"frame_rate factor must be >= 1, got {factor}")
    return frames[(np.arange(frames.shape[0]) // factor) * factor].copy()


# --------------------------------------------------------------------------
# Feature-level transforms: (N, T, D) float -> same
# --------------------------------------------------------------------------
@register_tta("temporal_shift", "feature", "shift the sequence one step later, repeating the first step")
def temporal_shift(features: np.ndarray, shift: int = 1) -> np.ndarray:
    """Roll along time by ``shift`` steps with edge padding (no wrap-around of the clip end)."""
    features = _check_features(features)
    t = features.shape[1]
    if abs(shift) >= t:
        raise ValueError(f"temporal_shift: |shift| must be < T={t}, got {shift}")
    # Clamped source indices = roll with edge padding; wrap-around would glue the end onto the start.
    source = np.clip(np.arange(t) - shift, 0, t - 1)
    return features[:, source, :].copy()


@register_tta("feature_noise", "feature", "small seeded gaussian noise scaled by the training per-dim std")
def feature_noise(features: np.ndarray, feature_std=None, scale: float = 0.05, seed: int = 0) -> np.ndarray:
    """Add ``scale * feature_std * N(0, 1)`` noise (seeded), keeping the dtype.

    Args:
        features: (N, T, D) float features.
        feature_std: (D,) per-dimension std of the training features; required.
        scale: noise level as a fraction of that std.
        seed: noise seed, so the view is reproducible.
    """
    features = _check_features(features)
    if feature_std is None:
        raise ValueError("feature_noise needs feature_std=(D,) per-dimension std of the training features "
                         "(e.g. train_features.reshape(-1, D).std(0))")
    std = np.asarray(feature_std, dtype=np.float32)
    if std.shape != (features.shape[-1],) or not np.isfinite(std).all() or (std < 0).any():
        raise ValueError(f"feature_std must be ({features.shape[-1]},) finite non-negative values, got shape {std.shape}")
    noise = np.random.default_rng(seed).standard_normal(features.shape, dtype=np.float32)
    return (features.astype(np.float32) + scale * std * noise).astype(features.dtype)


# --------------------------------------------------------------------------
# Aggregation, view selection and evaluation
# --------------------------------------------------------------------------
def aggregate(probs_by_view, method: str = "mean_prob") -> np.ndarray:
    """Combine per-view probabilities of the violent class into one per clip.

    Args:
        probs_by_view: (V, N) probabilities, one row per view.
        method: "mean_prob", "mean_logit" (geometric-style, less swayed by one
            extreme view) or "max" (violent if any view says so: raises recall and FPR).

    Returns:
        (N,) aggregated probabilities.
    """
    p = np.asarray(probs_by_view, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"probs_by_view must be (V, N) with V >= 1 views, got shape {p.shape}")
    check_probabilities(p.ravel(), "probs_by_view")
    if method == "mean_prob":
        return p.mean(axis=0)
    if method == "mean_logit":
        return sigmoid(logit(p).mean(axis=0))
    if method == "max":
        return p.max(axis=0)
    raise ValueError(f"unknown aggregation {method!r}; use one of {AGGREGATIONS}")


def choose_tta_views(val_probs_by_view: Mapping[str, Predictions], method: str = "mean_prob",
                     metric: str = "balanced_accuracy", threshold: float = 0.5, min_gain: float = 0.0) -> list[str]:
    """Greedy forward selection of TTA views on validation, starting from identity.

    At each step the view whose addition improves the validation metric of the
    aggregate most is added; selection stops when no view improves it by more
    than ``min_gain``.

    Args:
        val_probs_by_view: {view name: Predictions(split="val")}, must include "identity".
        method: aggregation (see ``aggregate``).
        metric: a name from ``evaluation.METRIC_NAMES`` (lower-is-better ones are minimized).
        threshold: threshold for threshold-based metrics.
        min_gain: smallest improvement that justifies one more view (and its latency).

    Returns:
        the chosen view names, "identity" first.
    """
    names = list(val_probs_by_view)
    require_validation([val_probs_by_view[n] for n in names], "the TTA view set")
    if "identity" not in val_probs_by_view:
        raise ValueError(f"choose_tta_views: 'identity' must be one of the views (got {names}); selection starts from it")
    y = require_same_clips([val_probs_by_view[n] for n in names], "choose_tta_views")
    fn = metric_function(metric, threshold)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0

    def score(views):
        return sign * fn(y, aggregate(np.stack([val_probs_by_view[v].prob for v in views]), method))

    chosen, best = ["identity"], score(["identity"])
    while True:
        candidates = [(score(chosen + [v]), v) for v in names if v not in chosen]
        if not candidates:
            break
        top_score, top = max(candidates, key=lambda c: c[0])  # ties: the earlier-listed view
        if not top_score > best + min_gain:
            break
        chosen.append(top)
        best = top_score
    return chosen


def compare_with_without(y_true, prob_without, prob_with, threshold: float = 0.5, n_bootstrap: int = 1000,
                         seed: int = 0, alpha: float = 0.05) -> dict:
    """Per-class comparison of predictions without and with TTA on the same clips.

    Args:
        y_true: (N,) 0/1 labels (usually test).
        prob_without: (N,) probabilities of the identity view alone.
        prob_with: (N,) aggregated TTA probabilities.
        threshold: operating threshold chosen on validation.
        n_bootstrap, seed, alpha: paired bootstrap settings.

    Returns:
        dict with "without", "with" metrics, "delta" (with - without), "mcnemar",
        and "accuracy_diff_ci" / "balanced_accuracy_diff_ci" = [diff, low, high].
    """
    return compare_paired(y_true, prob_without, prob_with, threshold, n_bootstrap, seed, alpha,
                          names=("without", "with"))


def latency_per_clip(predict_fn: Callable[[], object], n_clips: int, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall-clock seconds per clip of ``predict_fn()``, which scores ``n_clips`` clips.

    Warm-up calls are discarded (graph tracing, caches); the median resists outliers.
    """
    if n_clips < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need n_clips >= 1, repeats >= 1, warmup >= 0; got {n_clips}, {repeats}, {warmup}")
    for _ in range(warmup):
        predict_fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict_fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) / n_clips)
