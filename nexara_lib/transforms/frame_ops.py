"""Frame-level transforms: on decoded uint8 RGB frames (pixels) or on a clip's sampled frame indices
(sampling), before the backbone.

Pixel transforms take ``(F, H, W, 3)`` uint8 and give the same shape and dtype; sampling transforms
take ``(T,)`` int64 indices in ``[0, span - 1]`` and give ``(T,)`` int64 indices in that range. Each
is registered once, with its augmentation draw, its test-time view parameters or both; the names
of the test-time views are part of their feature-cache keys.
"""

from __future__ import annotations

import cv2
import numpy as np

from nexara_lib.transforms.registry import register_transform


# --------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------
@register_transform("identity", "pixels", "the clip unchanged (always the first test-time view)", tta_params={})
def identity(frames: np.ndarray, params: dict) -> np.ndarray:
    """A copy of the frames."""
    return np.array(frames, copy=True)


def _draw_hflip(rng: np.random.Generator) -> dict:
    return {"flip": bool(rng.random() < 0.5)}


@register_transform(
    "hflip",
    "pixels",
    "mirror left-right (augmentation: with probability 0.5; view: always): violence has no preferred direction",
    draw=_draw_hflip,
    tta_params={"flip": True},
)
def hflip(frames: np.ndarray, params: dict) -> np.ndarray:
    """Mirror every frame horizontally when ``params["flip"]``, else copy them."""
    return np.ascontiguousarray(frames[:, :, ::-1, :]) if params["flip"] else frames.copy()


def _draw_brightness_contrast(rng: np.random.Generator) -> dict:
    return {"alpha": float(rng.uniform(0.8, 1.2)), "beta": float(rng.uniform(-20.0, 20.0))}


@register_transform(
    "brightness_contrast",
    "pixels",
    "pixel * alpha + beta grey levels, clipped to uint8 "
    "(augmentation: alpha ~ U(0.8, 1.2), beta ~ U(-20, 20); view: alpha 1.15, beta -10)",
    draw=_draw_brightness_contrast,
    tta_params={"alpha": 1.15, "beta": -10.0},
)
def brightness_contrast(frames: np.ndarray, params: dict) -> np.ndarray:
    """``clip(round(alpha * pixel + beta), 0, 255)`` with ``params`` alpha (contrast) and beta (brightness)."""
    # convertScaleAbs would take |alpha * x + beta| and brighten the darkest pixels when beta < 0: clip instead.
    scaled = frames.astype(np.float32) * params["alpha"] + params["beta"]
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _draw_rotate_zoom(rng: np.random.Generator) -> dict:
    return {"angle": float(rng.uniform(-8.0, 8.0)), "zoom": float(rng.uniform(0.9, 1.1))}


@register_transform(
    "rotate_zoom",
    "pixels",
    "rotate by U(-8, 8) degrees and zoom by U(0.9, 1.1) about the centre, reflected borders",
    draw=_draw_rotate_zoom,
)
def rotate_zoom(frames: np.ndarray, params: dict) -> np.ndarray:
    """Rotate by ``params["angle"]`` degrees and zoom by ``params["zoom"]`` about the frame centre."""
    height, width = frames.shape[1:3]
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, params["angle"], params["zoom"])
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        # Reflected borders instead of black corners: black wedges would be a cue the clean clips never show.
        out[i] = cv2.warpAffine(
            frame, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
    return out


@register_transform(
    "frame_rate", "pixels", "simulate half the frame rate: keep every other frame, repeat it", tta_params={"factor": 2}
)
def frame_rate(frames: np.ndarray, params: dict) -> np.ndarray:
    """Keep every ``params["factor"]``-th frame and repeat each kept frame, so the frame count is unchanged."""
    factor = params["factor"]
    if factor < 1:
        raise ValueError(f"frame_rate factor must be >= 1, got {factor}")
    return frames[(np.arange(frames.shape[0]) // factor) * factor].copy()


# --------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------
def _draw_temporal_jitter(rng: np.random.Generator) -> dict:
    # T is only known when indices are jittered, so record a seed for the per-index offsets.
    return {"seed": int(rng.integers(0, 2**31 - 1))}


@register_transform(
    "temporal_jitter",
    "sampling",
    "move each sampled frame index by a random integer within half a sampling stride",
    needs=("span",),
    draw=_draw_temporal_jitter,
)
def temporal_jitter(indices: np.ndarray, params: dict, span: int) -> np.ndarray:
    """Move every index by its own seeded offset of at most half a stride, then sort and clip to the clip."""
    stride = (span - 1) / max(len(indices) - 1, 1)
    reach = int(np.floor(0.5 * stride + 1e-9))  # |offset| <= half a stride, so neighbours cannot swap far
    offsets = np.random.default_rng(params["seed"]).integers(-reach, reach + 1, size=len(indices))
    return np.sort(np.clip(indices + offsets, 0, span - 1)).astype(np.int64)


@register_transform(
    "frame_shift",
    "sampling",
    "sample the frames half a sampling stride later: other frames of the same moments",
    needs=("span",),
    tta_params={"offset": 0.5},
)
def frame_shift(indices: np.ndarray, params: dict, span: int) -> np.ndarray:
    """Move every index ``params["offset"]`` of the sampling stride later, clipped to the clip."""
    stride = (span - 1) / max(len(indices) - 1, 1)
    return np.clip(indices + int(round(params["offset"] * stride)), 0, span - 1)
