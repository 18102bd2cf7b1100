"""Feature-level transforms: on feature sequences ``(N, T, D)`` (one per clip), after the backbone.

They cost no re-extraction, never change shapes and never change labels. The augmentation ops
(noise, feature_dropout, temporal_shift, speed, mix) are random per clip: their ``draw`` returns
fixed settings and they take their randomness from the ``rng`` input, in a fixed order of draws.
The test-time views (feature_shift, feature_noise) are deterministic given their parameters.
"""

from __future__ import annotations

import numpy as np

from nexara_lib.transforms.registry import fixed_draw, register_transform


# --------------------------------------------------------------------------
# Augmentation ops: random per clip
# --------------------------------------------------------------------------
@register_transform(
    "noise",
    "features",
    "gaussian noise, per-feature sigma = 0.1 x that feature's std over the batch",
    needs=("rng",),
    draw=fixed_draw(scale=0.1),
)
def noise(x: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise with a per-feature sigma of ``scale`` x that feature's std over clips and time."""
    # per-feature std keeps the noise meaningful whatever the backbone's feature ranges are
    std = x.std(axis=(0, 1), keepdims=True)
    return x + rng.standard_normal(x.shape, dtype=np.float32) * (params["scale"] * std)


@register_transform(
    "feature_dropout",
    "features",
    "zero a random 10% of the feature channels of each clip, for all its time steps",
    needs=("rng",),
    draw=fixed_draw(rate=0.1),
)
def feature_dropout(x: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """Zero a random ``rate`` of feature channels of each clip, for all its time steps."""
    # one mask per clip, shared over time: a channel missing for a whole clip mimics an
    # unreliable backbone unit; no 1/(1-rate) rescale so inputs stay on the test-time scale
    keep = rng.random((x.shape[0], 1, x.shape[2])) >= params["rate"]
    return x * keep


@register_transform(
    "temporal_shift",
    "features",
    "shift each clip by a random number of steps, up to 20% of T either way; vacated steps repeat the edge step",
    needs=("rng",),
    draw=fixed_draw(max_fraction=0.2),
)
def temporal_shift(x: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """Shift each clip by up to ``max_fraction`` of T steps either way; vacated steps repeat the edge frame."""
    n, t, _ = x.shape
    max_shift = max(1, int(round(params["max_fraction"] * t))) if t > 1 else 0
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n,))
    # crop + edge pad rather than roll: wrapping the end of a clip onto its start is not a real clip
    source = np.clip(np.arange(t)[None, :] - shifts[:, None], 0, t - 1)
    return x[np.arange(n)[:, None], source]


@register_transform(
    "speed",
    "features",
    "resample each clip in time at a random playback rate in [0.8, 1.25] (log-uniform)",
    needs=("rng",),
    draw=fixed_draw(min_rate=0.8, max_rate=1.25),
)
def speed(x: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """Resample each clip in time at a random playback rate (linear interpolation between steps)."""
    n, t, _ = x.shape
    # log-uniform so slowing down and speeding up are equally likely
    rates = np.exp(rng.uniform(np.log(params["min_rate"]), np.log(params["max_rate"]), size=n))
    span = (t - 1) * rates
    # slower: a random window of the clip stretched to T; faster: centred, edges held
    start = np.where(span <= t - 1, rng.random(n) * np.maximum(t - 1 - span, 0), -(span - (t - 1)) / 2)
    positions = np.clip(start[:, None] + np.arange(t)[None, :] * rates[:, None], 0, t - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, t - 1)
    frac = (positions - low)[..., None].astype(np.float32)
    rows = np.arange(n)[:, None]
    return x[rows, low] * (1 - frac) + x[rows, high] * frac


@register_transform(
    "mix",
    "features",
    "mixup of each clip with another clip of the same label; the label is unchanged",
    needs=("rng", "labels"),
    draw=fixed_draw(alpha=0.4),
)
def mix(x: np.ndarray, params: dict, rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Mixup of each clip with another clip of the SAME label; the label is unchanged.

    The weight on the clip itself is ``max(l, 1 - l)`` with ``l ~ Beta(alpha, alpha)``,
    so each copy stays closer to its source. A class with one clip is copied as is.
    """
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"mix: labels must have shape ({x.shape[0]},) to match the features, got {labels.shape}")
    alpha = params["alpha"]
    out = x.copy()
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        # a random non-zero offset within the class: never the clip itself, never the other class
        offsets = rng.integers(1, len(members), size=len(members))
        partners = members[(np.arange(len(members)) + offsets) % len(members)]
        lam = rng.beta(alpha, alpha, size=len(members)).astype(np.float32)
        lam = np.maximum(lam, 1 - lam)[:, None, None]
        out[members] = lam * x[members] + (1 - lam) * x[partners]
    return out


# --------------------------------------------------------------------------
# Test-time views: deterministic
# --------------------------------------------------------------------------
@register_transform(
    "feature_shift",
    "features",
    "shift the feature sequence one step later, repeating the first step",
    tta_params={"shift": 1},
)
def feature_shift(features: np.ndarray, params: dict) -> np.ndarray:
    """Move every clip ``params["shift"]`` steps later in time with edge padding (no wrap-around of the clip end)."""
    shift = params["shift"]
    t = features.shape[1]
    if abs(shift) >= t:
        raise ValueError(f"feature_shift: |shift| must be < T={t}, got {shift}")
    # Clamped source indices = roll with edge padding; wrap-around would glue the end onto the start.
    source = np.clip(np.arange(t) - shift, 0, t - 1)
    return features[:, source, :].copy()


@register_transform(
    "feature_noise",
    "features",
    "small seeded gaussian noise scaled by the training per-dimension std",
    needs=("feature_std",),
    tta_params={"scale": 0.05, "seed": 0},
)
def feature_noise(features: np.ndarray, params: dict, feature_std) -> np.ndarray:
    """Add ``scale * feature_std * N(0, 1)`` noise drawn from ``params["seed"]``, keeping the dtype.

    ``feature_std`` is the (D,) per-dimension std of the TRAINING features (e.g.
    ``train_x.reshape(-1, D).std(0)``), never of the clips being scored.
    """
    std = np.asarray(feature_std, dtype=np.float32)
    if std.shape != (features.shape[-1],) or not np.isfinite(std).all() or (std < 0).any():
        raise ValueError(
            f"feature_std must be ({features.shape[-1]},) finite non-negative values, got shape {std.shape}"
        )
    noise_draw = np.random.default_rng(params["seed"]).standard_normal(features.shape, dtype=np.float32)
    return (features.astype(np.float32) + params["scale"] * std * noise_draw).astype(features.dtype)
