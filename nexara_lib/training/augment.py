"""Feature-space augmentation of cached clip features.

Ops are small registered functions ``op(x, y, rng) -> x_new`` on float32
arrays of shape ``(N, T, D)`` (one feature sequence per clip) with labels
``y`` of shape ``(N,)``; they never change shapes or labels. Named in the
``augment_ops`` parameter; ``augment_training_set`` grows a training set with
them, class-balanced.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from nexara_lib.registry import Registry

AUGMENTATION_REGISTRY = Registry("augmentation op")


def register_augmentation(name: str) -> Callable:
    """Decorator that adds an op ``fn(x, y, rng) -> x_new`` to the registry under ``name``."""
    return AUGMENTATION_REGISTRY.register(name)


def available_augmentations() -> list[str]:
    """Names of the registered augmentation ops, sorted."""
    return AUGMENTATION_REGISTRY.names()


def _check_ops(ops: Sequence[str]) -> list[str]:
    if isinstance(ops, str) or not isinstance(ops, Sequence) or len(ops) == 0:
        raise ValueError(f"augment_ops must be a non-empty list of op names from {available_augmentations()}, "
                         f"got {ops!r}")
    unknown = [op for op in ops if op not in AUGMENTATION_REGISTRY]
    if unknown:
        raise ValueError(f"unknown augmentation ops {unknown}; available: {available_augmentations()}")
    return list(ops)


def _check_batch(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 3:
        raise ValueError(f"features must have shape (N, T, D) (clips, time steps, feature size), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},) to match the features, got {y.shape}")
    return x, y


def apply_augmentation(name: str, x, y, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Apply one registered op.

    Args:
        name: op name (see ``available_augmentations()``).
        x: features ``(N, T, D)``.
        y: labels ``(N,)`` (``mix`` pairs samples of the same label only).
        rng: a numpy Generator or an int seed.

    Returns:
        Augmented features, float32, same shape as ``x``.
    """
    _check_ops([name])
    x, y = _check_batch(x, y)
    return AUGMENTATION_REGISTRY[name](x, y, np.random.default_rng(rng)).astype(np.float32, copy=False)


# --- ops ------------------------------------------------------------------------------

@register_augmentation("noise")
def gaussian_noise(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, scale: float = 0.1) -> np.ndarray:
    """Add Gaussian noise with a per-feature sigma of ``scale`` x that feature's std over clips and time."""
    # per-feature std keeps the noise meaningful whatever the backbone's feature ranges are
    std = x.std(axis=(0, 1), keepdims=True)
    return x + rng.standard_normal(x.shape, dtype=np.float32) * (scale * std)


@register_augmentation("feature_dropout")
def feature_dropout(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, rate: float = 0.1) -> np.ndarray:
    """Zero a random ``rate`` of feature channels of each clip, for all its time steps."""
    # one mask per clip, shared over time: a channel missing for a whole clip mimics an
    # unreliable backbone unit; no 1/(1-rate) rescale so inputs stay on the test-time scale
    keep = rng.random((x.shape[0], 1, x.shape[2])) >= rate
    return x * keep


@register_augmentation("temporal_shift")
def temporal_shift(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, max_fraction: float = 0.2) -> np.ndarray:
    """Shift each clip by up to ``max_fraction`` of T steps either way; vacated steps repeat the edge frame."""
    n, t, _ = x.shape
    max_shift = max(1, int(round(max_fraction * t))) if t > 1 else 0
    shifts = rng.integers(-max_shift, max_shift + 1, size=n)
    # crop + edge pad rather than roll: wrapping the end of a clip onto its start is not a real clip
    source = np.clip(np.arange(t)[None, :] - shifts[:, None], 0, t - 1)
    return x[np.arange(n)[:, None], source]


