"""Motion images: stream views that embed what moved, not what is there.

A single frame's embedding misses motion that frame differences carry. Per sampled frame, its **motion
reference** is the frame it is compared with, exactly as ``motion_crop`` chooses it
(``frame_views.motion_reference``): the next decoded frame, or, when nothing moves against that one (in
CCTV clips stored at twice their rate it is often a copy), the neighbouring sampled frame. The motion
image is ``|frame - reference| x gain`` per RGB channel, rounded and clipped to 255
(``cv2.convertScaleAbs``), computed at native resolution and resized to the backbone's input with
INTER_AREA like every frame; the run's backbone embeds it like a frame:

- ``motion_image``: the whole frame's difference image;
- ``motion_image_crop``: the difference image cut at the motion-crop window (the whole frame when nothing
  moves), so it shows the same region as ``motion_crop``.

Both read each sampled frame's next frame (one decode pass, frames sampled like pairs over [0, n - 2]),
take ``gain`` (``motion_image_gain``) and ``fraction`` (``motion_crop_fraction``: it places the window and
decides when the next frame counts as a repeat), and are cached under keys holding both. A difference
image is not a frame of the clip, so pair backbones (``flow``) cannot take them.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from nexara_lib.transforms.frame_views import (
    MOTION_CROP_DEFAULTS,
    _check_size,
    _complete,
    _key_number,
    check_motion_crop_params,
    motion_reference,
    neighbour_of,
    resize_square,
)
from nexara_lib.transforms.registry import StreamView, register_transform

MOTION_IMAGE_DEFAULTS = {"gain": 4.0, **MOTION_CROP_DEFAULTS}


def check_motion_image_params(params: Mapping, name: str = "motion_image") -> dict:
    """``params`` completed with the defaults; ``gain`` a number > 0, ``fraction`` as for ``motion_crop``."""
    out = _complete(name, params, MOTION_IMAGE_DEFAULTS)
    gain = out["gain"]
    if isinstance(gain, bool) or not isinstance(gain, (int, float, np.floating, np.integer)) or not 0 < gain < np.inf:
        raise ValueError(
            f"view {name!r}: gain must be a positive number (the difference image is multiplied by it, then "
            f"clipped to 255; parameter motion_image_gain), got {gain!r}"
        )
    fraction = check_motion_crop_params({"fraction": out["fraction"]})["fraction"]
    return {"gain": float(gain), "fraction": fraction}


def motion_image(
    frame: np.ndarray, reference: np.ndarray, window: tuple[int, int, int, int] | None, gain: float, size: int
) -> np.ndarray:
    """``|frame - reference| x gain`` (rounded, clipped to 255) inside ``window``, resized to ``size``.

    Args:
        frame, reference: (H, W, 3) uint8 RGB frames of one clip at native resolution (views are fine).
        window: (y, x, height, width) in pixels, or None for the whole frame.
        gain: the amplification, > 0.
        size: the backbone's square input side.
    Returns:
        (size, size, 3) uint8.
    """
    if window is not None:
        top, left, crop_h, crop_w = window
        frame = frame[top : top + crop_h, left : left + crop_w]
        reference = reference[top : top + crop_h, left : left + crop_w]
    diff = cv2.absdiff(np.ascontiguousarray(frame), np.ascontiguousarray(reference))
    return resize_square(cv2.convertScaleAbs(diff, alpha=float(gain)), size)


def _motion_images(name: str, frames: np.ndarray, params: dict, size: int, pairs: bool, crop: bool):
    if pairs:
        raise ValueError(
            f"view {name!r} gives difference images, not frames: a backbone that reads frame pairs cannot take it"
        )
    if frames.ndim != 5:
        raise ValueError(
            f"view {name!r} needs each sampled frame with its next frame, (T, 2, H, W, 3); "
            "decode with read_sampled_frames(..., size=None, with_next=True)"
        )
    checked = check_motion_image_params(params, name)
    size = _check_size(name, size)
    out = np.empty((len(frames), size, size, 3), np.uint8)
    fallbacks = neighbours = 0
    for i, (frame, following) in enumerate(frames):
        k = neighbour_of(i, len(frames))
        neighbour = None if k is None else frames[k, 0]
        window, from_neighbour = motion_reference(frame, following, neighbour, checked["fraction"])
        fallbacks += window is None
        neighbours += from_neighbour
        reference = neighbour if from_neighbour and neighbour is not None else following
        out[i] = motion_image(frame, reference, window if crop else None, checked["gain"], size)
    return out, {"motion_fallback_frames": fallbacks, "motion_neighbour_frames": neighbours}


def _stream(name: str) -> StreamView:
    """The stream view of motion image ``name``: one region, reads the next frame, no pair backbones, keyed by
    gain and fraction."""
    return StreamView(
        MOTION_IMAGE_DEFAULTS,
        lambda p: check_motion_image_params(p, name),
        key=lambda p: f"{name}-g{_key_number(p['gain'])}-f{_key_number(p['fraction'])}",
        regions=lambda p: 1,
        reads_next=True,
        pair_backbones=False,
    )


@register_transform(
    "motion_image",
    "regions",
    "per sampled frame, its absolute difference from its motion reference (the next decoded frame, or the "
    "neighbouring sampled frame when nothing moves against it) times gain, clipped, resized to the backbone's input",
    needs=("size", "pairs"),
    stream=_stream("motion_image"),
)
def motion_image_view(frames: np.ndarray, params: dict, size: int, pairs: bool) -> tuple[np.ndarray, dict]:
    """The whole frame's motion image of every sampled frame.

    Args:
        frames: (T, 2, H, W, 3) uint8 RGB (frame, next frame) pairs, native resolution.
        params: {"gain", "fraction"} (see ``check_motion_image_params``).
        size: the backbone's square input side.
        pairs: must be False (a difference image is no frame pair).
    Returns:
        ((T, S, S, 3), {"motion_fallback_frames": frames where nothing moved against either reference,
        "motion_neighbour_frames": frames compared with their neighbouring sampled frame}).
    """
    return _motion_images("motion_image", frames, params, size, pairs, crop=False)


@register_transform(
    "motion_image_crop",
    "regions",
    "per sampled frame, its motion image (see motion_image) cut at the motion-crop window (the whole frame "
    "when nothing moves), resized to the backbone's input",
    needs=("size", "pairs"),
    stream=_stream("motion_image_crop"),
)
def motion_image_crop_view(frames: np.ndarray, params: dict, size: int, pairs: bool) -> tuple[np.ndarray, dict]:
    """The motion image of every sampled frame cut at its motion-crop window; arguments and record as
    ``motion_image_view``."""
    return _motion_images("motion_image_crop", frames, params, size, pairs, crop=True)