@register_augmentation("speed")
def speed_change(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                 min_rate: float = 0.8, max_rate: float = 1.25) -> np.ndarray:
    """Resample each clip in time at a random playback rate (linear interpolation between steps)."""
    n, t, _ = x.shape
    # log-uniform so slowing down and speeding up are equally likely
    rates = np.exp(rng.uniform(np.log(min_rate), np.log(max_rate), size=n))
    span = (t - 1) * rates
    # slower: a random window of the clip stretched to T; faster: centred, edges held
    start = np.where(span <= t - 1, rng.random(n) * np.maximum(t - 1 - span, 0), -(span - (t - 1)) / 2)
    positions = np.clip(start[:, None] + np.arange(t)[None, :] * rates[:, None], 0, t - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, t - 1)
    frac = (positions - low)[..., None].astype(np.float32)
    rows = np.arange(n)[:, None]
    return x[rows, low] * (1 - frac) + x[rows, high] * frac


@register_augmentation("mix")
def within_class_mix(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, alpha: float = 0.4) -> np.ndarray:
    """Mixup of each clip with another clip of the SAME label; the label is unchanged.

    The weight on the clip itself is ``max(l, 1 - l)`` with ``l ~ Beta(alpha, alpha)``,
    so each copy stays closer to its source. A class with one clip is copied as is.
    """
    out = x.copy()
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        if len(members) < 2:
            continue
        # a random non-zero offset within the class: never the clip itself, never the other class
        offsets = rng.integers(1, len(members), size=len(members))
        partners = members[(np.arange(len(members)) + offsets) % len(members)]
        lam = rng.beta(alpha, alpha, size=len(members)).astype(np.float32)
        lam = np.maximum(lam, 1 - lam)[:, None, None]
        out[members] = lam * x[members] + (1 - lam) * x[partners]
    return out


# --- training-set growth --------------------------------------------------------------

def augment_training_set(x, y, factor: float, ops: Sequence[str],
                         rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grow a training set about ``factor`` times, class-balanced, with augmented copies.

    Each class is topped up to ``max(round(factor * N / 2), largest class count)``
    clips: balance wins over the exact total when the classes are very unequal.
    Each new copy is one op (cycled over ``ops``) applied to an original of its
    class; sources are cycled so every original is used about equally.

    Args:
        x: features ``(N, T, D)``.
        y: labels ``(N,)`` in {0, 1}.
        factor: target size as a multiple of N (>= 1; 1 returns the originals unchanged).
        ops: op names from ``available_augmentations()``.
        rng: a numpy Generator or an int seed.

    Returns:
        ``(x_aug, y_aug)``: the originals first, then the new copies (float32 / int64).
    """
    x, y = _check_batch(x, y)
    ops = _check_ops(ops)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
        raise ValueError(f"augment factor must be a number >= 1 (1 = no augmentation), got {factor!r}")
    labels = set(np.unique(y).tolist())
    if not labels <= {0, 1}:
        raise ValueError(f"labels must be 0 (non-violent) or 1 (violent), got values {sorted(labels)}")
    y = y.astype(np.int64)
    if factor == 1:
        return x, y
    rng = np.random.default_rng(rng)
    counts = {c: int(np.sum(y == c)) for c in (0, 1)}
    per_class = max(int(round(factor * len(y) / 2)), max(counts.values()))
    new_x, new_y = [x], [y]
    for label in (0, 1):
        members = np.flatnonzero(y == label)
        needed = per_class - len(members)
        if needed <= 0 or len(members) == 0:
            continue
        op_of_copy = np.array(ops)[(rng.permutation(needed) % len(ops))]
        for op in dict.fromkeys(ops):  # a repeated name weights that op, it must not run twice
            count = int(np.sum(op_of_copy == op))
            if count == 0:
                continue
            # run the op on at least the whole class so `mix` always has same-class partners,
            # then keep the first `count` outputs; cycling a permutation spreads the sources evenly
            size = max(count, len(members))
            order = np.concatenate([rng.permutation(members) for _ in range(-(-size // len(members)))])[:size]
            batch_y = y[order]
            augmented = AUGMENTATION_REGISTRY[op](x[order], batch_y, rng)[:count]
            new_x.append(augmented.astype(np.float32, copy=False))
            new_y.append(batch_y[:count])
    return np.concatenate(new_x), np.concatenate(new_y)
